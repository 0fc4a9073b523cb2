//! `serve`: the application. [`App::build`] turns plain settings into an engine (database
//! migrated, workflows loaded, channels configured); [`App::run`] joins the HTTP server, the
//! queue workers and the maintenance services under one shutdown signal (SIGINT/SIGTERM:
//! the HTTP server stops, in-flight jobs get up to 30 s, exit 0).

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::shell::channels::Channels;
use crate::shell::db::Db;
use crate::shell::engine::{Engine, FIRE_BATCH, run_firer, system_clock, timers};
use crate::shell::jobs::Jobs;
use crate::shell::metrics::{self, GaugeState};
use crate::shell::open::{load_workflows, open_db_migrating};
use crate::shell::queue::{self, DeliveryJob, ReviewJob, WorkerOpts};
use crate::shell::secret::Secret;
use crate::shell::services::{self, DeliverySweep, GaugeRefresher, JobPruner, ReviewScheduler};
use crate::shell::settings::{Role, ServeSettings};
use crate::shell::{auth, env, http, secret::redact_url, sources};

pub struct App {
    settings: ServeSettings,
    engine: Arc<Engine>,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// The acknowledge-link key (configured, derived, or kept in the database).
    ack_key: Secret,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl App {
    pub async fn build(settings: ServeSettings) -> anyhow::Result<App> {
        let cfg = load_workflows(&settings.place.workflows)?;
        // The same warnings `validate` prints: holiday data that runs out soon makes every
        // weekday a working day from then on, silently unless someone is told.
        for w in crate::workflow::coverage::warnings(&cfg, chrono::Utc::now()) {
            tracing::warn!(at = %format!("{}:{}:{}", w.path.display(), w.line, w.col), "{}", w.message);
        }
        check_env(&cfg, settings.role)?;
        if settings.role.serves_http() {
            // Refuse an open listener before anything is created or migrated (checked
            // again on the bound address, which is what counts).
            let tokens = tokens(&settings);
            let resolved = std::net::ToSocketAddrs::to_socket_addrs(settings.listen.as_str());
            for addr in resolved.into_iter().flatten() {
                auth::check_listen(addr, &tokens, settings.access.allow_unauthenticated)?;
            }
        }
        let tls = match &settings.access.tls {
            Some(files) => Some(crate::shell::tls::acceptor(files)?),
            None => None,
        };
        let db = open_db_migrating(&settings.place.database).await?;
        if matches!(db, Db::Sqlite(_)) && settings.role != crate::shell::settings::Role::All {
            tracing::warn!(
                "--role {:?} on SQLite: run api and worker roles against one file only on one machine",
                settings.role
            );
        }
        let metrics = metrics::install()?;
        // Timer firings count in `slakeeper_jobs_total` beside the apalis queues.
        metrics::preregister(
            &cfg.catalog,
            &[timers::FIRINGS, queue::OUTBOX, queue::REVIEW],
        );
        let channels = Channels::new(
            settings.smtp_url.as_ref(),
            &settings.smtp_from,
            settings.webhook_secret.as_ref(),
        )?;
        if !channels.email.has_smtp() {
            tracing::warn!(
                "no SMTP server configured (SLAKEEPER_SMTP_URL): emails wait in the outbox"
            );
        }
        let engine = Arc::new(Engine {
            db,
            cfg,
            channels,
            retry: settings.retry.into(),
            clock: system_clock(),
            group: Default::default(),
            versions: Default::default(),
        });
        // Before any worker runs: tickets from before workflow versions were kept are
        // pinned to the files of this first start, and this process's versions are stored.
        engine.pin_unversioned().await?;
        // Concurrent requests share commits (see `engine::group`); a worker-only process
        // ingests nothing.
        if settings.role != crate::shell::settings::Role::Worker {
            engine.start_group_commit(engine.db.committers());
        }
        let ack_key = crate::shell::ack_key::key(&settings, &engine.db, engine.now()).await?;
        if let Some(url) = &settings.ack.public_url {
            crate::shell::links::configure(url.trim(), ack_key.clone());
            crate::shell::links::configure_pages(url.trim());
        }
        engine.release_held_emails().await?;
        Ok(App {
            settings,
            engine,
            metrics,
            ack_key,
            tls,
        })
    }

    /// `https` when serving TLS.
    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Acknowledge links default to the listen address: set it unless
    /// SLAKEEPER_PUBLIC_URL did, and say so once.
    fn default_ack_url(&self, listen: &str) {
        let url = format!("{}://{listen}", self.scheme());
        // Ticket page links in staff messages default to the same address.
        crate::shell::links::configure_pages(&url);
        if crate::shell::links::configure(&url, self.ack_key.clone()) {
            tracing::warn!(
                "SLAKEEPER_PUBLIC_URL is not set: acknowledge links point at {url} (the listen address); set it to the address staff reach"
            );
        }
    }

    pub async fn run(self) -> anyhow::Result<()> {
        let (stop_tx, stop) = watch::channel(false);
        tokio::spawn(shutdown_signal(stop_tx));
        let mut tasks = JoinSet::new();
        if self.settings.role.serves_http() {
            self.spawn_http(&mut tasks, stop.clone()).await?;
        } else {
            self.spawn_probes(&mut tasks, stop.clone()).await?;
        }
        if self.settings.role.runs_workers() {
            self.spawn_workers(&mut tasks, &stop);
        }
        let gauges = GaugeRefresher {
            engine: self.engine.clone(),
            instance: format!("{}-{}", std::process::id(), ulid::Ulid::new()),
            state: Arc::new(GaugeState::default()),
        };
        tasks.spawn(services::run(gauges, self.engine.clone(), stop.clone()));
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r {
                tracing::error!(error = %e, "a task panicked");
            }
        }
        self.engine.db.close().await;
        tracing::info!("stopped");
        Ok(())
    }

    async fn spawn_http(
        &self,
        tasks: &mut JoinSet<()>,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let (listener, addr) = self.bind().await?;
        let tokens = tokens(&self.settings);
        // Closed unless opened on purpose: checked on the bound address (a host name
        // resolves to what it resolves to).
        let allow = self.settings.access.allow_unauthenticated;
        if let Some(warning) = auth::check_listen(addr, &tokens, allow)? {
            tracing::warn!(%addr, "{warning}");
        }
        // Sources name their secrets' variables in sources.yaml (read at start, `check_env`).
        let secret = |k: &str| {
            env::secret(k)
                .ok()
                .flatten()
                .map(|s| s.expose().to_string())
        };
        let sources = sources::Registry::build(&self.engine.cfg.sources, &secret)?;
        let app = http::router_with(
            self.state(tokens),
            sources::route::router(self.engine.clone(), Arc::new(sources)),
        );
        self.serve_on(tasks, listener, app, stop)?;
        self.default_ack_url(&addr.to_string());
        tracing::info!(%addr, workflows = self.engine.cfg.catalog.workflows.len(),
            backend = self.engine.db.backend(), role = ?self.settings.role,
            database = %redact_url(self.settings.place.database.expose()), "serving");
        Ok(())
    }

    fn state(&self, tokens: auth::Tokens) -> http::AppState {
        http::AppState {
            engine: self.engine.clone(),
            tokens,
            metrics: Some(self.metrics.clone()),
        }
    }

    /// Serve `app` on `listener` until `stop`, and say where on stdout, first thing: scripts
    /// (and tests) find the port there when `--listen` used `:0`.
    fn serve_on(
        &self,
        tasks: &mut JoinSet<()>,
        listener: tokio::net::TcpListener,
        app: axum::Router,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let addr = listener.local_addr()?;
        tasks.spawn(http::serve_with(
            listener,
            app,
            stop,
            self.settings.header_timeout,
            self.tls.clone(),
        ));
        println!("slakeeper listening on {}://{addr}", self.scheme());
        Ok(())
    }

    async fn bind(&self) -> anyhow::Result<(tokio::net::TcpListener, std::net::SocketAddr)> {
        let listen = &self.settings.listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        Ok((listener, addr))
    }

    /// A worker-only process answers `/healthz`, `/readyz` and `/metrics` on `--listen`:
    /// what only workers count (timers fired, breaches a timer finds, deliveries) and the
    /// gauges, when this process holds their lease, reach Prometheus, and an orchestrator
    /// can probe it. No API route is served, so no API token is required to listen.
    async fn spawn_probes(
        &self,
        tasks: &mut JoinSet<()>,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let (listener, addr) = self.bind().await?;
        let app = http::probes_router(self.state(tokens(&self.settings)));
        self.serve_on(tasks, listener, app, stop)?;
        tracing::info!(%addr, backend = self.engine.db.backend(), role = ?self.settings.role,
            database = %redact_url(self.settings.place.database.expose()),
            "serving /healthz, /readyz and /metrics");
        Ok(())
    }

    /// One supervised worker per queue, plus the maintenance services.
    fn spawn_workers(&self, tasks: &mut JoinSet<()>, stop: &watch::Receiver<bool>) {
        // A worker-only process builds links from its --listen too (first configure wins).
        self.default_ack_url(&self.settings.listen);
        let w = &self.settings.workers;
        let opts = WorkerOpts::new(w.poll, w.concurrency, w.orphan_after);
        let restart: Arc<dyn Fn(&'static str) + Send + Sync> = Arc::new(metrics::worker_restart);
        let jobs = Jobs::new(self.engine.clone());
        let db = &self.engine.db;
        for _ in 0..db.firers() {
            tasks.spawn(run_firer(
                self.engine.clone(),
                w.poll,
                FIRE_BATCH,
                stop.clone(),
            ));
        }
        tasks.spawn(queue::supervise::<DeliveryJob, _>(
            db.clone(),
            queue::OUTBOX,
            opts.clone(),
            jobs.clone(),
            stop.clone(),
            restart.clone(),
        ));
        let one_at_a_time = WorkerOpts {
            concurrency: 1,
            batch_size: 1,
            ..opts
        };
        tasks.spawn(queue::supervise::<ReviewJob, _>(
            db.clone(),
            queue::REVIEW,
            one_at_a_time,
            jobs,
            stop.clone(),
            restart,
        ));
        let e = &self.engine;
        tasks.spawn(services::run(
            ReviewScheduler(e.clone()),
            e.clone(),
            stop.clone(),
        ));
        tasks.spawn(services::run(
            DeliverySweep(e.clone()),
            e.clone(),
            stop.clone(),
        ));
        let pruner = JobPruner {
            engine: e.clone(),
            keep: w.keep_done,
        };
        tasks.spawn(services::run(pruner, e.clone(), stop.clone()));
        let retention = crate::shell::retention::Retention {
            engine: e.clone(),
            keep: self.settings.retention,
        };
        tasks.spawn(services::run(retention, e.clone(), stop.clone()));
    }
}

async fn shutdown_signal(tx: watch::Sender<bool>) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown requested: draining in-flight work");
    let _ = tx.send(true);
}

fn tokens(s: &ServeSettings) -> auth::Tokens {
    auth::Tokens {
        api: s.api_token.clone(),
        read: s.access.read_token.clone(),
        metrics: s.access.metrics_token.clone(),
    }
}

/// The variables the workflow files name that this role reads (sources: the API; channels:
/// the workers) must be set: refuse to start naming each one, else keep their values.
fn check_env(cfg: &crate::workflow::Config, role: Role) -> anyhow::Result<()> {
    use crate::workflow::env::EnvUse;
    let refs: Vec<_> = cfg
        .env
        .iter()
        .filter(|r| match r.used {
            EnvUse::Intake => role.serves_http(),
            EnvUse::Delivery => role.runs_workers(),
        })
        .cloned()
        .collect();
    let problems = env::problems(&refs);
    if !problems.is_empty() {
        for (_, p) in &problems {
            eprintln!("{p}");
        }
        let mut names: Vec<&str> = problems.iter().map(|(r, _)| r.name.as_str()).collect();
        names.sort();
        names.dedup();
        anyhow::bail!(
            "environment variable(s) named in the workflow files are not usable: {} (set each, or NAME_FILE=/path)",
            names.join(", ")
        );
    }
    env::preload(env::values(&refs));
    Ok(())
}

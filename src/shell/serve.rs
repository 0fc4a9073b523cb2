//! `serve`: the application. [`App::build`] turns plain settings into an engine (database
//! migrated, workflows loaded, channels configured); [`App::run`] joins the HTTP server, the
//! queue workers and the maintenance services under one shutdown signal (SIGINT/SIGTERM:
//! the HTTP server stops, in-flight jobs get up to 30 s, exit 0).

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::shell::channels::Channels;
use crate::shell::commands::{load_workflows, open_db};
use crate::shell::db::Db;
use crate::shell::engine::{Engine, FIRE_BATCH, run_firer, system_clock};
use crate::shell::jobs::Jobs;
use crate::shell::metrics::{self, GaugeState};
use crate::shell::queue::{self, DeliveryJob, ReviewJob, WorkerOpts};
use crate::shell::services::{self, DeliverySweep, GaugeRefresher, JobPruner, ReviewScheduler};
use crate::shell::settings::ServeSettings;
use crate::shell::{http, secret::redact_url, sources};

pub struct App {
    settings: ServeSettings,
    engine: Arc<Engine>,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
}

impl App {
    pub async fn build(settings: ServeSettings) -> anyhow::Result<App> {
        let cfg = load_workflows(&settings.place.workflows)?;
        // The same warnings `validate` prints: holiday data that runs out soon makes every
        // weekday a working day from then on, silently unless someone is told.
        for w in crate::workflow::coverage::warnings(&cfg, chrono::Utc::now()) {
            tracing::warn!(at = %format!("{}:{}:{}", w.path.display(), w.line, w.col), "{}", w.message);
        }
        let db = open_db(&settings.place.database).await?;
        if matches!(db, Db::Sqlite(_)) && settings.role != crate::shell::settings::Role::All {
            tracing::warn!(
                "--role {:?} on SQLite: run api and worker roles against one file only on one machine",
                settings.role
            );
        }
        let metrics = metrics::install()?;
        metrics::preregister(&cfg.catalog);
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
        if let Some(url) = &settings.ack.public_url {
            crate::shell::ack::configure(url.trim(), ack_key(&settings));
            crate::shell::ui::configure(url.trim());
        }
        engine.release_held_emails().await?;
        Ok(App {
            settings,
            engine,
            metrics,
        })
    }

    pub async fn run(self) -> anyhow::Result<()> {
        let (stop_tx, stop) = watch::channel(false);
        tokio::spawn(shutdown_signal(stop_tx));
        let mut tasks = JoinSet::new();
        if self.settings.role.serves_http() {
            self.spawn_http(&mut tasks, stop.clone()).await?;
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
        let listen = &self.settings.listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        // Sources name their secrets' variables in sources.yaml; an unset one stops the start.
        let sources =
            sources::Registry::build(&self.engine.cfg.sources, &|k| std::env::var(k).ok())
                .map_err(anyhow::Error::msg)?;
        let app = http::router_with(
            http::AppState {
                engine: self.engine.clone(),
                token: self.settings.api_token.clone(),
                metrics: Some(self.metrics.clone()),
            },
            sources::route::router(self.engine.clone(), Arc::new(sources)),
        );
        tasks.spawn(http::serve(
            listener,
            app,
            stop,
            self.settings.header_timeout,
        ));
        // Acknowledge links default to the listen address (a no-op when
        // SLAKEEPER_PUBLIC_URL configured them already).
        crate::shell::ack::configure(&format!("http://{addr}"), ack_key(&self.settings));
        crate::shell::ui::configure(&format!("http://{addr}"));
        // Printed on stdout so scripts (and tests) can find the port when --listen used :0.
        println!("slakeeper listening on http://{addr}");
        tracing::info!(%addr, workflows = self.engine.cfg.catalog.workflows.len(),
            backend = self.engine.db.backend(), role = ?self.settings.role,
            database = %redact_url(self.settings.place.database.expose()), "serving");
        Ok(())
    }

    /// One supervised worker per queue, plus the maintenance services.
    fn spawn_workers(&self, tasks: &mut JoinSet<()>, stop: &watch::Receiver<bool>) {
        // A worker-only process builds links from its --listen too (first configure wins).
        let listen = format!("http://{}", self.settings.listen);
        crate::shell::ack::configure(&listen, ack_key(&self.settings));
        crate::shell::ui::configure(&listen);
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

/// The acknowledge-link key of these settings.
fn ack_key(s: &ServeSettings) -> Option<crate::shell::secret::Secret> {
    crate::shell::ack::key(
        s.ack.secret.as_ref(),
        s.webhook_secret.as_ref(),
        s.api_token.as_ref(),
    )
}

//! The shell: everything that does I/O (database, job queue, HTTP, SMTP, webhooks, metrics),
//! and the long-running `serve` command that joins the HTTP server, the queue workers, the
//! review scheduler, the pruner and the gauge refresher under one shutdown signal.

pub mod bench;
pub mod db;
pub mod engine;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod queue;
pub mod report;
pub mod show;
pub mod sources;
pub mod store;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;

use crate::cli::{Command, Format, ReportArgs, Role, ServeArgs, TicketCommand, parse_instant};
use crate::shell::db::Db;
use crate::shell::engine::{Engine, RetryPolicy, system_clock};
use crate::shell::queue::{DeliveryJob, Handler, ReviewJob, TimerJob, WorkerOpts};
use crate::workflow::{Config, load_dir, render_diags};

/// Run a command that needs the runtime.
pub fn run(cmd: Command) -> ExitCode {
    init_tracing();
    // reqwest and lettre share rustls; pick its crypto provider once, before either is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let res = rt.block_on(async move {
        match cmd {
            Command::Serve(a) => serve(a).await,
            Command::Migrate(a) => {
                let db = Db::connect(&a.database)
                    .await
                    .with_context(|| format!("connecting to {}", redact(&a.database)))?;
                let t = Instant::now();
                queue::migrate(&db).await.context("applying migrations")?;
                println!(
                    "{}: migrations applied ({} of ours, plus apalis') in {:.0?}",
                    redact(&a.database),
                    queue::expected_migrations(&db),
                    t.elapsed()
                );
                db.close().await;
                Ok(())
            }
            Command::Ticket(TicketCommand::Show(a)) => {
                let engine = offline_engine(&a.db.database, &a.wf.workflows).await?;
                match show::load(&engine, &a.id).await? {
                    Some(v) => {
                        match a.format {
                            Format::Text => print!("{}", show::to_text(&v)),
                            Format::Json => {
                                println!("{}", serde_json::to_string_pretty(&show::to_json(&v))?)
                            }
                        }
                        Ok(())
                    }
                    None => anyhow::bail!("no ticket `{}` in {}", a.id, redact(&a.db.database)),
                }
            }
            Command::Report(a) => report_cmd(a).await,
            Command::Bench(a) => bench::run(a).await,
            Command::Validate(_) | Command::Simulate(_) => Ok(()),
        }
    });
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,apalis=warn,apalis_core=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn load_workflows(dir: &std::path::Path) -> anyhow::Result<Arc<Config>> {
    match load_dir(dir) {
        Ok(c) => Ok(Arc::new(c)),
        Err(diags) => {
            eprint!("{}", render_diags(&diags));
            anyhow::bail!(
                "{} error(s) in {}; fix them (slakeeper validate {})",
                diags.len(),
                dir.display(),
                dir.display()
            )
        }
    }
}

async fn offline_engine(db_url: &str, workflows: &std::path::Path) -> anyhow::Result<Engine> {
    let cfg = load_workflows(workflows)?;
    // Inspecting must not create an empty database at a mistyped path.
    if let Some(path) = db_url
        .strip_prefix("sqlite://")
        .or_else(|| db_url.strip_prefix("sqlite:"))
    {
        let file = path.split('?').next().unwrap_or(path);
        if !file.is_empty() && file != ":memory:" && !std::path::Path::new(file).exists() {
            anyhow::bail!(
                "database file {file} does not exist (pass --database or set SLAKEEPER_DATABASE_URL)"
            );
        }
    }
    let db = Db::connect(db_url)
        .await
        .with_context(|| format!("connecting to {}", redact(db_url)))?;
    queue::migrate(&db).await.context("applying migrations")?;
    Ok(Engine {
        db,
        cfg,
        notifier: notify::Notifier::new(None, "slakeeper@localhost", None)
            .map_err(anyhow::Error::msg)?,
        retry: RetryPolicy::default(),
        clock: system_clock(),
    })
}

async fn report_cmd(a: ReportArgs) -> anyhow::Result<()> {
    let engine = offline_engine(&a.db.database, &a.wf.workflows).await?;
    let until = match &a.until {
        Some(u) => parse_instant(u)?,
        None => engine.now(),
    };
    let since = match &a.since {
        Some(s) => parse_instant(s)?,
        None => until - chrono::Duration::days(7),
    };
    if since >= until {
        anyhow::bail!("--since must be before --until");
    }
    let wfs: Vec<_> = match &a.workflow {
        Some(w) => vec![
            engine
                .cfg
                .catalog
                .get(w)
                .cloned()
                .with_context(|| format!("unknown workflow `{w}`"))?,
        ],
        None => engine.cfg.catalog.workflows.values().cloned().collect(),
    };
    for wf in wfs {
        let r = report::build(&engine.db, &wf, since, until).await?;
        match a.format {
            Format::Text => println!("{}", report::render_text(&r)),
            Format::Json => println!("{}", serde_json::to_string(&r)?),
        }
    }
    Ok(())
}

/// The job handlers of every queue (the runtime's side of apalis). Timer jobs go through
/// a [`engine::TimerBatcher`] so concurrent firings share one transaction.
#[derive(Clone)]
pub(crate) struct Jobs(pub(crate) Arc<Engine>, pub(crate) engine::TimerBatcher);

impl Jobs {
    pub(crate) fn new(engine: Arc<Engine>, batch: usize) -> Jobs {
        let b = engine::TimerBatcher::start(engine.clone(), batch);
        Jobs(engine, b)
    }
}

fn finish(
    queue: &'static str,
    t: Instant,
    r: Result<&'static str, db::DbError>,
) -> Result<(), String> {
    let secs = t.elapsed().as_secs_f64();
    match r {
        Ok(outcome) => {
            metrics::job(queue, outcome, secs);
            Ok(())
        }
        Err(e) => {
            metrics::job(queue, "failed", secs);
            tracing::warn!(queue, error = %e, "job failed; apalis will retry it");
            Err(e.to_string())
        }
    }
}

impl Handler<TimerJob> for Jobs {
    async fn handle(&self, job: TimerJob) -> Result<(), String> {
        let t = Instant::now();
        if !self.0.wait_until_due(&job).await {
            return finish(queue::TIMERS, t, Ok("deferred"));
        }
        match self.1.fire(job).await {
            Ok(outcome) => finish(queue::TIMERS, t, Ok(outcome)),
            Err(e) => finish(queue::TIMERS, t, Err(db::DbError::Other(e))),
        }
    }
}

impl Handler<DeliveryJob> for Jobs {
    async fn handle(&self, job: DeliveryJob) -> Result<(), String> {
        let t = Instant::now();
        finish(queue::OUTBOX, t, self.0.on_delivery(&job).await)
    }
}

impl Handler<ReviewJob> for Jobs {
    async fn handle(&self, job: ReviewJob) -> Result<(), String> {
        let t = Instant::now();
        finish(queue::REVIEW, t, self.0.on_review(&job).await)
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

pub async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let cfg = load_workflows(&a.wf.workflows)?;
    let db = Db::connect(&a.db.database)
        .await
        .with_context(|| format!("connecting to {}", redact(&a.db.database)))?;
    queue::migrate(&db).await.context("applying migrations")?;
    if matches!(db, Db::Sqlite(_)) && a.role != Role::All {
        tracing::warn!(
            "--role {:?} on SQLite: run api and worker roles against one file only on one machine",
            a.role
        );
    }
    let handle = metrics::install().map_err(anyhow::Error::msg)?;
    metrics::preregister(&cfg.catalog);
    let source_registry = Arc::new(
        sources::Registry::build(&cfg.sources, &|k| std::env::var(k).ok())
            .map_err(anyhow::Error::msg)?,
    );
    let notifier = notify::Notifier::new(
        a.smtp_url.as_deref(),
        &a.smtp_from,
        a.webhook_secret.as_deref(),
    )
    .map_err(anyhow::Error::msg)?;
    if !notifier.has_smtp() {
        tracing::warn!("no SMTP server configured (SLAKEEPER_SMTP_URL): emails wait in the outbox");
    }
    let retry = RetryPolicy {
        base: Duration::from_millis(a.retry_base_ms.max(1)),
        max: Duration::from_millis(a.retry_max_ms.max(a.retry_base_ms.max(1))),
    };
    let engine = Arc::new(Engine {
        db: db.clone(),
        cfg: cfg.clone(),
        notifier,
        retry,
        clock: system_clock(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(shutdown_signal(stop_tx));
    let instance = format!("{}-{}", std::process::id(), ulid::Ulid::new());
    let mut tasks = tokio::task::JoinSet::new();

    if a.role != Role::Worker {
        let listener = tokio::net::TcpListener::bind(&a.listen)
            .await
            .with_context(|| format!("cannot listen on {}", a.listen))?;
        let addr = listener.local_addr()?;
        let app = http::router(http::AppState {
            engine: engine.clone(),
            token: a.api_token.clone(),
            metrics: Some(handle.clone()),
        })
        .merge(sources::route::router(
            engine.clone(),
            source_registry.clone(),
        ));
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            let res = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    queue::stopped(&mut stop).await;
                })
                .await;
            if let Err(e) = res {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
        // Printed on stdout so scripts (and tests) can find the port when --listen used :0.
        println!("slakeeper listening on http://{addr}");
        tracing::info!(%addr, workflows = cfg.catalog.workflows.len(), backend = db.backend(), role = ?a.role, "serving");
    }

    if a.role != Role::Api {
        if let Err(e) = engine.schedule_reviews().await {
            tracing::warn!(error = %e, "could not schedule review reports; retrying at next start");
        }
        let opts = WorkerOpts::new(
            Duration::from_millis(a.poll_ms.max(10)),
            a.concurrency,
            Duration::from_secs(a.orphan_after_secs.max(3)),
        );
        let restart: Arc<dyn Fn(&'static str) + Send + Sync> = Arc::new(metrics::worker_restart);
        let jobs = Jobs::new(engine.clone(), 64);
        tasks.spawn(queue::supervise::<TimerJob, _>(
            db.clone(),
            queue::TIMERS,
            opts.clone(),
            jobs.clone(),
            stop_rx.clone(),
            restart.clone(),
        ));
        tasks.spawn(queue::supervise::<DeliveryJob, _>(
            db.clone(),
            queue::OUTBOX,
            opts.clone(),
            jobs.clone(),
            stop_rx.clone(),
            restart.clone(),
        ));
        tasks.spawn(queue::supervise::<ReviewJob, _>(
            db.clone(),
            queue::REVIEW,
            WorkerOpts {
                concurrency: 1,
                batch_size: 1,
                ..opts.clone()
            },
            jobs,
            stop_rx.clone(),
            restart,
        ));
        // Promoter: timers entering the horizon become jobs; lost jobs are re-pushed.
        {
            let eng = engine.clone();
            let mut stop = stop_rx.clone();
            tasks.spawn(async move {
                loop {
                    match eng.promote().await {
                        Ok((t, _)) if t >= 1000 => continue, // more waiting: go on at once
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "promoting timers failed; retrying"),
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = queue::stopped(&mut stop) => return,
                    }
                }
            });
        }
        // Pruner: finished jobs older than --keep-done-secs.
        let pdb = db.clone();
        let keep = Duration::from_secs(a.keep_done_secs);
        let mut stop = stop_rx.clone();
        let eng = engine.clone();
        tasks.spawn(async move {
            let every = (keep / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = queue::stopped(&mut stop) => return,
                }
                match queue::prune(&pdb, keep, eng.now().timestamp()).await {
                    Ok(n) if n > 0 => tracing::debug!(rows = n, "pruned finished jobs"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "pruning finished jobs failed"),
                }
            }
        });
    }

    // Gauges from the database, by whichever process holds the lease.
    {
        let eng = engine.clone();
        let mut stop = stop_rx.clone();
        let state = Arc::new(metrics::GaugeState::default());
        tasks.spawn(async move {
            loop {
                let now = eng.now();
                match store::take_lease(&eng.db, "gauges", &instance, now, 15_000).await {
                    Ok(true) => {
                        if let Err(e) = eng.refresh_gauges(&state).await {
                            tracing::warn!(error = %e, "refreshing gauges failed");
                        }
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "gauge lease failed"),
                }
                let (idle, in_use, max) = eng.db.pool_stats();
                metrics::pool(idle, in_use, max);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = queue::stopped(&mut stop) => return,
                }
            }
        });
    }

    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r {
            tracing::error!(error = %e, "a task panicked");
        }
    }
    db.close().await;
    tracing::info!("stopped");
    Ok(())
}

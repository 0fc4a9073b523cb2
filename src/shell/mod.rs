//! The shell: everything that does I/O around the pure core.
//!
//! * [`settings`] — plain settings of every command (built by `cli.rs`, or by tests).
//! * [`serve`] — the `serve` application: HTTP, queue workers and maintenance [`services`]
//!   under one shutdown signal.
//! * [`engine`] — the runtime's use cases (ingest, timers, deliveries, reviews), each one
//!   transaction around the core; SQL lives in [`store`] and [`queue`] only.
//! * [`channels`] — where notifications go (email, webhook, …): one file per kind.
//! * [`http`], [`metrics`], [`show`], [`report`], [`commands`] — the edges users touch.

pub mod ack;
pub mod ack_key;
pub mod at_risk;
pub mod auth;
pub mod backup;
pub mod calendar_cmd;
pub mod channels;
pub mod commands;
pub mod db;
pub mod engine;
pub mod env;
pub mod erase;
pub mod export;
pub mod http;
pub mod jobs;
pub mod json_input;
pub mod links;
pub mod metrics;
pub mod open;
pub mod queue;
pub mod ready;
pub mod replan;
pub mod report;
pub mod retention;
pub mod schema;
pub mod secret;
pub mod serve;
pub mod services;
pub mod settings;
pub mod show;
pub mod sources;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod ui;

use std::process::ExitCode;

use crate::shell::settings::Command;

pub use secret::redact_url as redact;

/// Run a command; the exit code follows SPEC (1 on any error, with the error on stderr).
pub fn run(cmd: Command) -> ExitCode {
    match cmd {
        // Neither needs a runtime or a database.
        Command::Validate(s) => commands::validate(&s),
        Command::Simulate(s) => exit(commands::simulate_cmd(&s)),
        Command::CalendarImport(s) => exit(calendar_cmd::import(&s)),
        Command::CalendarShow(s) => exit(calendar_cmd::show(&s)),
        Command::Serve(s) => block_on(async move { serve::App::build(*s).await?.run().await }),
        Command::Migrate(s) => block_on(async move { commands::migrate(&s).await }),
        Command::TicketShow(s) => block_on(async move { commands::ticket_show(&s).await }),
        Command::Report(s) => block_on(async move { commands::report(&s).await }),
        Command::Bench(s) => block_on(crate::bench::run(s)),
        Command::Replan(s) => block_on(async move { replan::replan(&s).await }),
        Command::AtRisk(s) => block_on(async move { at_risk::command(&s).await }),
        Command::Export(s) => block_on(async move { export::export(&s).await.map(|_| ()) }),
        Command::Erase(s) => block_on(async move { erase::command(&s).await }),
        Command::Backup(s) => block_on(async move {
            println!("backup: {}", backup::backup(&s).await?);
            Ok(())
        }),
    }
}

fn exit(res: anyhow::Result<ExitCode>) -> ExitCode {
    match res {
        Ok(code) => code,
        // `… | head` closed the pipe: stop quietly, as a tool killed by SIGPIPE would.
        Err(e) if closed_pipe(&e) => ExitCode::from(141),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Run one async command on a fresh runtime, with logging set up.
fn block_on(f: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    telemetry::init();
    // reqwest and lettre share rustls; pick its crypto provider once, before either is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"));
    exit(rt.and_then(|rt| rt.block_on(f)).map(|()| ExitCode::SUCCESS))
}

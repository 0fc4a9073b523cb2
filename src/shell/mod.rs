//! The shell: everything that does I/O (database, job queue, HTTP, SMTP, webhooks, metrics).

use std::process::ExitCode;

use crate::cli::Command;

pub fn run(cmd: Command) -> ExitCode {
    eprintln!("{cmd:?}: not implemented yet");
    ExitCode::from(2)
}

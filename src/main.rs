//! Thin entry point: parse the command line and hand over to the library.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    slakeeper::cli::run(slakeeper::cli::Cli::parse())
}

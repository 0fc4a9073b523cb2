//! Thin entry point: parse the command line and hand over to the library.
#![forbid(unsafe_code)]

use clap::Parser;

// mimalloc, not glibc's malloc: ingest allocates many small short-lived values (events,
// JSON, SQL binds) across the runtime's threads, and perf put glibc's malloc/free at
// ~12% of HTTP ingest. (Tests keep the system allocator: this is the binary's choice.)
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    slakeeper::cli::run(slakeeper::cli::Cli::parse())
}

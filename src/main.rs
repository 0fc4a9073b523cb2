//! Thin entry point: parse the command line and hand over to the library.
#![forbid(unsafe_code)]

use clap::Parser;

// mimalloc, not glibc's malloc: ingest allocates many small short-lived values (events,
// JSON, SQL binds) across the runtime's threads, and perf put glibc's malloc/free at
// ~12% of HTTP ingest. (Tests keep the system allocator: this is the binary's choice.)
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    quiet_on_closed_pipe();
    slakeeper::cli::run(slakeeper::cli::Cli::parse())
}

/// `slakeeper report | head` closes the pipe early; Rust ignores SIGPIPE, so `println!`
/// panics with a backtrace instead of ending quietly as other command-line tools do. Exit
/// with the status a shell gives a process killed by SIGPIPE (128 + 13), nothing printed.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let p = info.payload();
        let msg = p
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| p.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to std") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

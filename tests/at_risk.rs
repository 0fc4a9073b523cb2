//! Issue 22, "What breaches next", through the real binary: a breached clock keeps its
//! breach moment as `due`; the at-risk list (`GET /v1/at-risk`, `slakeeper at-risk`) with its
//! order, window and filters on both databases; the breach forecast against a seeded history
//! whose answer is known, and `simulate` agreeing with the API.

mod common;

use std::path::Path;
use std::process::Command;

use chrono::{DateTime, Duration, Utc};
use common::*;
use serde_json::{Value, json};

/// The shipped workflows, with routes that stay on this machine (the shipped ones name
/// example.com addresses and a pager URL).
fn shipped_workflows(hook_port: u16) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows");
    copy_dir(&src, dir.path());
    let routes = format!(
        "supervisor: {{ email: [supervisor@test.local] }}\n\
         manager: {{ email: [manager@test.local] }}\n\
         oncall: {{ email: [oncall@test.local], webhook: [\"http://127.0.0.1:{hook_port}/hook\"] }}\n\
         department_head: {{ email: [head@test.local] }}\n\
         pr: {{ email: [pr@test.local] }}\n\
         store_manager: {{ email: [store@test.local] }}\n"
    );
    std::fs::write(dir.path().join("routes.yaml"), routes).expect("routes");
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

/// A `due` as `GET /v1/tickets/{id}` writes it (`2026-11-23 10:32:51 +08:00`).
fn local_time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S %:z")
        .unwrap_or_else(|e| panic!("`{s}`: {e}"))
        .with_timezone(&Utc)
}

fn clock<'a>(ticket: &'a Value, name: &str) -> &'a Value {
    ticket["clocks"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["clock"] == name))
        .unwrap_or_else(|| panic!("no clock {name} in {ticket}"))
}

fn slakeeper(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_slakeeper"))
        .args(args)
        .env_remove("SLAKEEPER_API_TOKEN")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run slakeeper");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The row: urgent ticket opened at T with a 30 m first response, breached at
/// T+30m, waiting on the customer at T+2h, resumed at T+2h30m. Before the fix the API said
/// `due` T+2h30m after the resume and null while waiting; SPEC ("Data over the years"): a
/// breached clock keeps the moment it breached as its `due`, whatever happens after.
fn breached_clock_keeps_its_breach_moment(backend: Backend) {
    let hooks = Hooks::start();
    let smtp = Smtp::start();
    let wf = shipped_workflows(hooks.port);
    let db = TestDb::new(backend);
    let app = App::start(AppOpts::new(&db.url, wf.path(), smtp.port));
    let t0 = Utc::now() - Duration::hours(3);
    let t0 = t0 - Duration::nanoseconds(i64::from(t0.timestamp_subsec_nanos()));
    let at = |m: i64| rfc(t0 + Duration::minutes(m));
    let mut open = opened("d1", "DUE-1", "urgent", &at(0));
    open["workflow"] = json!("general-service");
    let (s, b) = app.post(&open);
    assert_eq!(s, 202, "{b}");
    let (s, b) = app.post(&event(
        "d2",
        "DUE-1",
        "ticket.waiting_on_customer",
        &at(120),
    ));
    assert_eq!(s, 202, "{b}");
    let breach = t0 + Duration::minutes(30);

    // Waiting on the customer: due is the breach moment, not null.
    let (s, t) = app.get("/v1/tickets/DUE-1");
    assert_eq!(s, 200, "{t}");
    let fr = clock(&t, "first_response");
    assert_eq!(fr["outcome"], "breached", "{fr}");
    assert_eq!(fr["status"], "paused", "{fr}");
    let due = fr["due"]
        .as_str()
        .unwrap_or_else(|| panic!("due is null: {fr}"));
    assert_eq!(local_time(due), breach, "{fr}");

    // Resumed: still the breach moment, not the resume plus the remaining budget.
    let (s, b) = app.post(&event("d3", "DUE-1", "ticket.resumed", &at(150)));
    assert_eq!(s, 202, "{b}");
    let (_, t) = app.get("/v1/tickets/DUE-1");
    let fr = clock(&t, "first_response");
    assert_eq!(fr["outcome"], "breached", "{fr}");
    assert_eq!(fr["status"], "running", "{fr}");
    assert_eq!(
        local_time(fr["due"].as_str().unwrap_or("-")),
        breach,
        "{fr}"
    );

    // `ticket show` reads the same.
    let (ok, out, err) = slakeeper(&[
        "ticket",
        "show",
        "DUE-1",
        "--database",
        &db.url,
        "--workflows",
        &wf.path().display().to_string(),
    ]);
    assert!(ok, "{err}");
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("first_response"))
        .unwrap_or_else(|| panic!("{out}"));
    let shown = breach
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    assert!(line.contains(&shown), "{line} lacks {shown}");
}

#[test]
fn a_breached_clock_keeps_its_breach_moment_as_due_sqlite() {
    breached_clock_keeps_its_breach_moment(Backend::Sqlite);
}

#[test]
fn a_breached_clock_keeps_its_breach_moment_as_due_postgres() {
    breached_clock_keeps_its_breach_moment(Backend::Postgres);
}

//! `slakeeper bench` as users run it: the real binary, on scratch databases it creates and
//! removes, with the `workers` phase starting real `serve --role worker` processes. Only
//! completeness is asserted (every timer drained, every figure present): speeds are
//! reported, never asserted.

use std::process::Command;

use serde_json::Value;

use crate::common::{Backend, pg_admin_url};

fn bench(database: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_slakeeper"))
        .args(["bench", "--database", database])
        .args([
            "--only",
            "drain,workers",
            "--timers",
            "1500",
            "--workers",
            "2",
        ])
        .args(["--format", "json"])
        .env_remove("SLAKEEPER_DATABASE_URL")
        .output()
        .expect("run slakeeper bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("bench --format json printed no JSON ({e}):\n{stdout}"))
}

fn check(v: &Value, backend: &str) {
    assert_eq!(v["backend"], backend, "{v}");
    let d = &v["drain"];
    assert_eq!(
        d["timers"], 1500,
        "every bench ticket has one due timer: {v}"
    );
    assert!(d["drain_per_s"].as_f64().is_some_and(|r| r > 0.0), "{v}");
    assert!(d["first_fired_after_s"].as_f64().is_some(), "{v}");
    assert!(
        d["scattered"]["drain_per_s"]
            .as_f64()
            .is_some_and(|r| r > 0.0),
        "the drain with scattered ticket ids is missing: {v}"
    );
    let w = &v["workers"][0];
    assert_eq!(w["processes"], 2, "{v}");
    assert!(
        w["drain_per_s"].as_f64().is_some_and(|r| r > 0.0),
        "the worker processes drained nothing: {v}"
    );
}

/// `bench` works on scratch databases beside the one it is named, never in it (on SQLite the
/// named file never appears).
fn drains_every_timer(backend: Backend) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("tempdir");
            let named = dir.path().join("named.db");
            let v = bench(&format!("sqlite://{}", named.display()));
            check(&v, "sqlite");
            assert!(!named.exists(), "bench touched the database it was named");
        }
        Backend::Postgres => {
            let v = bench(&pg_admin_url());
            check(&v, "postgres");
        }
    }
}

crate::both_databases! {
    bench_drains_every_timer_in_process_and_with_worker_processes => drains_every_timer,
}

//! Running it for years (issue 21, shipping and backups), through the real binary: a start
//! on a machine with no CA certificates, `backup` under concurrent ingest verified by
//! `export` from the copy. The container image, compose file and systemd unit are tested by
//! `tests/it/image.rs` (opt-in, see there).
//! Set-up: `bash scripts/test-env.sh` (the README's test command does it).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(30);

/// What rustls-native-certs reads on Linux: SSL_CERT_FILE / SSL_CERT_DIR when either is set
/// (then nothing else), else openssl-probe's list (/etc/ssl/certs/ca-certificates.crt, …).
/// Pointing both at empty places is what a base without `ca-certificates` looks like to it.
fn no_system_roots(dir: &std::path::Path) -> Vec<(&'static str, String)> {
    let file = dir.join("no-roots.pem");
    std::fs::write(&file, "").expect("empty bundle");
    let certs = dir.join("no-certs");
    std::fs::create_dir_all(&certs).expect("empty dir");
    vec![
        ("SSL_CERT_FILE", file.display().to_string()),
        ("SSL_CERT_DIR", certs.display().to_string()),
    ]
}

/// Issue 21 row 11: with no CA certificate on the machine, `serve` with plain SMTP and a
/// local http:// webhook used to migrate, then exit ("No CA certificates were loaded from
/// the system"). It starts, and both channels deliver.
#[test]
fn serve_starts_and_delivers_with_no_system_ca_certificates() {
    // Arrange
    let smtp = Smtp::start();
    let hooks = Hooks::start();
    let wf = workflows(hooks.port, false);
    let db = TestDb::new(Backend::Sqlite);
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut o = AppOpts::new(&db.url, wf.dir.path(), smtp.port);
    o.extra_env = no_system_roots(tmp.path());
    // Act
    let app = App::start(o);
    let (s, body) = app.post(&opened("r1", "T-ROOTS", "urgent", &now_rfc3339(0)));
    // Assert: the breach (3 s) goes out by mail and by the http:// webhook.
    assert_eq!(s, 202, "{body}");
    let mails = smtp.wait_mails(LONG, |m| {
        !matching(m, "oncall@test.local", "[SLA breach] T-ROOTS").is_empty()
    });
    assert_eq!(
        matching(&mails, "oncall@test.local", "[SLA breach] T-ROOTS").len(),
        1,
        "{mails:#?}\n{}",
        app.stderr()
    );
    let got = wait_for(LONG, || {
        let h = hooks.all();
        (!h.is_empty()).then_some(h)
    });
    assert!(got.is_some(), "no webhook call\n{}", app.stderr());
    // The start-up log says which roots an https:// endpoint would be checked against.
    let log = app.stderr();
    assert!(
        log.contains("bundled Mozilla roots"),
        "no word on the trust roots:\n{log}"
    );
}

// ------------------------------------------------------------------ backup

fn slakeeper(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_slakeeper"))
        .args(args)
        .env_remove("SLAKEEPER_DATABASE_URL")
        .env_remove("SLAKEEPER_WORKFLOWS")
        .output()
        .expect("run slakeeper");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One batch the feeder posted: when it was sent, when its 202 came, its event ids.
struct Batch {
    sent: Instant,
    answered: Instant,
    ids: Vec<String>,
}

/// Posts batches of 25 tickets (opened, then responded: no timer fires during the test)
/// until `stop`, recording each 202.
fn feed(base: String, stop: Arc<AtomicBool>, done: Arc<Mutex<Vec<Batch>>>) {
    let client = reqwest::blocking_client();
    let at = now_rfc3339(0);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut events = Vec::new();
        for i in 0..25 {
            let t = format!("BK-{n:05}-{i:02}");
            events.push(opened(&format!("{t}-o"), &t, "normal", &at));
            events.push(event(&format!("{t}-r"), &t, "ticket.responded", &at));
        }
        let ids = events
            .iter()
            .map(|e| e["id"].as_str().unwrap_or_default().to_string())
            .collect();
        let sent = Instant::now();
        let (s, body) = client.post(&format!("{base}/v1/events"), &json!({ "events": events }));
        assert_eq!(s, 202, "{body}");
        let answered = Instant::now();
        if let Ok(mut d) = done.lock() {
            d.push(Batch {
                sent,
                answered,
                ids,
            });
        }
        n += 1;
    }
}

fn sqlite_rows(url: &str, sql: &str) -> Vec<(String,)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(url).await.expect("open the copy");
        let rows = sqlx::query_as::<_, (String,)>(sqlx::AssertSqlSafe(sql))
            .fetch_all(&pool)
            .await
            .expect("query");
        pool.close().await;
        rows
    })
}

/// Issue 21 row 8: `backup` while `serve` ingests. The copy holds every event answered 202
/// before the backup started and none sent after it ended, passes `integrity_check`, and
/// `export` and `ticket show` read it.
#[test]
fn backup_under_concurrent_ingest_holds_every_event_answered_before_it() {
    // Arrange: serve on SQLite, a feeder posting without pause; 10,000 events first so the
    // copy takes a while.
    let hooks = Hooks::start();
    let wf = workflows(hooks.port, false);
    let db = TestDb::new(Backend::Sqlite);
    let mut o = AppOpts::new(&db.url, wf.dir.path(), 0);
    o.smtp_port = None;
    let app = App::start(o);
    let stop = Arc::new(AtomicBool::new(false));
    let done: Arc<Mutex<Vec<Batch>>> = Arc::default();
    let feeder = {
        let (base, stop, done) = (app.base.clone(), stop.clone(), done.clone());
        std::thread::spawn(move || feed(base, stop, done))
    };
    let batches = || done.lock().map(|d| d.len()).unwrap_or(0);
    wait_for(Duration::from_secs(300), || {
        (batches() >= 200).then_some(())
    })
    .expect("10,000 events ingested");
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("backup.db");
    let copy_s = copy.display().to_string();
    // Act
    let started = Instant::now();
    let (ok, out, err) = slakeeper(&["backup", "--database", &db.url, "--output", &copy_s]);
    let ended = Instant::now();
    // Ingest goes on after the backup too: none of that may be in the copy.
    let at_end = batches();
    wait_for(LONG, || (batches() >= at_end + 5).then_some(())).expect("ingest goes on");
    stop.store(true, Ordering::Relaxed);
    feeder.join().expect("feeder");
    // Assert
    assert!(ok, "backup failed: {err}\n{}", app.stderr());
    assert!(out.contains("integrity ok"), "{out}");
    let copy_url = format!("sqlite://{copy_s}");
    let export = dir.path().join("export.jsonl");
    let export_s = export.display().to_string();
    let (ok, _, err) = slakeeper(&["export", "--database", &copy_url, "--output", &export_s]);
    assert!(ok, "export from the copy: {err}");
    let exported: BTreeSet<String> = std::fs::read_to_string(&export)
        .expect("export file")
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("json line");
            v["id"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    let all = std::mem::take(&mut *done.lock().expect("batches"));
    let before: Vec<&String> = all
        .iter()
        .filter(|b| b.answered < started)
        .flat_map(|b| &b.ids)
        .collect();
    let during = all
        .iter()
        .filter(|b| b.answered > started && b.sent < ended)
        .count();
    let after: Vec<&String> = all
        .iter()
        .filter(|b| b.sent > ended)
        .flat_map(|b| &b.ids)
        .collect();
    let missing: Vec<_> = before
        .iter()
        .filter(|id| !exported.contains(**id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} events answered 202 before the backup are not in it: {:?}",
        missing.len(),
        before.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(
        after.iter().all(|id| !exported.contains(*id)),
        "events sent after the backup ended are in it"
    );
    assert!(
        during > 0,
        "no batch was ingested while the backup ran ({:?}): not a test of a live copy",
        ended - started
    );
    eprintln!(
        "backup in {:?}: {} events before, {} batches during, {} exported; {out}",
        ended - started,
        before.len(),
        during,
        exported.len()
    );
    // The copy is sound and consistent: every ticket opened in it has its ticket row.
    assert_eq!(
        sqlite_rows(&copy_url, "PRAGMA integrity_check"),
        vec![("ok".to_string(),)]
    );
    let orphans = sqlite_rows(
        &copy_url,
        "SELECT e.id FROM sk_events e LEFT JOIN sk_tickets t ON t.id = e.ticket \
         WHERE t.id IS NULL",
    );
    assert!(
        orphans.is_empty(),
        "events without their ticket: {orphans:?}"
    );
    let (ok, shown, err) = slakeeper(&[
        "ticket",
        "show",
        "BK-00000-00",
        "--database",
        &copy_url,
        "--workflows",
        &wf.dir.path().display().to_string(),
    ]);
    assert!(ok && shown.contains("BK-00000-00"), "{shown}{err}");
    // No temporary file is left beside the copy.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains("partial")), "{names:?}");
}

/// A database to back up: created and migrated by `slakeeper migrate`.
fn migrated(dir: &std::path::Path) -> String {
    let url = format!("sqlite://{}", dir.join("sk.db").display());
    let (ok, _, err) = slakeeper(&["migrate", "--database", &url]);
    assert!(ok, "{err}");
    url
}

#[test]
fn backup_refuses_an_existing_output_unless_forced() {
    // Arrange
    let dir = tempfile::tempdir().expect("tempdir");
    let url = migrated(dir.path());
    let out = dir.path().join("keep.db");
    std::fs::write(&out, "precious").expect("write");
    let out_s = out.display().to_string();
    // Act
    let (ok, _, err) = slakeeper(&["backup", "--database", &url, "--output", &out_s]);
    // Assert: refused, the file untouched, nothing else written.
    assert!(!ok);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&out).expect("read"), "precious");
    let count = std::fs::read_dir(dir.path()).expect("dir").count();
    assert_eq!(count, 2, "only sk.db and keep.db");
    // With --force it is replaced by a backup that export reads.
    let (ok, stdout, err) =
        slakeeper(&["backup", "--database", &url, "--output", &out_s, "--force"]);
    assert!(ok, "{err}");
    assert!(stdout.contains("0 events"), "{stdout}");
    let (ok, _, err) = slakeeper(&["export", "--database", &format!("sqlite://{out_s}")]);
    assert!(ok, "{err}");
    // The database itself is never a valid output, --force or not.
    let db_file = dir.path().join("sk.db").display().to_string();
    let (ok, _, err) = slakeeper(&[
        "backup",
        "--database",
        &url,
        "--output",
        &db_file,
        "--force",
    ]);
    assert!(!ok && err.contains("is the database itself"), "{err}");
}

#[test]
fn backup_of_a_pg_url_points_to_pg_dump_and_shows_no_password() {
    // Act: nothing is connected to, so no server is needed.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("b.db").display().to_string();
    let (ok, _, err) = slakeeper(&[
        "backup",
        "--database",
        "postgres://sk:hunter2@127.0.0.1:1/sk",
        "--output",
        &out,
    ]);
    // Assert
    assert!(!ok);
    assert!(
        err.contains("pg_dump") && err.contains("docs/operations.md"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    assert!(!dir.path().join("b.db").exists());
}

#[test]
fn backup_of_a_missing_database_creates_nothing() {
    // Arrange
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("typo.db");
    let out = dir.path().join("b.db");
    // Act
    let (ok, _, err) = slakeeper(&[
        "backup",
        "--database",
        &format!("sqlite://{}", db.display()),
        "--output",
        &out.display().to_string(),
    ]);
    // Assert
    assert!(!ok);
    assert!(err.contains("does not exist"), "{err}");
    assert!(!db.exists() && !out.exists());
    // An output directory that does not exist is named.
    let url = migrated(dir.path());
    let (ok, _, err) = slakeeper(&[
        "backup",
        "--database",
        &url,
        "--output",
        "/nonexistent/b.db",
    ]);
    assert!(
        !ok && err.contains("directory /nonexistent does not exist"),
        "{err}"
    );
}

#[test]
fn backup_has_help_that_names_restore_and_verify() {
    let (ok, out, err) = slakeeper(&["backup", "--help"]);
    assert!(ok, "{err}");
    for want in ["--output", "--force", "--database", "FILE-wal", "export"] {
        assert!(out.contains(want), "{want} not in\n{out}");
    }
}

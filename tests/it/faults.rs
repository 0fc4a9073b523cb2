//! Faults that heal (issue 21 row 10), through the real binary: a full disk under a SQLite
//! file (a small tmpfs the test mounts) and, on PostgreSQL, backends terminated under load
//! and a database that refuses writes. While the fault lasts ingest answers 503 and loses
//! nothing, and `/readyz` answers 503; once it is cleared ingest, `/readyz`, the timer firer
//! and the delivery workers recover by themselves within seconds.
//!
//! Needs root (or CAP_SYS_ADMIN) for `mount -t tmpfs`; the SQLite test fails, naming the fix,
//! when it cannot mount.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

const LONG: Duration = Duration::from_secs(30);

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Tmpfs { dir },
            Ok(o) => panic!(
                "tests/it/faults.rs mounts a {size} tmpfs to fill a disk, and `mount` failed: {}\n\
                 fix: run the tests as root, or in a container started with --privileged \
                 (or --cap-add SYS_ADMIN)",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => panic!(
                "tests/it/faults.rs needs the `mount` command to mount a tmpfs ({e}); \
                 fix: install util-linux and run the tests as root"
            ),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Posts `ticket.opened` events with unique ids, remembering which were accepted.
struct Poster {
    next: usize,
    prefix: &'static str,
    accepted: BTreeSet<String>,
}

impl Poster {
    fn new(prefix: &'static str) -> Poster {
        Poster {
            next: 0,
            prefix,
            accepted: BTreeSet::new(),
        }
    }

    /// One event; its status.
    fn post(&mut self, app: &App) -> u16 {
        self.next += 1;
        let id = format!("{}-e{}", self.prefix, self.next);
        let ticket = format!("{}-T{}", self.prefix, self.next);
        // Normal priority: its timers fire seconds later, not while the disk fills.
        let (s, body) = app.post(&opened(&id, &ticket, "normal", &now_rfc3339(0)));
        match s {
            202 => {
                self.accepted.insert(id);
            }
            503 => {}
            other => panic!("POST answered {other}: {body}\n{}", app.stderr()),
        }
        s
    }
}

/// Wait until ingest answers 202 again (how long that took), then require it to stay so:
/// one lucky request on a healthy pooled connection is not recovery.
fn ingest_recovers(p: &mut Poster, app: &App, since: Instant) -> Option<Duration> {
    let first = wait_for(LONG, || (p.post(app) == 202).then(|| since.elapsed()))?;
    for i in 0..50 {
        let s = p.post(app);
        assert_eq!(s, 202, "request {i} after recovery:\n{}", app.stderr());
    }
    Some(first)
}

/// After a fault is cleared at `since`: (when ingest answered 202 again, when `/readyz`
/// answered 200 again), watched at the same time.
fn recovery(p: &mut Poster, app: &App, since: Instant) -> (Option<Duration>, Option<Duration>) {
    std::thread::scope(|s| {
        let ready = s.spawn(|| readyz_becomes(app, 200).map(|_| since.elapsed()));
        let ingest = ingest_recovers(p, app, since);
        (ingest, ready.join().unwrap_or(None))
    })
}

/// Status of `/readyz` once its one-second probe cache has had time to turn: polled until
/// it answers `want` or `LONG` passes.
fn readyz_becomes(app: &App, want: u16) -> Option<Duration> {
    let t = Instant::now();
    wait_for(LONG, || (app.get("/readyz").0 == want).then(|| t.elapsed()))
}

/// Log lines that say a database transaction or a service round failed.
fn failures(log: &[String]) -> Vec<String> {
    log.iter()
        .filter(|l| {
            l.contains("non-zero transaction depth")
                || l.contains("maintenance round failed")
                || l.contains("firing due timers failed")
                || l.contains("ingest failed")
                || l.contains("worker failed")
        })
        .cloned()
        .collect()
}

fn log_lines(app: &App) -> Vec<String> {
    app.log.lock().map(|l| l.clone()).unwrap_or_default()
}

/// After the fault: a new urgent ticket breaches 3 s later, which takes the timer firer and
/// the outbox worker (both failed while the fault lasted) to reach the webhook receiver.
fn services_work_again(app: &App, hooks: &Hooks, ticket: &str) {
    let (s, body) = app.post(&opened(
        &format!("{ticket}-open"),
        ticket,
        "urgent",
        &now_rfc3339(0),
    ));
    assert_eq!(s, 202, "{body}");
    let got = wait_for(LONG, || {
        hooks
            .all()
            .iter()
            .find(|h| h.body["ticket"] == ticket)
            .cloned()
    });
    assert!(
        got.is_some(),
        "no breach webhook for {ticket} after the fault was cleared:\n{}",
        app.stderr()
    );
}

#[test]
fn full_disk_heals_once_space_is_freed_sqlite() {
    // Arrange: a 6 MB disk, a third of it taken by a file the test can delete later.
    let disk = Tmpfs::mount("6m");
    let filler: PathBuf = disk.path().join("filler");
    std::fs::write(&filler, vec![0u8; 2 * 1024 * 1024]).expect("filler");
    let url = format!("sqlite://{}", disk.path().join("sk.db").display());
    let smtp = Smtp::start();
    let hooks = Hooks::start();
    let wf = workflows(hooks.port, false);
    let app = App::start(AppOpts::new(&url, wf.dir.path(), smtp.port));
    assert_eq!(
        readyz_becomes(&app, 200).map(|_| ()),
        Some(()),
        "ready at start"
    );
    // Act 1: post until the disk is full.
    let mut p = Poster::new("fill");
    let mut refused = 0;
    while refused < 20 {
        assert!(p.next < 20_000, "the disk never filled");
        if p.post(&app) == 503 {
            refused += 1;
        }
    }
    let accepted_while_filling = p.accepted.len();
    assert!(accepted_while_filling > 0, "nothing was accepted at all");
    // Assert 1: a load balancer sees it.
    assert!(
        readyz_becomes(&app, 503).is_some(),
        "/readyz stayed 200 on a full disk"
    );
    // Act 2: free the space.
    std::fs::remove_file(&filler).expect("remove filler");
    let freed = Instant::now();
    // Assert 2: ingest and /readyz recover by themselves, within a bounded wait.
    let (ingest, ready) = recovery(&mut p, &app, freed);
    let (Some(ingest), Some(ready)) = (ingest, ready) else {
        panic!(
            "no recovery within {LONG:?} (ingest {ingest:?}, readyz {ready:?}):\n{}",
            app.stderr()
        );
    };
    println!(
        "recovered after freeing space: ingest 202 after {ingest:?}, /readyz 200 after {ready:?}"
    );
    let recovered_at = log_lines(&app).len();
    services_work_again(&app, &hooks, "after-T");
    // No failure logged after recovery, and the poisoned-connection error never at all.
    let log = log_lines(&app);
    let late = failures(&log[recovered_at..]);
    assert!(late.is_empty(), "failures after recovery: {late:#?}");
    let poisoned: Vec<_> = log
        .iter()
        .filter(|l| l.contains("non-zero transaction depth"))
        .collect();
    assert!(poisoned.is_empty(), "{poisoned:#?}");
    // Assert 3: every accepted event is stored, and the file is sound.
    drop(app);
    let db = Sqlite(url);
    let stored = db.ids("SELECT id FROM sk_events WHERE id LIKE 'fill-%'");
    let missing: Vec<_> = p.accepted.difference(&stored).collect();
    assert!(missing.is_empty(), "accepted but not stored: {missing:?}");
    assert_eq!(
        db.ids("PRAGMA integrity_check"),
        BTreeSet::from(["ok".to_string()])
    );
    println!(
        "{} accepted before the disk filled, {} in all, {} stored",
        accepted_while_filling,
        p.accepted.len(),
        stored.len()
    );
}

/// Read-only inspection of a SQLite file after the process stopped.
struct Sqlite(String);

impl Sqlite {
    fn ids(&self, sql: &str) -> BTreeSet<String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let pool = sqlx::SqlitePool::connect(&self.0).await.expect("sqlite");
            let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .fetch_all(&pool)
                .await
                .expect("query");
            pool.close().await;
            rows.into_iter().map(|(s,)| s).collect()
        })
    }
}

/// Run `sql` on the test's PostgreSQL as the admin user (outside the app's pool).
fn pg_admin(sql: &str) -> u64 {
    let url = pg_admin_url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&url).await.expect("postgres");
        let n = sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .rows_affected();
        let _ = c.close().await;
        n
    })
}

/// Terminate every backend of the app's database; how many there were.
fn terminate_backends(db_name: &str) -> u64 {
    pg_admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{db_name}' AND pid <> pg_backend_pid()"
    ))
}

#[test]
fn terminated_and_read_only_database_heals_postgres() {
    // Arrange
    let smtp = Smtp::start();
    let hooks = Hooks::start();
    let wf = workflows(hooks.port, false);
    let db = TestDb::new(Backend::Postgres);
    let name = db.url.rsplit('/').next().unwrap_or_default().to_string();
    let app = App::start(AppOpts::new(&db.url, wf.dir.path(), smtp.port));
    assert!(readyz_becomes(&app, 200).is_some(), "ready at start");
    let mut p = Poster::new("pg");
    // Act 1: terminate every connection of the app, three times, under load.
    let mut killed = 0;
    for _ in 0..3 {
        for _ in 0..30 {
            p.post(&app);
        }
        killed += terminate_backends(&name);
    }
    assert!(killed > 0, "no backend to terminate");
    // Assert 1: the pool heals; ingest answers 202 again, no connection stays broken.
    let healed = Instant::now();
    let ingest = ingest_recovers(&mut p, &app, healed);
    assert!(ingest.is_some(), "ingest did not heal:\n{}", app.stderr());
    println!("{killed} backends terminated; ingest 202 again after {ingest:?}");
    // Act 2: the database refuses writes (as a standby does, or a server out of space).
    pg_admin(&format!(
        "ALTER DATABASE {name} SET default_transaction_read_only = on"
    ));
    terminate_backends(&name);
    // Assert 2: /readyz and ingest say so.
    assert!(
        readyz_becomes(&app, 503).is_some(),
        "/readyz stayed 200 on a read-only database"
    );
    let refused = wait_for(LONG, || (p.post(&app) == 503).then_some(()));
    assert!(
        refused.is_some(),
        "ingest kept answering 202 on a read-only database"
    );
    // Act 3: writable again; the old connections are gone as after a failover.
    pg_admin(&format!(
        "ALTER DATABASE {name} RESET default_transaction_read_only"
    ));
    terminate_backends(&name);
    let cleared = Instant::now();
    // Assert 3: everything recovers by itself.
    let (ingest, ready) = recovery(&mut p, &app, cleared);
    assert!(
        ingest.is_some() && ready.is_some(),
        "no recovery (ingest {ingest:?}, readyz {ready:?}):\n{}",
        app.stderr()
    );
    println!("writable again: ingest 202 after {ingest:?}, /readyz 200 after {ready:?}");
    services_work_again(&app, &hooks, "pg-after-T");
    let log = log_lines(&app);
    let poisoned: Vec<_> = log
        .iter()
        .filter(|l| l.contains("non-zero transaction depth"))
        .collect();
    assert!(poisoned.is_empty(), "{poisoned:#?}");
    // Every accepted event is stored.
    drop(app);
    let stored: BTreeSet<String> = db
        .query_pairs("SELECT id, 0::BIGINT FROM sk_events WHERE id LIKE 'pg-%'")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let missing: Vec<_> = p.accepted.difference(&stored).collect();
    assert!(missing.is_empty(), "accepted but not stored: {missing:?}");
}

//! Safe upgrades (issue 21 rows 6 and 7), through the real binary on both databases: only
//! `serve` and `migrate` migrate; every other command refuses a database with migrations
//! pending (and changes nothing); every command refuses a database a newer binary migrated,
//! naming both schema versions and the rollback advice, never sqlx's `VersionMissing`;
//! `migrate --dry-run` lists what would run and changes nothing.

use std::borrow::Cow;

use crate::common::launch::{Exited, Launch};
use crate::common::*;
use slakeeper::shell::db::Db;
use slakeeper::shell::schema;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Our newest migration and its description, as this binary carries it.
fn latest(backend: Backend) -> (i64, String) {
    let db = TestDb::new(backend);
    rt().block_on(async {
        let db = Db::connect(&db.url).await.expect("connect");
        let [_, (_, ours)] = schema::migrators(&db);
        let m = ours.iter().max_by_key(|m| m.version).expect("a migration");
        let out = (m.version, m.description.to_string());
        db.close().await;
        out
    })
}

/// The database as an older slakeeper left it: apalis' migrations and ours but the newest.
fn migrate_all_but_latest(url: &str) {
    rt().block_on(async {
        let db = Db::connect(url).await.expect("connect");
        for (history, mut m) in schema::migrators(&db) {
            if history == "slakeeper" {
                let newest = m.iter().map(|m| m.version).max().unwrap_or(0);
                let older: Vec<_> = m.iter().filter(|m| m.version < newest).cloned().collect();
                m.migrations = Cow::Owned(older);
            }
            match &db {
                Db::Sqlite(p) => m.run(p).await.expect("migrate"),
                Db::Pg(p) => m.run(p).await.expect("migrate"),
            }
        }
        db.close().await;
    });
}

/// Run one statement on the test's database.
fn exec(db: &TestDb, sql: &str) {
    rt().block_on(async {
        let d = Db::connect(&db.url).await.expect("connect");
        let res = match &d {
            Db::Sqlite(p) => sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(p)
                .await
                .map(|_| ()),
            Db::Pg(p) => sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(p)
                .await
                .map(|_| ()),
        };
        res.unwrap_or_else(|e| panic!("{sql}: {e}"));
        d.close().await;
    });
}

/// Both migration histories, to prove a command changed nothing.
fn histories(db: &TestDb) -> Vec<(String, i64)> {
    let apalis = match db.backend {
        Backend::Sqlite => "_sqlx_migrations",
        Backend::Postgres => "apalis._sqlx_migrations",
    };
    let mut rows = db.query_pairs(
        "SELECT description, CAST(version AS BIGINT) FROM slakeeper_migrations ORDER BY version",
    );
    rows.extend(db.query_pairs(&format!(
        "SELECT 'apalis ' || description, CAST(version AS BIGINT) FROM {apalis} ORDER BY version"
    )));
    rows
}

/// Every command but `serve` and `migrate`, with what each needs.
fn inspecting_commands(url: &str, wf: &str) -> Vec<Vec<String>> {
    let with_wf = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.extend(["--database", url, "--workflows", wf].map(String::from));
        v
    };
    vec![
        with_wf(&["ticket", "show", "T-1"]),
        with_wf(&["report"]),
        with_wf(&["replan", "--dry-run"]),
        with_wf(&["replan"]),
        with_wf(&["at-risk"]),
        vec!["export".into(), "--database".into(), url.into()],
    ]
}

fn run(args: &[String]) -> Exited {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    Launch::new(&a).exit()
}

fn pending_migrations_are_applied_only_by_migrate_and_serve(backend: Backend) {
    // Arrange: a database an older release migrated.
    let (version, description) = latest(backend);
    let db = TestDb::new(backend);
    migrate_all_but_latest(&db.url);
    let before = histories(&db);
    let wf = workflows(9, false);
    let wf_dir = wf.dir.path().display().to_string();
    let newest = format!("{version:04} {description}");
    // Act + assert 1: every inspecting command refuses, naming what is pending, and
    // changes nothing.
    for args in inspecting_commands(&db.url, &wf_dir) {
        let out = run(&args);
        assert_eq!(out.code, Some(1), "{args:?}: {out:?}");
        assert!(
            out.stderr.contains("has migrations pending")
                && out.stderr.contains(&newest)
                && out.stderr.contains("run slakeeper migrate"),
            "{args:?}: {}",
            out.stderr
        );
        assert_eq!(histories(&db), before, "{args:?} changed the database");
    }
    // Act + assert 2: the dry run lists the one migration and changes nothing.
    let dry = Launch::new(&["migrate", "--dry-run", "--database", &db.url]).exit();
    assert_eq!(dry.code, Some(0), "{dry:?}");
    assert!(
        dry.stdout.contains("would apply 1 migration(s):") && dry.stdout.contains(&newest),
        "{}",
        dry.stdout
    );
    assert_eq!(
        histories(&db),
        before,
        "migrate --dry-run changed the database"
    );
    // Act + assert 3: serve migrates, and then the commands work.
    let app = Launch::serve(&db.url, wf.dir.path())
        .env("SLAKEEPER_WEBHOOK_SECRET", SECRET)
        .start();
    let ready = wait_for(std::time::Duration::from_secs(30), || {
        (app.get("/readyz").0 == 200).then_some(())
    });
    assert!(ready.is_some(), "{}", app.stderr());
    drop(app);
    let after = histories(&db);
    assert_eq!(after.len(), before.len() + 1, "{after:?}");
    assert!(after.contains(&(description.clone(), version)), "{after:?}");
    let show = run(&inspecting_commands(&db.url, &wf_dir)[0]);
    assert!(
        !show.stderr.contains("pending") && show.stderr.contains("no ticket `T-1`"),
        "{show:?}"
    );
    let dry = Launch::new(&["migrate", "--dry-run", "--database", &db.url]).exit();
    assert!(dry.stdout.contains("nothing to apply"), "{dry:?}");
}

fn newer_database_is_refused_by_every_command(backend: Backend) {
    // Arrange: a database a newer release migrated (one more migration than we know).
    let (version, _) = latest(backend);
    let db = TestDb::new(backend);
    let migrated = Launch::new(&["migrate", "--database", &db.url]).exit();
    assert_eq!(migrated.code, Some(0), "{migrated:?}");
    let checksum = match backend {
        Backend::Sqlite => "x'00'",
        Backend::Postgres => "'\\x00'::bytea",
    };
    let future = version + 1;
    exec(
        &db,
        &format!(
            "INSERT INTO slakeeper_migrations (version, description, success, checksum, execution_time) \
             VALUES ({future}, 'from a newer release', TRUE, {checksum}, 1)"
        ),
    );
    let before = histories(&db);
    let wf = workflows(9, false);
    let wf_dir = wf.dir.path().display().to_string();
    let mut all = inspecting_commands(&db.url, &wf_dir);
    for m in [&["migrate"][..], &["migrate", "--dry-run"]] {
        let mut v: Vec<String> = m.iter().map(|s| s.to_string()).collect();
        v.extend(["--database".to_string(), db.url.clone()]);
        all.push(v);
    }
    // Act + assert: each refuses with both versions and the rollback advice.
    let mut outs: Vec<(Vec<String>, Exited)> =
        all.into_iter().map(|a| (a.clone(), run(&a))).collect();
    let serve = Launch::serve(&db.url, wf.dir.path())
        .env("SLAKEEPER_WEBHOOK_SECRET", SECRET)
        .exit();
    outs.push((vec!["serve".into()], serve));
    for (args, out) in &outs {
        assert_eq!(out.code, Some(1), "{args:?}: {out:?}");
        let e = &out.stderr;
        assert!(
            e.contains("was migrated by a newer slakeeper")
                && e.contains(&format!("schema version {future}"))
                && e.contains(&format!("knows schema versions up to {version}"))
                && e.contains(&format!("{future:04} from a newer release"))
                && e.contains("docs/operations.md, \"Upgrade and rollback\""),
            "{args:?}: {e}"
        );
        assert!(!e.contains("previously applied"), "raw sqlx error: {e}");
    }
    assert_eq!(
        histories(&db),
        before,
        "a refused command changed the database"
    );
    println!("refusal: {}", outs[0].1.stderr.trim());
}

crate::both_databases! {
    pending_migrations_are_applied_only_by_migrate_and_serve => pending_migrations_are_applied_only_by_migrate_and_serve,
    newer_database_is_refused_by_every_command => newer_database_is_refused_by_every_command,
}

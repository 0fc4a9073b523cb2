//! Erasure of personal data (issue 21) through the real binary, on SQLite and PostgreSQL:
//! tickets with distinctive customer data get mails (real SMTP) and webhooks, then are
//! erased over the API and by `slakeeper erase`; the database file (SQLite, WAL included)
//! and a `pg_dump` are scanned for every erased string; `ticket show`, `report`, `export`
//! and a rebuild still work with the same numbers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::launch::{Exited, Http, Launch, json};
use crate::common::*;
use serde_json::{Value, json};

const API: &str = "erasure-api-token";
const READ: &str = "erasure-read-token";

/// The erased customer's data: each must vanish from the database.
const NAME: &str = "Zhuangerasable Qiaolin";
const EMAIL: &str = "erase.me.7781@customer.test";
const PHONE: &str = "+86-139-5550-1234";
const COMMENT: &str = "COMMENT-ERASE-unhappy-5512";
const ORDER: &str = "ORD-ERASE-991";
/// Sent after the erasure for the erased ticket: stripped too.
const LATE_NAME: &str = "Latecomer Erasedname";
/// Another customer's, kept: proves the scan sees stored text at all.
const KEEP_NAME: &str = "Keepme Untouched";
const KEEP_EMAIL: &str = "keep.me.4410@customer.test";

fn erased_strings() -> [&'static str; 6] {
    [NAME, EMAIL, PHONE, COMMENT, ORDER, LATE_NAME]
}

fn cli(args: &[&str]) -> Exited {
    Launch::new(args).exit()
}

/// The test workflows with `order` marked personal.
fn personal_workflows(hook_port: u16) -> Workflows {
    let wf = workflows(hook_port, false);
    let path = wf.dir.path().join("fast.yaml");
    let mut text = std::fs::read_to_string(&path).expect("fast.yaml");
    text.push_str("attributes:\n  order: { personal: true }\n  vip: { personal: false }\n");
    std::fs::write(&path, text).expect("write fast.yaml");
    wf
}

fn opened_with(id: &str, ticket: &str, at: &str, name: &str, email: &str) -> Value {
    json!({"id": id, "ticket": ticket, "type": "ticket.opened", "at": at,
           "priority": "urgent", "category": "complaint", "channel": "phone",
           "customer": {"name": name, "email": email, "phone": PHONE},
           "assignee": {"name": "Wang", "email": "assignee@test.local"},
           "attributes": {"order": ORDER, "vip": "gold"}})
}

/// Everything in the database as bytes a copy would hold: the SQLite file and its WAL, or
/// a `pg_dump` of the PostgreSQL database.
fn dump(db: &TestDb) -> Vec<u8> {
    match db.backend {
        Backend::Sqlite => {
            let file = PathBuf::from(db.url.trim_start_matches("sqlite://"));
            let mut bytes = std::fs::read(&file).expect("database file");
            let wal = PathBuf::from(format!("{}-wal", file.display()));
            bytes.extend(std::fs::read(wal).unwrap_or_default());
            bytes
        }
        Backend::Postgres => {
            let out = std::process::Command::new(pg_dump())
                .args(["--dbname", &db.url])
                .output()
                .expect("run pg_dump");
            assert!(
                out.status.success(),
                "pg_dump: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        }
    }
}

fn pg_dump() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin/pg_dump")).collect())
        .unwrap_or_default();
    found.retain(|p| p.exists());
    found.sort();
    found
        .pop()
        .expect("pg_dump under /usr/lib/postgresql/*/bin (scripts/test-env.sh)")
}

/// Case-insensitive (ASCII): an address may be stored in any case.
fn contains(hay: &[u8], needle: &str) -> bool {
    let needle = needle.to_ascii_lowercase();
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Which of `needles` occur in the database's bytes.
fn found_in(db: &TestDb, needles: &[&str]) -> Vec<String> {
    let bytes = dump(db).to_ascii_lowercase();
    needles
        .iter()
        .filter(|n| contains(&bytes, n))
        .map(|n| n.to_string())
        .collect()
}

/// Rows per table about `ticket` (events, notifications, deliveries, timeline, facts).
fn rows(db: &TestDb, ticket: &str) -> Vec<(String, i64)> {
    db.query_pairs(&format!(
        "SELECT 'events', COUNT(*) FROM sk_events WHERE ticket = '{ticket}'
         UNION ALL SELECT 'notifications', COUNT(*) FROM sk_notifications WHERE ticket = '{ticket}'
         UNION ALL SELECT 'deliveries', COUNT(*) FROM sk_deliveries d
                   JOIN sk_notifications n ON n.id = d.notification WHERE n.ticket = '{ticket}'
         UNION ALL SELECT 'facts', COUNT(*) FROM sk_facts WHERE ticket = '{ticket}'"
    ))
}

/// Each clock run of `ticket show --format json`: (clock, run, status, outcome, due).
fn clocks(url: &str, wf: &Path, ticket: &str) -> Vec<String> {
    let out = cli(&[
        "ticket",
        "show",
        ticket,
        "--database",
        url,
        "--workflows",
        &wf.display().to_string(),
        "--format",
        "json",
    ]);
    assert_eq!(out.code, Some(0), "ticket show: {}", out.stderr);
    let v = json(&out.stdout);
    v["clocks"]
        .as_array()
        .expect("clocks")
        .iter()
        .map(|c| {
            format!(
                "{} {} {} {} {}",
                c["clock"], c["run"], c["status"], c["outcome"], c["due"]
            )
        })
        .collect()
}

fn report(url: &str, wf: &Path) -> String {
    let out = cli(&[
        "report",
        "--database",
        url,
        "--workflows",
        &wf.display().to_string(),
        "--since",
        "2020-01-01",
        "--until",
        "2100-01-01",
        "--format",
        "json",
    ]);
    assert_eq!(out.code, Some(0), "report: {}", out.stderr);
    out.stdout
}

fn export(url: &str) -> Vec<Value> {
    let out = cli(&["export", "--database", url]);
    assert_eq!(out.code, Some(0), "export: {}", out.stderr);
    out.stdout.lines().map(json).collect()
}

fn erase_run(url: &str, wf: &Path, args: &[&str]) -> Exited {
    let wf = wf.display().to_string();
    let mut all = vec!["erase", "--database", url, "--workflows", &wf];
    all.extend_from_slice(args);
    cli(&all)
}

/// Post events with the API token; every answer must be 202.
fn post(http: &Http, base: &str, events: &[Value]) -> Value {
    let (s, body) = http.post(
        &format!("{base}/v1/events"),
        Some(API),
        &json!({"events": events}),
    );
    assert_eq!(s, 202, "{body}");
    json(&body)
}

/// The running arrangement: serve with real SMTP and webhooks, tokens set; tickets E-A and
/// E-B belong to the customer to erase, E-K to another one.
struct Scene {
    app: App,
    db: TestDb,
    wf: Workflows,
    _hooks: Hooks,
    smtp_port: u16,
    http: Http,
    opened_a: Value,
}

/// What the numbers were before the erasure.
struct Before {
    rows: Vec<(String, i64)>,
    clocks: Vec<String>,
    report: String,
    export: Vec<Value>,
}

/// E-B's customer messages by delivery status.
const PENDING: &str = "SELECT d.status, COUNT(*) FROM sk_deliveries d JOIN sk_notifications n
                       ON n.id = d.notification WHERE n.ticket = 'E-B' AND n.role = 'customer'
                       GROUP BY d.status";

impl Scene {
    fn url(&self) -> &str {
        &self.db.url
    }
    fn dir(&self) -> &Path {
        self.wf.dir.path()
    }
    fn erasures(&self) -> String {
        format!("{}/v1/erasures", self.app.base)
    }
    fn show(&self) -> String {
        let (s, show) = self
            .http
            .get(&format!("{}/v1/tickets/E-A", self.app.base), Some(READ));
        assert_eq!(s, 200, "{show}");
        show
    }
}

/// Arrange: mails to the customer really went out and a breach reached the webhook; then,
/// with SMTP down, E-B's survey keeps retrying (a customer message not sent yet).
fn arrange(backend: Backend) -> Scene {
    let mut smtp = Smtp::start();
    let hooks = Hooks::start();
    let wf = personal_workflows(hooks.port);
    let db = TestDb::new(backend);
    let mut o = AppOpts::new(&db.url, wf.dir.path(), smtp.port);
    o.extra_env = vec![
        ("SLAKEEPER_API_TOKEN", API.into()),
        ("SLAKEEPER_READ_TOKEN", READ.into()),
    ];
    let app = App::start(o);
    let http = Http::new();
    let opened_a = opened_with("ea-1", "E-A", &now_rfc3339(-30), NAME, EMAIL);
    let mut keep = opened_with("ek-1", "E-K", &now_rfc3339(-30), KEEP_NAME, KEEP_EMAIL);
    keep["customer"]["phone"] = json!("+1-555-0100");
    keep["attributes"]["order"] = json!("ORD-KEEP-1");
    let survey = json!({"id": "ea-5", "ticket": "E-A", "type": "survey.answered",
                        "at": now_rfc3339(-12), "score": 2, "comment": COMMENT});
    let events = [
        opened_a.clone(),
        keep,
        event("ea-2", "E-A", "ticket.responded", &now_rfc3339(-25)),
        event("ea-3", "E-A", "ticket.plan_agreed", &now_rfc3339(-24)),
        event("ea-4", "E-A", "ticket.resolved", &now_rfc3339(-20)),
        survey,
    ];
    post(&http, &app.base, &events);
    let to_customer = |m: &[Mail]| m.iter().any(|m| m.to().contains(EMAIL));
    let mails = smtp.wait_mails(Duration::from_secs(20), to_customer);
    assert!(to_customer(&mails), "a customer mail was sent");
    wait_for(Duration::from_secs(20), || {
        (!hooks.all().is_empty()).then_some(())
    })
    .expect("a breach webhook");
    let smtp_port = smtp.port;
    smtp.stop();
    let upper = EMAIL.to_uppercase();
    let events = [
        opened_with("eb-1", "E-B", &now_rfc3339(-10), NAME, &upper),
        event("eb-2", "E-B", "ticket.resolved", &now_rfc3339(-9)),
    ];
    post(&http, &app.base, &events);
    wait_for(Duration::from_secs(20), || {
        let rows = db.query_pairs(PENDING);
        rows.iter().any(|(s, _)| s == "retrying").then_some(())
    })
    .expect("E-B's customer mail retrying while SMTP is down");
    Scene {
        app,
        db,
        wf,
        _hooks: hooks,
        smtp_port,
        http,
        opened_a,
    }
}

fn before(sc: &Scene) -> Before {
    let b = Before {
        rows: rows(&sc.db, "E-A"),
        clocks: clocks(sc.url(), sc.dir(), "E-A"),
        report: report(sc.url(), sc.dir()),
        export: export(sc.url()),
    };
    let stored = found_in(&sc.db, &erased_strings()[..5]);
    assert_eq!(stored.len(), 5, "the data is stored before: {stored:?}");
    b
}

/// A dry run names tickets and fields, prints no value, and changes nothing.
fn dry_run_changes_nothing(sc: &Scene, b: &Before) {
    let dry = erase_run(
        sc.url(),
        sc.dir(),
        &["--customer-email", EMAIL, "--dry-run"],
    );
    assert_eq!(dry.code, Some(0), "{}", dry.stderr);
    for needle in ["dry run", "ticket E-A", "ticket E-B", "customer.email"] {
        assert!(dry.stdout.contains(needle), "{needle}: {}", dry.stdout);
    }
    for s in erased_strings() {
        let printed = dry.stdout.contains(s) || dry.stderr.contains(s);
        assert!(!printed, "dry run printed {s}");
    }
    assert_eq!(export(sc.url()), b.export, "the dry run changed nothing");
    assert_eq!(found_in(&sc.db, &erased_strings()[..5]).len(), 5);
}

/// Over the API (the read token may not, the API token may), then by address (any case)
/// with the CLI, which finds E-B (E-A is erased already) and cancels its unsent mail
/// (`--vacuum-full`: PostgreSQL rewrites the tables; SQLite ignores it).
fn erase_over_api_and_cli(sc: &Scene) {
    let (s, _) = sc
        .http
        .post(&sc.erasures(), Some(READ), &json!({"ticket": "E-A"}));
    assert_eq!(s, 403);
    let (s, body) = sc
        .http
        .post(&sc.erasures(), Some(API), &json!({"ticket": "E-A"}));
    assert_eq!(s, 200, "{body}");
    let answer = json(&body);
    assert_eq!(answer["tickets"][0]["ticket"], "E-A");
    let emails = answer["tickets"][0]["events"]["fields"]["customer.email"].as_u64();
    assert!(emails >= Some(1), "{answer}");
    let upper = EMAIL.to_uppercase();
    let args = ["--customer-email", &upper, "--vacuum-full"];
    let by_mail = erase_run(sc.url(), sc.dir(), &args);
    assert_eq!(by_mail.code, Some(0), "{}", by_mail.stderr);
    assert!(by_mail.stdout.contains("ticket E-B"), "{}", by_mail.stdout);
    assert!(
        by_mail.stdout.contains("cancelled: 1"),
        "{}",
        by_mail.stdout
    );
}

/// Nothing erased is left in the files (the other customer's data is); clocks, facts and
/// the report are the same; export writes the erased fields as null.
fn nothing_left_and_same_numbers(sc: &Scene, b: &Before) {
    let left = found_in(&sc.db, &erased_strings());
    assert_eq!(left, Vec::<String>::new(), "erased strings remain");
    assert_eq!(found_in(&sc.db, &[KEEP_NAME, KEEP_EMAIL]).len(), 2);
    assert_eq!(rows(&sc.db, "E-A"), b.rows);
    assert_eq!(clocks(sc.url(), sc.dir(), "E-A"), b.clocks);
    assert_eq!(report(sc.url(), sc.dir()), b.report);
    let after = export(sc.url());
    assert_eq!(after.len(), b.export.len());
    let by_id = |id: &str| after.iter().find(|e| e["id"] == id).cloned();
    let a1 = by_id("ea-1").expect("ea-1 exported");
    assert_eq!(a1["customer"]["email"], Value::Null);
    assert_eq!(a1["customer"]["name"], Value::Null);
    assert_eq!(a1["attributes"], json!({"order": null, "vip": "gold"}));
    let a5 = by_id("ea-5").expect("ea-5 exported");
    let comment_null = a5.get("comment").is_some_and(Value::is_null);
    assert!(comment_null && a5["score"] == 2, "{a5}");
    // The timeline says when, not what.
    assert!(sc.show().contains("\"erasure\""));
}

/// The ticket system retries an erased event (a duplicate), sends one out of order (a
/// rebuild, same outcomes) and one with the customer's name (stripped, never stored); the
/// cancelled mail stays unsent once SMTP is back.
fn later_events(sc: &Scene, b: &Before) {
    let r = post(&sc.http, &sc.app.base, std::slice::from_ref(&sc.opened_a));
    assert_eq!(r["duplicates"], 1, "a retry of an erased event: {r}");
    let assigned = json!({"id": "ea-6", "ticket": "E-A", "type": "ticket.assigned",
        "at": now_rfc3339(-22), "assignee": {"name": "Wang", "email": "assignee@test.local"}});
    post(&sc.http, &sc.app.base, &[assigned]);
    let classified = json!({"id": "ea-7", "ticket": "E-A", "type": "ticket.classified",
        "at": now_rfc3339(0), "category": "complaint", "customer": {"name": LATE_NAME}});
    post(&sc.http, &sc.app.base, &[classified]);
    let smtp = Smtp::start_on(sc.smtp_port);
    // Longer than the retry backoff's cap (1.5 s): the queued retry has run by then.
    std::thread::sleep(Duration::from_secs(3));
    assert!(sc.show().contains("\"rebuild\""), "out of order: rebuilt");
    assert_eq!(clocks(sc.url(), sc.dir(), "E-A"), b.clocks);
    let left = found_in(&sc.db, &erased_strings());
    assert_eq!(left, Vec::<String>::new(), "after later events");
    let sent = smtp
        .mails()
        .iter()
        .any(|m| m.to().to_lowercase().contains(EMAIL));
    assert!(!sent, "a cancelled mail was sent");
    let statuses = sc.db.query_pairs(PENDING);
    assert!(
        statuses.iter().all(|(s, _)| s == "cancelled"),
        "{statuses:?}"
    );
}

/// An unknown ticket or address is said so (exit 1, 404), without echoing the address.
fn unknown_subjects(sc: &Scene) {
    let none = erase_run(sc.url(), sc.dir(), &["--ticket", "NO-SUCH"]);
    assert_eq!(none.code, Some(1));
    assert!(
        none.stderr.contains("no ticket `NO-SUCH`"),
        "{}",
        none.stderr
    );
    let nobody = "nobody.9@customer.test";
    let none = erase_run(sc.url(), sc.dir(), &["--customer-email", nobody]);
    assert_eq!(none.code, Some(1));
    let said = none
        .stderr
        .contains("no stored ticket has that customer e-mail");
    assert!(said && !none.stderr.contains(nobody), "{}", none.stderr);
    let (s, _) = sc
        .http
        .post(&sc.erasures(), Some(API), &json!({"ticket": "NO-SUCH"}));
    assert_eq!(s, 404);
    let both = json!({"ticket": "E-A", "customer_email": EMAIL});
    let (s, body) = sc.http.post(&sc.erasures(), Some(API), &both);
    assert_eq!(s, 400, "{body}");
}

fn erase_scenario(backend: Backend) {
    let sc = arrange(backend);
    let b = before(&sc);
    dry_run_changes_nothing(&sc, &b);
    erase_over_api_and_cli(&sc);
    nothing_left_and_same_numbers(&sc, &b);
    later_events(&sc, &b);
    unknown_subjects(&sc);
}

/// `personal:` is checked: a value that is not a boolean, or a personal attribute that
/// chooses the workflow or a target, is a `validate` error at its line and column.
#[test]
fn personal_attributes_are_validated() {
    let wf = personal_workflows(9);
    let path = wf.dir.path().join("fast.yaml");
    let text = std::fs::read_to_string(&path).expect("fast.yaml");
    let dir = wf.dir.path().display().to_string();
    let ok = cli(&["validate", &dir]);
    assert_eq!(ok.code, Some(0), "{}{}", ok.stdout, ok.stderr);

    std::fs::write(
        &path,
        text.replace("order: { personal: true }", "order: { personal: maybe }"),
    )
    .expect("write");
    let bad = cli(&["validate", &dir]);
    assert_eq!(bad.code, Some(1));
    let all = format!("{}{}", bad.stdout, bad.stderr);
    assert!(
        all.contains("fast.yaml:") && all.contains("`personal: maybe` must be true or false"),
        "{all}"
    );

    let matched = text.replace(
        "match: { categories: [complaint, consultation] }",
        "match: { categories: [complaint, consultation], attributes: { order: [x] } }",
    );
    std::fs::write(&path, matched).expect("write");
    let bad = cli(&["validate", &dir]);
    assert_eq!(bad.code, Some(1));
    let all = format!("{}{}", bad.stdout, bad.stderr);
    assert!(
        all.contains("attribute `order` is personal, so `match` cannot use it"),
        "{all}"
    );
}

crate::both_databases! {
    erase_leaves_no_copy_and_keeps_the_numbers => erase_scenario,
}

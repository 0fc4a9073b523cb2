//! Nothing secret in logs (issue 18): `serve` with RUST_LOG=trace and every secret this test
//! can set — the three tokens, the webhook and acknowledge secrets, an SMTP URL and a
//! database URL with passwords, the sources' tokens and signing secret, every kind of channel
//! secret (URL tokens, signing secrets, a routing key, an Authorization header) — driven
//! through requests that use, and get wrong, each of them. The whole log (stderr and stdout)
//! is then scanned for every secret, every acknowledge token and the generated link key.

use std::time::Duration;

use crate::common::launch::{Http, Launch, Recorder, json, repeating_workflows};
use crate::common::*;
use hmac::{Hmac, Mac};

const LONG: Duration = Duration::from_secs(30);

const API: &str = "sk-api-Q7zR1xx";
const READ: &str = "sk-read-Vb82xx";
const METRICS: &str = "sk-metrics-Lp03xx";
const ACK: &str = "sk-ack-Hf55xx";
const SMTP_PASS: &str = "sk-smtp-pass-Zx9";
const DB_PASS: &str = "sk-db-pass-Kq4";
const NATIVE: &str = "sk-native-Tt6xx";
const JIRA: &str = "sk-jira-Wm2xx";
const GENERIC: &str = "sk-generic-Nn1xx";
const SLACK_PATH: &str = "sk-slackpath-Xx1";
const DING_TOKEN: &str = "sk-ding-tok-Aa1";
const DING_SECRET: &str = "SECsk-ding-secret-Bb2";
const PD_KEY: &str = "sk-pd-key-Cc3xx";
const AUTH: &str = "Basic sk-auth-Dd4xx";

fn routes(hook_port: u16, rec: &Recorder) -> String {
    format!(
        "supervisor: {{ email: [supervisor@test.local] }}
manager: {{ email: [manager@test.local] }}
oncall:
  email: [oncall@test.local]
  webhook: [\"http://127.0.0.1:{hook_port}/hook\"]
  slack: [{{ url_env: SLK_LOG_SLACK_URL }}]
  dingtalk: [{{ url_env: SLK_LOG_DING_URL, secret_env: SLK_LOG_DING_SECRET }}]
  pagerduty: [{{ routing_key_env: SLK_LOG_PD_KEY, url: \"{}\" }}]
  http: [{{ url: \"{}\", headers_env: {{ Authorization: SLK_LOG_AUTH }}, body: '{{\"t\": {{{{ ticket.id|json }}}}}}' }}]
",
        rec.url("/pd"),
        rec.url("/zd/{{ ticket.id }}")
    )
}

const SOURCES: &str = "sources:
  helpdesk: { kind: native, token_env: SLK_LOG_NATIVE, workflow: fast }
  jira: { kind: jira, secret_env: SLK_LOG_JIRA, workflow: fast,
          priorities: { Highest: urgent, High: urgent, Medium: normal, Low: normal, Lowest: normal, default: normal } }
  tool:
    kind: generic
    token_env: SLK_LOG_GENERIC
    workflow: fast
    map: { ticket: /id, time: /at, type: /event, priority: /priority }
    types: { created: ticket.opened }
";

fn with_password(url: &str) -> String {
    // postgres://postgres@host/db -> postgres://postgres:PASS@host/db (the test server trusts
    // loopback, so the password is carried and never needed).
    url.replacen("postgres@", &format!("postgres:{DB_PASS}@"), 1)
}

fn hmac_hex(key: &str, body: &[u8]) -> String {
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).expect("key");
    m.update(body);
    hex::encode(m.finalize().into_bytes())
}

/// The part of an acknowledge link after `/v1/ack/`, and its signature half.
fn token_parts(link: &str) -> Vec<String> {
    let token = link.rsplit("/v1/ack/").next().unwrap_or("").to_string();
    let sig = token.rsplit('.').next().unwrap_or("").to_string();
    vec![token, sig]
}

/// Drive every door with right and wrong secrets; returns the acknowledge tokens seen.
fn exercise(app: &App, hooks: &Hooks, rec: &Recorder, smtp_port: u16) -> Vec<String> {
    let h = Http::new();
    let b = &app.base;
    let ev = opened("l1", "T-LOG", "urgent", &now_rfc3339(0));
    assert_eq!(h.post(&format!("{b}/v1/events"), Some(API), &ev).0, 202);
    assert_eq!(h.post(&format!("{b}/v1/events"), Some(READ), &ev).0, 403);
    assert_eq!(h.post(&format!("{b}/v1/events"), Some("wrong"), &ev).0, 401);
    assert_eq!(h.get(&format!("{b}/v1/tickets/T-LOG"), Some(READ)).0, 200);
    assert_eq!(h.get(&format!("{b}/metrics"), Some(METRICS)).0, 200);
    assert_eq!(h.get(&format!("{b}/metrics"), Some(READ)).0, 401);
    // Sources: a bearer token, a query token, a signature; and each one wrong.
    let native = opened("l2", "T-LOG-N", "normal", &now_rfc3339(0));
    let src = |name: &str| format!("{b}/v1/sources/{name}");
    assert_eq!(h.post(&src("helpdesk"), Some(NATIVE), &native).0, 202);
    assert_eq!(h.post(&src("helpdesk"), Some(API), &native).0, 401);
    let generic = serde_json::json!({"id": "G-1", "at": now_rfc3339(0), "event": "created", "priority": "normal"});
    assert_eq!(
        h.post(&format!("{}?token={GENERIC}", src("tool")), None, &generic)
            .0,
        202
    );
    assert_eq!(
        h.post(
            &format!("{}?token=wrong-{GENERIC}", src("tool")),
            None,
            &generic
        )
        .0,
        401
    );
    let jira = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/sources/jira/issue-created.json"),
    )
    .expect("fixture");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let c = ::reqwest::Client::new();
    for sig in [hmac_hex(JIRA, &jira), hmac_hex("not-the-secret", &jira)] {
        let r = rt.block_on(
            c.post(src("jira"))
                .header("content-type", "application/json")
                .header("x-hub-signature", format!("sha256={sig}"))
                .header("x-atlassian-webhook-identifier", "log-jira-1")
                .body(jira.clone())
                .send(),
        );
        assert!(r.is_ok());
    }
    // The breach reaches every channel (the e-mail fails: the SMTP server offers no AUTH
    // for the URL's password, so it is retried and its errors logged).
    let got = wait_for(LONG, || {
        let all = rec.all();
        let has = |p: &str| all.iter().any(|r| r.path.starts_with(p));
        (has("/slack") && has("/dingtalk") && has("/pd") && has("/zd")).then_some(())
    });
    assert!(got.is_some(), "{:#?}\n{}", rec.all(), app.stderr());
    let link = wait_for(LONG, || {
        hooks
            .all()
            .into_iter()
            .find_map(|x| x.body["ack_url"].as_str().map(str::to_string))
    })
    .expect("a webhook with an acknowledge link");
    // The link: a tampered one, the page, the acknowledgement.
    let mut tampered = link.clone();
    tampered.push('x');
    assert_eq!(h.get(&tampered, None).0, 403);
    assert_eq!(h.get(&link, None).0, 200);
    assert_eq!(h.call("POST", &link, None, None).0, 200);
    let _ = smtp_port;
    let mut tokens = token_parts(&link);
    tokens.extend(token_parts(&tampered));
    tokens
}

fn scan(log: &str, secrets: &[String]) {
    assert!(log.lines().count() > 200, "too little was logged: {log}");
    assert!(log.contains("TRACE"), "not a trace log");
    for s in secrets {
        if let Some(line) = log.lines().find(|l| l.contains(s.as_str())) {
            panic!("a secret ({s}) is in the log:\n{line}");
        }
    }
}

fn no_secret_in_a_trace_log(backend: Backend) {
    // Arrange
    let smtp = Smtp::start();
    let hooks = Hooks::start();
    let rec = Recorder::start();
    let wf = repeating_workflows(hooks.port);
    std::fs::write(wf.dir.path().join("routes.yaml"), routes(hooks.port, &rec)).expect("routes");
    std::fs::write(wf.dir.path().join("sources.yaml"), SOURCES).expect("sources");
    let db = TestDb::new(backend);
    let db_url = match backend {
        Backend::Postgres => with_password(&db.url),
        Backend::Sqlite => db.url.clone(),
    };
    let slack_url = rec.url(&format!("/slack/T0/B0/{SLACK_PATH}"));
    let ding_url = rec.url(&format!("/dingtalk?access_token={DING_TOKEN}"));
    let smtp_url = format!("smtp://slk:{SMTP_PASS}@127.0.0.1:{}", smtp.port);
    let app = Launch::serve(&db_url, wf.dir.path())
        .env("RUST_LOG", "trace")
        .env("SLAKEEPER_API_TOKEN", API)
        .env("SLAKEEPER_READ_TOKEN", READ)
        .env("SLAKEEPER_METRICS_TOKEN", METRICS)
        .env("SLAKEEPER_WEBHOOK_SECRET", SECRET)
        .env("SLAKEEPER_ACK_SECRET", ACK)
        .env("SLAKEEPER_SMTP_URL", &smtp_url)
        .env("SLK_LOG_NATIVE", NATIVE)
        .env("SLK_LOG_JIRA", JIRA)
        .env("SLK_LOG_GENERIC", GENERIC)
        .env("SLK_LOG_SLACK_URL", &slack_url)
        .env("SLK_LOG_DING_URL", &ding_url)
        .env("SLK_LOG_DING_SECRET", DING_SECRET)
        .env("SLK_LOG_PD_KEY", PD_KEY)
        .env("SLK_LOG_AUTH", AUTH)
        .start();
    // Act
    let tokens = exercise(&app, &hooks, &rec, smtp.port);
    let mut app = app;
    let _ = app.terminate(Duration::from_secs(40));
    let log = app.stderr();
    // Assert: the receivers got the secrets (they were used), the log has none of them.
    let all = rec.all();
    assert!(all.iter().any(|r| r.path.contains(SLACK_PATH)));
    assert!(
        all.iter()
            .any(|r| r.headers.get("authorization").map(String::as_str) == Some(AUTH))
    );
    assert!(all.iter().any(|r| r.body["routing_key"] == PD_KEY));
    let mut secrets: Vec<String> = [
        API,
        READ,
        METRICS,
        ACK,
        SECRET,
        SMTP_PASS,
        NATIVE,
        JIRA,
        GENERIC,
        SLACK_PATH,
        DING_TOKEN,
        DING_SECRET,
        PD_KEY,
        AUTH,
        &smtp_url,
        &slack_url,
        &ding_url,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    secrets.push("sk-auth-Dd4xx".into());
    if backend == Backend::Postgres {
        secrets.push(DB_PASS.into());
        secrets.push(db_url.clone());
    }
    secrets.extend(tokens);
    scan(&log, &secrets);

    // A fresh install's generated key, on the same database: its links, and the key itself.
    let app = Launch::serve(&db_url, wf.dir.path())
        .env("RUST_LOG", "trace")
        .env(
            "SLAKEEPER_SMTP_URL",
            format!("smtp://127.0.0.1:{}", smtp.port),
        )
        .env("SLK_LOG_NATIVE", NATIVE)
        .env("SLK_LOG_JIRA", JIRA)
        .env("SLK_LOG_GENERIC", GENERIC)
        .env("SLK_LOG_SLACK_URL", &slack_url)
        .env("SLK_LOG_DING_URL", &ding_url)
        .env("SLK_LOG_DING_SECRET", DING_SECRET)
        .env("SLK_LOG_PD_KEY", PD_KEY)
        .env("SLK_LOG_AUTH", AUTH)
        .start();
    let h = Http::new();
    let before = hooks.all().len();
    let (s, b) = h.post(
        &format!("{}/v1/events", app.base),
        None,
        &opened("k1", "T-KEY", "urgent", &now_rfc3339(0)),
    );
    assert_eq!(s, 202, "{}", json(&b));
    let link = wait_for(LONG, || {
        hooks.all()[before..]
            .iter()
            .find(|x| x.body["ticket"] == "T-KEY")
            .and_then(|x| x.body["ack_url"].as_str().map(str::to_string))
    })
    .unwrap_or_else(|| panic!("no link: {}", app.stderr()));
    assert_eq!(h.get(&link, None).0, 200);
    let mut app = app;
    let _ = app.terminate(Duration::from_secs(40));
    let key: Vec<(String, i64)> = db.query_pairs("SELECT value, created_at FROM sk_keys");
    assert_eq!(key.len(), 1, "{key:?}");
    let mut secrets = vec![key[0].0.clone()];
    secrets.extend(token_parts(&link));
    scan(&app.stderr(), &secrets);
}

crate::both_databases! {
    a_trace_log_holds_no_secret => no_secret_in_a_trace_log,
}

//! Safe by default (issue 18), through the real binary: every source authenticates, `serve`
//! refuses an open listener beyond loopback, scoped tokens, secrets from `NAME_FILE`, and
//! `validate` that runs in CI without the production secrets.

use std::path::Path;

use crate::common::launch::{Http, Launch, json};
use crate::common::{self, *};

const API: &str = "api-token-5f1e";
const READ: &str = "read-token-77ab";
const METRICS: &str = "metrics-token-c3d0";

/// The second-scale test workflows plus `sources` as sources.yaml.
fn with_sources(sources: &str) -> Workflows {
    let wf = workflows(9, false);
    std::fs::write(wf.dir.path().join("sources.yaml"), sources).expect("sources.yaml");
    wf
}

fn sqlite_file(db: &TestDb) -> std::path::PathBuf {
    Path::new(db.url.trim_start_matches("sqlite://")).to_path_buf()
}

// ------------------------------------------------------------------ row 1: sources

#[test]
fn a_source_of_any_kind_without_its_secret_is_refused_by_validate_and_serve() {
    for (kind, extra, missing) in [
        ("native", "", "missing `token_env`"),
        (
            "generic",
            ", map: { ticket: /id, time: /at, type: /event }",
            "missing `token_env`",
        ),
        ("freshdesk", "", "missing `token_env`"),
        ("zendesk", "", "missing `secret_env`"),
        ("jira", "", "missing `secret_env`"),
        ("zammad", "", "missing `secret_env`"),
        ("chatwoot", "", "missing `secret_env`"),
    ] {
        // Arrange
        let wf = with_sources(&format!(
            "sources:\n  helpdesk: {{ kind: {kind}, workflow: fast{extra} }}\n"
        ));
        let at = format!(
            "sources.yaml:2:{}: {missing}",
            "  helpdesk: { kind: ".len() + 1
        );
        // Act
        let v = Launch::new(&["validate"]).arg(wf.dir.path()).exit();
        let db = TestDb::new(Backend::Sqlite);
        let s = Launch::serve(&db.url, wf.dir.path()).exit();
        // Assert: the same located error from both, and serve changed nothing.
        assert_eq!(v.code, Some(1), "{kind}: {v:?}");
        assert!(
            v.stdout.contains(&at),
            "{kind}: want {at:?} in {}",
            v.stdout
        );
        assert_eq!(s.code, Some(1), "{kind}: {s:?}");
        assert!(
            s.stderr.contains(&at),
            "{kind}: want {at:?} in {}",
            s.stderr
        );
        assert!(
            !sqlite_file(&db).exists(),
            "{kind}: serve created the database"
        );
    }
}

fn native_source_needs_its_token(backend: Backend) {
    // Arrange: the API token is set; the native source has its own token.
    let wf = with_sources(
        "sources:\n  helpdesk: { kind: native, token_env: SLK_TEST_NATIVE_TOKEN, workflow: fast }\n",
    );
    let db = TestDb::new(backend);
    let app = Launch::serve(&db.url, wf.dir.path())
        .env("SLAKEEPER_API_TOKEN", API)
        .env("SLK_TEST_NATIVE_TOKEN", "native-token-9")
        .start();
    let http = Http::new();
    let url = format!("{}/v1/sources/helpdesk", app.base);
    let ev = opened("n1", "T-NATIVE", "normal", &now_rfc3339(0));
    // Act
    let none = http.post(&url, None, &ev);
    let api = http.post(&url, Some(API), &ev);
    let wrong = http.post(&url, Some("native-token-8"), &ev);
    let (s, _) = http.get(&format!("{}/v1/tickets/T-NATIVE", app.base), Some(API));
    let stored_before = s;
    let right = http.post(&url, Some("native-token-9"), &ev);
    let (s, ticket) = http.get(&format!("{}/v1/tickets/T-NATIVE", app.base), Some(API));
    // Assert: only the source's own token gets in; the API token is not it.
    for (what, (status, body)) in [("none", &none), ("api", &api), ("wrong", &wrong)] {
        assert_eq!(*status, 401, "{what}: {body}");
        assert_eq!(
            json(body)["error"]["code"],
            "bad_signature",
            "{what}: {body}"
        );
    }
    assert_eq!(stored_before, 404, "a refused delivery stored something");
    assert_eq!(right.0, 202, "{}", right.1);
    assert_eq!(json(&right.1)["accepted"], 1, "{}", right.1);
    assert_eq!(s, 200, "{ticket}");
    assert!(ticket.contains("helpdesk"), "{ticket}");
}

// ------------------------------------------------------------------ row 2: open listener

/// The log lines with `needle`, once start-up has been logged (the "serving" line comes
/// after every start-up warning; stderr is read by another thread).
fn warnings(app: &App, needle: &str) -> Vec<String> {
    let _ = wait_for(std::time::Duration::from_secs(10), || {
        app.stderr().contains("serving").then_some(())
    });
    app.stderr()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

#[test]
fn serve_refuses_a_non_loopback_listener_without_an_api_token() {
    // Arrange
    let wf = workflows(9, false);
    let db = TestDb::new(Backend::Sqlite);
    // Act
    let refused = Launch::serve_on(&db.url, wf.dir.path(), "0.0.0.0:0").exit();
    // Assert: refused before anything was created, naming the fixes.
    assert_eq!(refused.code, Some(1), "{refused:?}");
    for fix in [
        "refusing to listen on 0.0.0.0",
        "SLAKEEPER_API_TOKEN",
        "--allow-unauthenticated",
        "SLAKEEPER_ALLOW_UNAUTHENTICATED=1",
    ] {
        assert!(
            refused.stderr.contains(fix),
            "{fix} not in {}",
            refused.stderr
        );
    }
    assert!(
        !sqlite_file(&db).exists(),
        "the refused start created the database"
    );
}

#[test]
fn opening_on_purpose_is_warned_once_and_loopback_without_a_token_once() {
    let wf = workflows(9, false);
    let http = Http::new();
    // --allow-unauthenticated, and its environment variable.
    for how in ["flag", "env"] {
        let db = TestDb::new(Backend::Sqlite);
        let mut l = Launch::serve_on(&db.url, wf.dir.path(), "0.0.0.0:0");
        l = match how {
            "flag" => l.arg("--allow-unauthenticated"),
            _ => l.env("SLAKEEPER_ALLOW_UNAUTHENTICATED", "1"),
        };
        let app = l.start();
        let (s, _) = http.post(
            &format!("{}/v1/events", app.base),
            None,
            &opened("o1", "T-OPEN", "normal", &now_rfc3339(0)),
        );
        assert_eq!(s, 202, "{how}");
        let w = warnings(&app, "API token");
        assert_eq!(w.len(), 1, "{how}: {w:#?}");
        assert!(w[0].contains("--allow-unauthenticated"), "{how}: {w:#?}");
    }
    // Loopback without a token: exactly one warning line.
    let db = TestDb::new(Backend::Sqlite);
    let app = Launch::serve(&db.url, wf.dir.path()).start();
    let w = warnings(&app, "API token");
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(w[0].contains("WARN"), "{w:#?}");
    // With an API token on 0.0.0.0: no warning, and the token is needed.
    let db = TestDb::new(Backend::Sqlite);
    let app = Launch::serve_on(&db.url, wf.dir.path(), "0.0.0.0:0")
        .env("SLAKEEPER_API_TOKEN", API)
        .start();
    assert!(warnings(&app, "API token").is_empty(), "{}", app.stderr());
    let ev = opened("o2", "T-OPEN", "normal", &now_rfc3339(0));
    assert_eq!(
        http.post(&format!("{}/v1/events", app.base), None, &ev).0,
        401
    );
    assert_eq!(
        http.post(&format!("{}/v1/events", app.base), Some(API), &ev)
            .0,
        202
    );
}

// ------------------------------------------------------------------ row 3: scoped tokens

/// `slakeeper_http_requests_total{route=ROUTE,status=STATUS}` in an exposition.
fn requests(metrics: &str, route: &str, status: u16) -> f64 {
    let (route, status) = (format!("route=\"{route}\""), format!("status=\"{status}\""));
    metric_sum(metrics, "slakeeper_http_requests_total", &[&route, &status])
}

fn scoped_tokens(backend: Backend) {
    // Arrange
    let wf = workflows(9, false);
    let db = TestDb::new(backend);
    let app = Launch::serve(&db.url, wf.dir.path())
        .env("SLAKEEPER_API_TOKEN", API)
        .env("SLAKEEPER_READ_TOKEN", READ)
        .env("SLAKEEPER_METRICS_TOKEN", METRICS)
        .start();
    let h = Http::new();
    let (events, ticket, metrics) = (
        format!("{}/v1/events", app.base),
        format!("{}/v1/tickets/T-SCOPE", app.base),
        format!("{}/metrics", app.base),
    );
    let ev = |id: &str| opened(id, "T-SCOPE", "normal", &now_rfc3339(0));
    // Act + Assert: the API token writes and reads.
    assert_eq!(h.post(&events, Some(API), &ev("s1")).0, 202);
    assert_eq!(h.get(&ticket, Some(API)).0, 200);
    // The read token reads, and is refused any write with a JSON 403 that stores nothing.
    let (s, t) = h.get(&ticket, Some(READ));
    assert_eq!(s, 200, "{t}");
    assert_eq!(json(&t)["id"], "T-SCOPE", "{t}");
    let (s, body) = h.post(&events, Some(READ), &ev("s2"));
    assert_eq!(s, 403, "{body}");
    assert_eq!(json(&body)["error"]["code"], "forbidden", "{body}");
    assert!(
        !h.get(&ticket, Some(READ)).1.contains("\"s2\""),
        "a refused write was stored"
    );
    // Nothing, a wrong token or the metrics token: 401 on the API.
    let mut unauthorized_posts = 0.0;
    for t in [None, Some("not-a-token"), Some(METRICS)] {
        let (s, body) = h.post(&events, t, &ev("s3"));
        assert_eq!(s, 401, "{t:?}: {body}");
        assert_eq!(json(&body)["error"]["code"], "unauthorized", "{body}");
        unauthorized_posts += 1.0;
        assert_eq!(h.get(&ticket, t).0, 401, "{t:?}");
    }
    // /metrics needs the metrics token (or the API token); the probes need nothing.
    assert_eq!(h.get(&metrics, None).0, 401);
    assert_eq!(h.get(&metrics, Some(READ)).0, 401);
    assert_eq!(h.get(&metrics, Some(API)).0, 200);
    for path in ["/healthz", "/readyz"] {
        assert_eq!(h.get(&format!("{}{path}", app.base), None).0, 200, "{path}");
    }
    let (s, text) = h.get(&metrics, Some(METRICS));
    assert_eq!(s, 200);
    // Every refusal is counted by route and status.
    assert_eq!(
        requests(&text, "/v1/events", 401),
        unauthorized_posts,
        "{text}"
    );
    assert_eq!(requests(&text, "/v1/events", 403), 1.0, "{text}");
    assert!(requests(&text, "/metrics", 401) >= 2.0, "{text}");
    assert!(requests(&text, "/v1/events", 202) >= 1.0, "{text}");
}

#[test]
fn a_read_token_without_an_api_token_is_refused() {
    let wf = workflows(9, false);
    let db = TestDb::new(Backend::Sqlite);
    let out = Launch::serve(&db.url, wf.dir.path())
        .env("SLAKEEPER_READ_TOKEN", READ)
        .exit();
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("SLAKEEPER_READ_TOKEN is set without SLAKEEPER_API_TOKEN"),
        "{}",
        out.stderr
    );
}

// ------------------------------------------------------------------ row 4: NAME_FILE

fn secret_file(dir: &Path, name: &str, value: &str) -> String {
    let p = dir.join(name);
    // As `echo value > file` writes it: with a trailing newline.
    std::fs::write(&p, format!("{value}\n")).expect("secret file");
    p.display().to_string()
}

fn secrets_from_files(backend: Backend) {
    // Arrange: the database URL, the API token, the webhook secret, a source's token and a
    // channel's URL each in a file, the way Docker and Kubernetes mount secrets.
    let smtp = Smtp::start();
    let hooks = Hooks::start();
    let rec = common::launch::Recorder::start();
    let wf = workflows(hooks.port, false);
    std::fs::write(
        wf.dir.path().join("routes.yaml"),
        format!(
            "supervisor: {{ email: [supervisor@test.local] }}\nmanager: {{ email: [manager@test.local] }}\noncall:\n  webhook: [\"http://127.0.0.1:{}/hook\"]\n  http: [{{ url_env: SLK_TEST_HOOK_URL, body: '{{\"ticket\": {{{{ ticket.id|json }}}}}}' }}]\n",
            hooks.port
        ),
    )
    .expect("routes.yaml");
    std::fs::write(
        wf.dir.path().join("sources.yaml"),
        "sources:\n  helpdesk: { kind: native, token_env: SLK_TEST_NATIVE_TOKEN, workflow: fast }\n",
    )
    .expect("sources.yaml");
    let secrets = tempfile::tempdir().expect("tempdir");
    let s = secrets.path();
    let db = TestDb::new(backend);
    let mut l = Launch::new(&["serve", "--listen", "127.0.0.1:0", "--poll-ms", "100"])
        .arg("--workflows")
        .arg(wf.dir.path())
        .env(
            "SLAKEEPER_SMTP_URL",
            format!("smtp://127.0.0.1:{}", smtp.port),
        )
        .env("SLAKEEPER_DATABASE_URL_FILE", secret_file(s, "db", &db.url))
        .env("SLAKEEPER_API_TOKEN_FILE", secret_file(s, "api", API))
        .env(
            "SLAKEEPER_WEBHOOK_SECRET_FILE",
            secret_file(s, "webhook", SECRET),
        )
        .env(
            "SLK_TEST_NATIVE_TOKEN_FILE",
            secret_file(s, "native", "native-from-file"),
        )
        .env(
            "SLK_TEST_HOOK_URL_FILE",
            secret_file(s, "hook", &rec.url("/from-file?key=k1")),
        );
    l = l.env("SLAKEEPER_RETRY_BASE_MS", "300");
    let app = l.start();
    let h = Http::new();
    // Act
    let ev = opened("f1", "T-FILE", "urgent", &now_rfc3339(0));
    let (s1, b1) = h.post(&format!("{}/v1/events", app.base), Some(API), &ev);
    let ev2 = opened("f2", "T-FILE2", "normal", &now_rfc3339(0));
    let (s2, b2) = h.post(
        &format!("{}/v1/sources/helpdesk", app.base),
        Some("native-from-file"),
        &ev2,
    );
    let signed = wait_for(std::time::Duration::from_secs(30), || {
        hooks
            .all()
            .into_iter()
            .find(|x| x.body["template"] == "sla_breach")
    });
    let posted = wait_for(std::time::Duration::from_secs(30), || {
        rec.all().into_iter().find(|r| r.path == "/from-file")
    });
    // Assert: each secret was read from its file, without the newline.
    assert_eq!(s1, 202, "{b1}");
    assert_eq!(s2, 202, "{b2}");
    let signed = signed.unwrap_or_else(|| panic!("no webhook: {}", app.stderr()));
    assert!(signed.signature_ok, "webhook signed with another secret");
    let posted = posted.unwrap_or_else(|| panic!("no http delivery: {}", app.stderr()));
    assert_eq!(posted.query, "key=k1");
    assert_eq!(posted.body["ticket"], "T-FILE");
    let rows = db.query_pairs("SELECT id, COUNT(*) FROM sk_tickets GROUP BY id");
    assert_eq!(rows.len(), 2, "{rows:?}");
}

#[test]
fn a_secret_given_both_ways_is_an_error_naming_both() {
    let secrets = tempfile::tempdir().expect("tempdir");
    let file = secret_file(secrets.path(), "api", API);
    let db = TestDb::new(Backend::Sqlite);
    let wf = workflows(9, false);
    // A flag's variable.
    let out = Launch::serve(&db.url, wf.dir.path())
        .env("SLAKEEPER_API_TOKEN", API)
        .env("SLAKEEPER_API_TOKEN_FILE", &file)
        .exit();
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("SLAKEEPER_API_TOKEN and SLAKEEPER_API_TOKEN_FILE are both set"),
        "{}",
        out.stderr
    );
    // The flag itself beside the file.
    let out = Launch::serve(&db.url, wf.dir.path())
        .arg("--api-token")
        .arg(API)
        .env("SLAKEEPER_API_TOKEN_FILE", &file)
        .exit();
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("--api-token and SLAKEEPER_API_TOKEN_FILE are both given"),
        "{}",
        out.stderr
    );
    // A variable a workflow file names.
    let wf = with_sources(
        "sources:\n  helpdesk: { kind: native, token_env: SLK_TEST_NATIVE_TOKEN, workflow: fast }\n",
    );
    let out = Launch::serve(&db.url, wf.dir.path())
        .env("SLK_TEST_NATIVE_TOKEN", "x")
        .env("SLK_TEST_NATIVE_TOKEN_FILE", &file)
        .exit();
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("SLK_TEST_NATIVE_TOKEN and SLK_TEST_NATIVE_TOKEN_FILE are both set"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("sources.yaml:2:"), "{}", out.stderr);
    assert!(!sqlite_file(&db).exists());
}

// ------------------------------------------------------------------ row 7: validate in CI

/// Every vendor channel, each secret in a variable (ten of them), plus a source.
const ROUTES_WITH_SECRETS: &str = "supervisor: { email: [s@test.local] }
manager: { email: [m@test.local] }
oncall:
  email:     [oncall@test.local]
  slack:     [{ url_env: SLK_CI_SLACK_URL }]
  teams:     [{ url_env: SLK_CI_TEAMS_URL }]
  dingtalk:  [{ url_env: SLK_CI_DINGTALK_URL, secret_env: SLK_CI_DINGTALK_SECRET }]
  feishu:    [{ url_env: SLK_CI_FEISHU_URL, secret_env: SLK_CI_FEISHU_SECRET }]
  wecom:     [{ url_env: SLK_CI_WECOM_URL }]
  pagerduty: [{ routing_key_env: SLK_CI_PD_KEY }]
  http:      [{ url: \"https://example.com/x\", headers_env: { Authorization: SLK_CI_AUTH } }]
";

const CI_VARS: [&str; 10] = [
    "SLK_CI_SLACK_URL",
    "SLK_CI_TEAMS_URL",
    "SLK_CI_DINGTALK_URL",
    "SLK_CI_DINGTALK_SECRET",
    "SLK_CI_FEISHU_URL",
    "SLK_CI_FEISHU_SECRET",
    "SLK_CI_WECOM_URL",
    "SLK_CI_PD_KEY",
    "SLK_CI_AUTH",
    "SLK_CI_NATIVE_TOKEN",
];

fn ci_workflows() -> Workflows {
    let wf = with_sources(
        "sources:\n  helpdesk: { kind: native, token_env: SLK_CI_NATIVE_TOKEN, workflow: fast }\n",
    );
    std::fs::write(wf.dir.path().join("routes.yaml"), ROUTES_WITH_SECRETS).expect("routes");
    wf
}

#[test]
fn validate_warns_about_unset_variables_and_strict_env_makes_them_errors() {
    // Arrange
    let wf = ci_workflows();
    // Act
    let lax = Launch::new(&["validate"]).arg(wf.dir.path()).exit();
    let strict = Launch::new(&["validate", "--strict-env"])
        .arg(wf.dir.path())
        .exit();
    let mut with_all = Launch::new(&["validate", "--strict-env"]).arg(wf.dir.path());
    let secrets = tempfile::tempdir().expect("tempdir");
    for (i, v) in CI_VARS.iter().enumerate() {
        with_all = if i % 2 == 0 {
            with_all.env(v, "https://example.com/secret")
        } else {
            with_all.env(
                &format!("{v}_FILE"),
                secret_file(secrets.path(), v, "s3cr3t"),
            )
        };
    }
    let with_all = with_all.exit();
    // Assert: CI without secrets passes, listing each variable with its position.
    assert_eq!(lax.code, Some(0), "{lax:?}");
    assert!(lax.stdout.contains("workflows OK"), "{lax:?}");
    for v in CI_VARS {
        let line = lax.stderr.lines().find(|l| l.contains(v));
        let line = line.unwrap_or_else(|| panic!("{v} not listed: {}", lax.stderr));
        assert!(
            line.contains("yaml:") && line.contains("warning: environment variable"),
            "{line}"
        );
    }
    assert!(lax.stderr.contains("10 warning(s)"), "{}", lax.stderr);
    // --strict-env: the same ten are errors, exit 1.
    assert_eq!(strict.code, Some(1), "{strict:?}");
    assert_eq!(strict.stdout.lines().count(), 10, "{}", strict.stdout);
    for v in CI_VARS {
        assert!(strict.stdout.contains(v), "{v}: {}", strict.stdout);
    }
    // With every secret set (plainly or as NAME_FILE): nothing to say.
    assert_eq!(with_all.code, Some(0), "{with_all:?}");
    assert!(!with_all.stderr.contains("warning"), "{}", with_all.stderr);
}

#[test]
fn serve_refuses_unset_variables_naming_each() {
    let wf = ci_workflows();
    let db = TestDb::new(Backend::Sqlite);
    let out = Launch::serve(&db.url, wf.dir.path()).exit();
    assert_eq!(out.code, Some(1), "{out:?}");
    for v in CI_VARS {
        assert!(out.stderr.contains(v), "{v} not named: {}", out.stderr);
    }
    assert!(
        out.stderr.contains("routes.yaml:5:") && out.stderr.contains("sources.yaml:2:"),
        "{}",
        out.stderr
    );
    assert!(!sqlite_file(&db).exists());
}

#[test]
fn an_api_process_needs_only_the_sources_secrets_and_a_worker_only_the_channels() {
    let wf = ci_workflows();
    let db = TestDb::new(Backend::Sqlite);
    let api = Launch::serve(&db.url, wf.dir.path())
        .arg("--role")
        .arg("api")
        .exit();
    assert_eq!(api.code, Some(1));
    assert!(api.stderr.contains("SLK_CI_NATIVE_TOKEN"), "{}", api.stderr);
    assert!(!api.stderr.contains("SLK_CI_SLACK_URL"), "{}", api.stderr);
    let worker = Launch::new(&["serve", "--role", "worker", "--database", &db.url])
        .arg("--workflows")
        .arg(wf.dir.path())
        .exit();
    assert_eq!(worker.code, Some(1));
    assert!(
        worker.stderr.contains("SLK_CI_SLACK_URL"),
        "{}",
        worker.stderr
    );
    assert!(
        !worker.stderr.contains("SLK_CI_NATIVE_TOKEN"),
        "{}",
        worker.stderr
    );
}

// ------------------------------------------------------------------ Prometheus with a token

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn a_real_prometheus_scrapes_metrics_with_the_documented_authorization_block() {
    // Arrange: the engine with a metrics token; Prometheus with the README's scrape block
    // (token from a file) and, for contrast, the same target without it.
    let prometheus = setting("SLAKEEPER_TEST_PROMETHEUS").unwrap_or("/usr/bin/prometheus".into());
    let wf = workflows(9, false);
    let db = TestDb::new(Backend::Sqlite);
    let app = Launch::serve(&db.url, wf.dir.path())
        .env("SLAKEEPER_API_TOKEN", API)
        .env("SLAKEEPER_METRICS_TOKEN", METRICS)
        .start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let token_file = secret_file(tmp.path(), "metrics-token", METRICS);
    let target = app.base.trim_start_matches("http://").to_string();
    let cfg = format!(
        "global: {{ scrape_interval: 1s }}
scrape_configs:
  - job_name: slakeeper
    authorization: {{ credentials_file: {token_file} }}
    static_configs: [{{ targets: ['{target}'] }}]
  - job_name: no_token
    static_configs: [{{ targets: ['{target}'] }}]
"
    );
    std::fs::write(tmp.path().join("prometheus.yml"), cfg).expect("config");
    let port = free_port();
    let mut prom = std::process::Command::new(&prometheus)
        .arg(format!(
            "--config.file={}",
            tmp.path().join("prometheus.yml").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!(
            "--storage.tsdb.path={}",
            tmp.path().join("data").display()
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start prometheus");
    let h = Http::new();
    let query = |q: &str| {
        let url = format!(
            "http://127.0.0.1:{port}/api/v1/query?query={}",
            url_encode(q)
        );
        json(&h.get(&url, None).1)["data"]["result"][0]["value"][1]
            .as_str()
            .map(str::to_string)
    };
    // Act
    let up = wait_for(std::time::Duration::from_secs(30), || {
        match (
            query("up{job=\"slakeeper\"}"),
            query("up{job=\"no_token\"}"),
        ) {
            (Some(a), Some(b)) => Some((a, b)),
            _ => None,
        }
    });
    let refused = wait_for(std::time::Duration::from_secs(30), || {
        query("sum(slakeeper_http_requests_total{route=\"/metrics\",status=\"401\"})")
            .filter(|v| v != "0")
    });
    common::launch::stop(&mut prom);
    // Assert: with the block it scrapes; without, 401 (down), and that is counted.
    assert_eq!(
        up,
        Some(("1".to_string(), "0".to_string())),
        "{}",
        app.stderr()
    );
    assert!(refused.is_some(), "the refused scrapes were not counted");
}

#[test]
fn the_new_flags_and_their_variables_are_in_help() {
    let serve = Launch::new(&["serve", "--help"]).exit();
    assert_eq!(serve.code, Some(0));
    for s in [
        "SLAKEEPER_READ_TOKEN",
        "SLAKEEPER_METRICS_TOKEN",
        "SLAKEEPER_ALLOW_UNAUTHENTICATED",
        "--allow-unauthenticated",
        "SLAKEEPER_TLS_CERT",
        "SLAKEEPER_TLS_KEY",
        "SLAKEEPER_SMTP_URL_FILE",
        "SLAKEEPER_DATABASE_URL_FILE",
    ] {
        assert!(serve.stdout.contains(s), "{s} not in serve --help");
    }
    let validate = Launch::new(&["validate", "--help"]).exit();
    assert!(
        validate.stdout.contains("--strict-env"),
        "{}",
        validate.stdout
    );
}

crate::both_databases! {
    a_native_source_takes_events_only_with_its_own_token => native_source_needs_its_token,
    each_token_opens_only_its_own_doors => scoped_tokens,
    every_secret_may_come_from_a_file => secrets_from_files,
}

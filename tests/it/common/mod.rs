//! End-to-end harness: the real `slakeeper` binary as a process, a real SMTP server
//! (aiosmtpd writing a maildir), a loopback webhook receiver that checks signatures, and a
//! fresh database per test (SQLite file or a new PostgreSQL database).
//!
//! Waiting is by polling with a deadline: these tests prove that the queue fires in real
//! time, so they wait for real, but never longer than needed.

pub mod launch;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

pub const SECRET: &str = "e2e-webhook-secret";

pub fn env_file() -> BTreeMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".test-env/env");
    let mut m = BTreeMap::new();
    if let Ok(s) = std::fs::read_to_string(path) {
        for line in s.lines() {
            if let Some((k, v)) = line.split_once('=')
                && !k.starts_with('#')
            {
                m.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
    }
    m
}

pub fn setting(key: &str) -> Option<String> {
    std::env::var(key)
        .ok()
        .or_else(|| env_file().get(key).cloned())
}

/// Serve `app` on a free loopback port from a one-thread runtime of its own, so synchronous
/// tests can host a receiver; keep the runtime as long as the receiver should answer.
pub fn serve_loopback(app: axum::Router) -> (tokio::runtime::Runtime, u16) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (rt, port)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn now_rfc3339(offset_secs: i64) -> String {
    (Utc::now() + chrono::Duration::milliseconds(offset_secs * 1000))
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Poll `f` every 50 ms until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ------------------------------------------------------------------ SMTP (aiosmtpd)

#[derive(Debug, Clone)]
pub struct Mail {
    pub headers: BTreeMap<String, String>,
    pub body: String,
    pub received: std::time::SystemTime,
}

impl Mail {
    pub fn header(&self, k: &str) -> &str {
        self.headers
            .get(&k.to_ascii_lowercase())
            .map(String::as_str)
            .unwrap_or("")
    }
    pub fn to(&self) -> &str {
        self.header("x-rcptto")
    }
    pub fn subject(&self) -> &str {
        self.header("subject")
    }
    pub fn message_id(&self) -> &str {
        self.header("message-id")
    }
}

pub struct Smtp {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Smtp {
    pub fn start() -> Smtp {
        Smtp::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Smtp {
        let tmp = tempfile::tempdir().expect("tempdir");
        // aiosmtpd's Mailbox handler needs a directory that does not exist yet.
        let dir = tmp.path().join("maildir");
        let mut s = Smtp {
            child: None,
            port,
            dir,
            _tmp: tmp,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let python = setting("SLAKEEPER_TEST_AIOSMTPD").unwrap_or_else(|| {
            panic!("aiosmtpd is not set up: run `bash scripts/test-env.sh` (writes .test-env/env)")
        });
        let child = Command::new(&python)
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{}", self.port),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        self.child = Some(child);
        let port = self.port;
        wait_for(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        })
        .expect("aiosmtpd listening");
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every mail received so far (maildir `new/`).
    pub fn mails(&self) -> Vec<Mail> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(self.dir.join("new")) else {
            return out;
        };
        for e in rd.flatten() {
            let Ok(raw) = std::fs::read_to_string(e.path()) else {
                continue;
            };
            let received = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
            out.push(parse_mail(&raw, received));
        }
        out.sort_by_key(|m| m.received);
        out
    }

    pub fn wait_mails(&self, timeout: Duration, pred: impl Fn(&[Mail]) -> bool) -> Vec<Mail> {
        wait_for(timeout, || {
            let m = self.mails();
            if pred(&m) { Some(m) } else { None }
        })
        .unwrap_or_else(|| self.mails())
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        self.stop();
    }
}

fn parse_mail(raw: &str, received: std::time::SystemTime) -> Mail {
    let raw = raw.replace("\r\n", "\n");
    let (head, body) = raw.split_once("\n\n").unwrap_or((&raw, ""));
    let mut headers = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in head.lines() {
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(k) = &last
                && let Some(v) = headers.get_mut(k)
            {
                let v: &mut String = v;
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            headers.insert(k.clone(), v.trim().to_string());
            last = Some(k);
        }
    }
    Mail {
        headers,
        body: body.to_string(),
        received,
    }
}

// ------------------------------------------------------------------ webhook receiver

#[derive(Debug, Clone)]
pub struct Hook {
    pub body: Value,
    pub signature_ok: bool,
    pub idempotency_key: String,
    /// When the receiver finished handling it (after its delay, if any).
    pub received: std::time::SystemTime,
}

pub struct Hooks {
    pub port: u16,
    pub received: Arc<Mutex<Vec<Hook>>>,
    _rt: tokio::runtime::Runtime,
}

impl Hooks {
    pub fn start() -> Hooks {
        Hooks::start_slow(Duration::ZERO)
    }

    /// A receiver that takes `delay` to answer each request, and records a request only when
    /// it completes: one whose sender died mid-way (the connection closed) is not delivered.
    pub fn start_slow(delay: Duration) -> Hooks {
        let received: Arc<Mutex<Vec<Hook>>> = Arc::default();
        let r = received.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let r = r.clone();
                    async move {
                        tokio::time::sleep(delay).await;
                        let sig = headers
                            .get("x-slakeeper-signature")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let expected =
                            slakeeper::shell::channels::webhook::sign(SECRET.as_bytes(), &body);
                        let hook = Hook {
                            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                            signature_ok: !sig.is_empty() && sig == expected,
                            idempotency_key: headers
                                .get("idempotency-key")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_string(),
                            received: std::time::SystemTime::now(),
                        };
                        if let Ok(mut v) = r.lock() {
                            v.push(hook);
                        }
                        axum::http::StatusCode::OK
                    }
                },
            ),
        );
        let (rt, port) = serve_loopback(app);
        Hooks {
            port,
            received,
            _rt: rt,
        }
    }

    pub fn all(&self) -> Vec<Hook> {
        self.received.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

// ------------------------------------------------------------------ databases

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database a test owns: a SQLite file in a temporary directory, or a new PostgreSQL
/// database on the test server, dropped when the test ends (also when it panics).
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    _tmp: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

/// The test server's default database (`SLAKEEPER_TEST_PG_URL`), for CREATE / DROP DATABASE.
pub fn pg_admin_url() -> String {
    setting("SLAKEEPER_TEST_PG_URL")
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The same server URL naming another database (query string kept).
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[host_start..]
        .find('/')
        .map_or(base.len(), |i| i + host_start);
    match query {
        Some(q) => format!("{}/{db}?{q}", &base[..host_end]),
        None => format!("{}/{db}", &base[..host_end]),
    }
}

/// Run one statement on the server at `url`, on a thread of its own (tests call this from
/// inside their own runtime too, where another runtime cannot block).
fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let (url, sql) = (url.to_string(), sql.to_string());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            use sqlx::Connection;
            let connect = sqlx::PgConnection::connect(&url);
            let mut c = match tokio::time::timeout(Duration::from_secs(5), connect).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => anyhow::bail!(pg_unreachable(&url, &e.to_string())),
                Err(_) => anyhow::bail!(pg_unreachable(&url, "no answer within 5 s")),
            };
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
                .execute(&mut c)
                .await
                .map_err(|e| anyhow::anyhow!("{sql}: {e}"))?;
            let _ = c.close().await;
            Ok(())
        })
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Why a PostgreSQL test cannot run, and what to do about it.
pub fn pg_unreachable(url: &str, why: &str) -> String {
    format!(
        "PostgreSQL is unreachable at {} ({why}). Start it (`bash scripts/test-env.sh`, or \
         `pg_ctlcluster --skip-systemctl-redirect 15 main start`), point SLAKEEPER_TEST_PG_URL \
         at a server, or set SLAKEEPER_TEST_SKIP_PG=1 to skip the PostgreSQL tests",
        slakeeper::shell::redact(url)
    )
}

/// Skipping is the test command's job (a nextest filter, so the summary counts the tests as
/// skipped); a PostgreSQL test that runs anyway must not pass.
pub fn refuse_skipped_pg() {
    assert!(
        std::env::var("SLAKEEPER_TEST_SKIP_PG").map_or(true, |v| v != "1"),
        "SLAKEEPER_TEST_SKIP_PG=1, yet this PostgreSQL test ran: run `bash scripts/test.sh` \
         (it filters them out and reports them as skipped) or pass \
         `-E 'not test(/postgres/)'` to cargo nextest"
    );
}

impl TestDb {
    pub fn new(backend: Backend) -> TestDb {
        TestDb::copy_of(backend, None)
    }

    /// A fresh database; on PostgreSQL a copy of `template` when one is given.
    pub fn copy_of(backend: Backend, template: Option<&str>) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let tmp = tempfile::tempdir().expect("tempdir");
                let url = format!("sqlite://{}", tmp.path().join("sk.db").display());
                TestDb {
                    url,
                    backend,
                    _tmp: Some(tmp),
                    pg_name: None,
                }
            }
            Backend::Postgres => {
                refuse_skipped_pg();
                let name = format!("sk_e2e_{}", ulid::Ulid::new().to_string().to_lowercase());
                let admin = pg_admin_url();
                let create = match template {
                    Some(t) => format!("CREATE DATABASE {name} TEMPLATE {t}"),
                    None => format!("CREATE DATABASE {name}"),
                };
                psql(&admin, &create).unwrap_or_else(|e| panic!("{e}"));
                TestDb {
                    url: with_database(&admin, &name),
                    backend,
                    _tmp: None,
                    pg_name: Some(name),
                }
            }
        }
    }
}

impl TestDb {
    /// Rows of (text, integer) from the test's database, whichever backend (read-only
    /// inspection, e.g. stored events with their `received_at`).
    pub fn query_pairs(&self, sql: &str) -> Vec<(String, i64)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            match self.backend {
                Backend::Sqlite => {
                    let pool = sqlx::SqlitePool::connect(&self.url).await.expect("sqlite");
                    let rows = sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(sql))
                        .fetch_all(&pool)
                        .await
                        .expect("query");
                    pool.close().await;
                    rows
                }
                Backend::Postgres => {
                    let pool = sqlx::PgPool::connect(&self.url).await.expect("postgres");
                    let rows = sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(sql))
                        .fetch_all(&pool)
                        .await
                        .expect("query");
                    pool.close().await;
                    rows
                }
            }
        })
    }
}

/// Every behaviour written as `fn NAME(backend: Backend)` runs on both databases:
/// `both_databases! { test_name => behaviour, … }` generates `sqlite::test_name` and
/// `postgres::test_name` (as `conformance!` does for the engine suite). Once per module.
#[macro_export]
macro_rules! both_databases {
    ($($name:ident => $body:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    super::$body(super::Backend::Sqlite);
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    super::$body(super::Backend::Postgres);
                }
            )*
        }
    };
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(n) = &self.pg_name {
            // Best effort: a panic here, while a failed test unwinds, would abort the run.
            let _ = psql(
                &pg_admin_url(),
                &format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)"),
            );
        }
    }
}

// ------------------------------------------------------------------ the binary

pub struct Workflows {
    pub dir: tempfile::TempDir,
}

/// The second-scale test workflows, with routes pointing at `hook_port`.
pub fn workflows(hook_port: u16, with_review: bool) -> Workflows {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/e2e");
    for f in ["fast.yaml", "calendars.yaml"] {
        std::fs::copy(src.join(f), dir.path().join(f)).expect("copy fixture");
    }
    if with_review {
        std::fs::copy(src.join("review.yaml.opt"), dir.path().join("review.yaml")).expect("copy");
    }
    let routes = std::fs::read_to_string(src.join("routes.yaml.tmpl"))
        .expect("routes template")
        .replace("{HOOK_PORT}", &hook_port.to_string());
    std::fs::write(dir.path().join("routes.yaml"), routes).expect("routes");
    let tdir = dir.path().join("templates");
    std::fs::create_dir_all(&tdir).expect("templates dir");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows/templates");
    for e in std::fs::read_dir(shipped)
        .expect("shipped templates")
        .flatten()
    {
        let name = e.file_name().to_string_lossy().to_string();
        if name.ends_with(".en.txt") {
            std::fs::copy(e.path(), tdir.join(name)).expect("copy template");
        }
    }
    Workflows { dir }
}

pub struct App {
    pub child: Child,
    pub base: String,
    pub log: Arc<Mutex<Vec<String>>>,
}

pub struct AppOpts<'a> {
    pub db: &'a str,
    pub workflows: &'a Path,
    pub smtp_port: Option<u16>,
    pub role: &'a str,
    pub listen: Option<String>,
    pub extra_env: Vec<(&'a str, String)>,
}

impl<'a> AppOpts<'a> {
    pub fn new(db: &'a str, workflows: &'a Path, smtp_port: u16) -> AppOpts<'a> {
        AppOpts {
            db,
            workflows,
            smtp_port: Some(smtp_port),
            role: "all",
            listen: None,
            extra_env: Vec::new(),
        }
    }
}

impl App {
    pub fn start(o: AppOpts<'_>) -> App {
        let listen = o.listen.unwrap_or_else(|| "127.0.0.1:0".into());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_slakeeper"));
        cmd.args([
            "serve",
            "--database",
            o.db,
            "--listen",
            &listen,
            "--role",
            o.role,
            "--poll-ms",
            "100",
            "--orphan-after-secs",
            "3",
        ])
        .arg("--workflows")
        .arg(o.workflows)
        .env("SLAKEEPER_WEBHOOK_SECRET", SECRET)
        .env("SLAKEEPER_SMTP_FROM", "slakeeper@test.local")
        .env("SLAKEEPER_RETRY_BASE_MS", "300")
        .env("SLAKEEPER_RETRY_MAX_MS", "1500")
        .env("RUST_LOG", "info,sqlx=warn")
        .env_remove("SLAKEEPER_API_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        if let Some(p) = o.smtp_port {
            cmd.env("SLAKEEPER_SMTP_URL", format!("smtp://127.0.0.1:{p}"));
        } else {
            cmd.env_remove("SLAKEEPER_SMTP_URL");
        }
        for (k, v) in o.extra_env {
            cmd.env(k, v);
        }
        let app = App::spawn(&mut cmd);
        if o.role == "worker" {
            // Its queue workers start after the listener: give them a moment to register.
            std::thread::sleep(Duration::from_millis(300));
        }
        app
    }

    /// Start `cmd` (stdout and stderr piped) and wait for its `listening on` line, which
    /// every role prints first (a worker serves /healthz, /readyz and /metrics there).
    pub fn spawn(cmd: &mut Command) -> App {
        let mut child = cmd.spawn().expect("start slakeeper");
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        if let Some(err) = child.stderr.take() {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    if let Ok(mut l) = log.lock() {
                        l.push(line);
                    }
                }
            });
        }
        let out = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(out);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let base = line
            .trim()
            .strip_prefix("slakeeper listening on ")
            .unwrap_or_else(|| {
                let _ = child.kill();
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "unexpected first line {line:?}; stderr:\n{}",
                    log.lock().map(|l| l.join("\n")).unwrap_or_default()
                )
            })
            .to_string();
        std::thread::spawn(move || for _ in reader.lines() {});
        App { child, base, log }
    }

    pub fn post(&self, body: &Value) -> (u16, Value) {
        let client = reqwest::blocking_client();
        client.post(&format!("{}/v1/events", self.base), body)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let client = reqwest::blocking_client();
        client.get(&format!("{}{path}", self.base))
    }

    pub fn metrics(&self) -> String {
        reqwest::blocking_client().text(&format!("{}/metrics", self.base))
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for the exit status (None if it did not exit in time).
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        wait_for(timeout, || self.child.try_wait().ok().flatten())
    }

    pub fn stderr(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sum of every series of `name` whose labels include all of `labels` (`k="v"`), in a
/// Prometheus exposition (`/metrics`); 0 when there is none.
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| labels.iter().all(|kv| l.contains(kv)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A tiny blocking HTTP client over reqwest's async client (tests run on plain threads).
pub mod reqwest {
    use serde_json::Value;

    pub struct Client {
        rt: tokio::runtime::Runtime,
        c: ::reqwest::Client,
    }

    pub fn blocking_client() -> Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Client {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            c: ::reqwest::Client::new(),
        }
    }

    impl Client {
        pub fn post(&self, url: &str, body: &Value) -> (u16, Value) {
            self.post_raw(url, &body.to_string())
        }
        /// Any method, raw bytes and these headers: the answer's status and text (a
        /// request that cannot be sent fails the test).
        pub fn request(
            &self,
            method: &str,
            url: &str,
            body: Vec<u8>,
            headers: &[(&str, &str)],
        ) -> (u16, String) {
            let m = ::reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let mut r = self.c.request(m, url).body(body);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            self.rt.block_on(async {
                let resp = r.send().await.expect("request");
                let s = resp.status().as_u16();
                (s, resp.text().await.unwrap_or_default())
            })
        }
        pub fn post_raw(&self, url: &str, body: &str) -> (u16, Value) {
            self.rt.block_on(async {
                let r = self
                    .c
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .expect("POST");
                let s = r.status().as_u16();
                (s, r.json().await.unwrap_or(Value::Null))
            })
        }
        /// GET; status 0 when the server cannot be reached (still starting).
        pub fn get(&self, url: &str) -> (u16, Value) {
            self.rt.block_on(async {
                match self.c.get(url).send().await {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        (s, r.json().await.unwrap_or(Value::Null))
                    }
                    Err(_) => (0, Value::Null),
                }
            })
        }
        pub fn text(&self, url: &str) -> String {
            self.rt.block_on(async {
                self.c
                    .get(url)
                    .send()
                    .await
                    .expect("GET")
                    .text()
                    .await
                    .unwrap_or_default()
            })
        }
    }
}

/// The usual arrangement: an SMTP receiver, a webhook receiver, the test workflows, a fresh
/// database and one `serve` process. Fields drop in order, so the process stops before its
/// database is dropped.
pub struct Env {
    pub app: App,
    pub db: TestDb,
    pub wf: Workflows,
    /// Held, not read: the routes send webhooks here, so it answers while `app` runs.
    _hooks: Hooks,
    pub smtp: Smtp,
}

impl Env {
    pub fn start(backend: Backend) -> Env {
        let smtp = Smtp::start();
        let hooks = Hooks::start();
        let wf = workflows(hooks.port, false);
        let db = TestDb::new(backend);
        let app = App::start(AppOpts::new(&db.url, wf.dir.path(), smtp.port));
        Env {
            app,
            db,
            wf,
            _hooks: hooks,
            smtp,
        }
    }
}

pub fn opened(id: &str, ticket: &str, priority: &str, at: &str) -> Value {
    serde_json::json!({
        "id": id, "ticket": ticket, "type": "ticket.opened", "at": at,
        "priority": priority, "category": "complaint", "channel": "phone",
        "customer": {"name": "Li", "email": format!("{ticket}@customer.test")},
        "assignee": {"name": "Wang", "email": "assignee@test.local"}
    })
}

pub fn event(id: &str, ticket: &str, kind: &str, at: &str) -> Value {
    serde_json::json!({"id": id, "ticket": ticket, "type": kind, "at": at})
}

/// Mails whose subject contains `needle` and whose recipient contains `to`.
pub fn matching<'m>(mails: &'m [Mail], to: &str, needle: &str) -> Vec<&'m Mail> {
    mails
        .iter()
        .filter(|m| m.to().contains(to) && m.subject().contains(needle))
        .collect()
}

pub fn parse_time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .expect("rfc3339")
}

// ------------------------------------------------------------------ generated histories

/// A small deterministic generator (no dependency): SplitMix64.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    pub fn mins(&mut self, lo: i64, hi: i64) -> chrono::Duration {
        chrono::Duration::minutes(lo + self.below((hi - lo) as u64 + 1) as i64)
    }
}

/// An instant as RFC 3339 to the second, UTC.
/// `slakeeper ARGS` run to its end from the repository root, without the variables that
/// would point it at another workflow directory or database: what it printed.
pub fn run_slakeeper(args: &[&str]) -> launch::Exited {
    let out = Command::new(env!("CARGO_BIN_EXE_slakeeper"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .env_remove("SLAKEEPER_WORKFLOWS")
        .env_remove("SLAKEEPER_DATABASE_URL")
        .output()
        .expect("run slakeeper");
    launch::Exited {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Clock runs as the tests compare the runtime with `simulate`: (clock, outcome, due, done),
/// the times as epoch seconds.
pub type Clocks = std::collections::BTreeSet<(String, String, Option<i64>, Option<i64>)>;

/// A time as the API (RFC 3339) or `simulate` (`%Y-%m-%d %H:%M:%S %:z`) prints it, as epoch
/// seconds.
pub fn parse_local(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S %:z"))
        .ok()
        .map(|d| d.timestamp())
}

/// One clock run of a `GET /v1/tickets/{id}` answer or of a `simulate --format json` line.
pub fn clock_run(c: &Value) -> (String, String, Option<i64>, Option<i64>) {
    (
        c["clock"].as_str().unwrap_or_default().to_string(),
        c["outcome"].as_str().unwrap_or_default().to_string(),
        c["due"].as_str().and_then(parse_local),
        c["done"].as_str().and_then(parse_local),
    )
}

/// Copy a directory tree (the shipped workflows, to change a copy in a test).
pub fn copy_dir(from: &Path, to: &Path) {
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

/// One ticket's events as the random-history tests build them: each pushed event's id is
/// `{ticket}-{type}-{n}`, `n` the number of events before it.
pub struct History {
    ticket: String,
    pub events: Vec<Value>,
}

impl History {
    pub fn new(opened: Value) -> History {
        let ticket = opened["ticket"].as_str().unwrap_or_default().to_string();
        History {
            ticket,
            events: vec![opened],
        }
    }

    /// An event of `kind` at `at`, with `extra`'s fields.
    pub fn push(&mut self, kind: &str, at: DateTime<Utc>, extra: Value) {
        let t = &self.ticket;
        let mut e = serde_json::json!({"id": format!("{t}-{}-{}", kind, self.events.len()),
                                       "ticket": t, "type": kind, "at": rfc(at)});
        if let (Some(o), Some(x)) = (e.as_object_mut(), extra.as_object()) {
            o.extend(x.clone());
        }
        self.events.push(e);
    }
}

pub fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

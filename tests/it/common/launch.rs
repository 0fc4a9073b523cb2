//! Starting `slakeeper` with exactly the environment a test gives it (nothing inherited: no
//! stray SLAKEEPER_* variable or secret changes what a test sees), HTTP calls with a bearer
//! token (over HTTPS too), and e-mail bodies as their text (lettre sends long lines as
//! quoted-printable and non-ASCII as base64).

use std::ffi::OsStr;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use super::{App, Mail, serve_loopback, wait_for};

pub struct Launch {
    cmd: Command,
}

/// What a process that was expected to stop printed.
#[derive(Debug)]
pub struct Exited {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Launch {
    /// `slakeeper ARGS` with an empty environment but `RUST_LOG`.
    pub fn new(args: &[&str]) -> Launch {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_slakeeper"));
        cmd.args(args)
            .env_clear()
            .env("RUST_LOG", "info,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Launch { cmd }
    }

    /// `serve` on `listen` with the second-scale test settings.
    pub fn serve_on(db: &str, workflows: &Path, listen: &str) -> Launch {
        let mut l = Launch::new(&[
            "serve",
            "--database",
            db,
            "--listen",
            listen,
            "--poll-ms",
            "100",
            "--orphan-after-secs",
            "3",
        ]);
        l.cmd
            .arg("--workflows")
            .arg(workflows)
            .env("SLAKEEPER_SMTP_FROM", "slakeeper@test.local")
            .env("SLAKEEPER_RETRY_BASE_MS", "300")
            .env("SLAKEEPER_RETRY_MAX_MS", "1500");
        l
    }

    /// `serve` on a free loopback port.
    pub fn serve(db: &str, workflows: &Path) -> Launch {
        Launch::serve_on(db, workflows, "127.0.0.1:0")
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Launch {
        self.cmd.arg(a);
        self
    }

    pub fn env(mut self, k: &str, v: impl AsRef<OsStr>) -> Launch {
        self.cmd.env(k, v);
        self
    }

    /// Start a process that serves HTTP: wait for its `listening on` line.
    pub fn start(mut self) -> App {
        App::spawn(&mut self.cmd)
    }

    /// Run a process expected to stop by itself (a refusal, `validate`); killed after 60 s.
    pub fn exit(mut self) -> Exited {
        let mut child = self.cmd.spawn().expect("start slakeeper");
        let out = drain(child.stdout.take());
        let err = drain(child.stderr.take());
        let status = wait_for(Duration::from_secs(60), || child.try_wait().ok().flatten());
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        Exited {
            code: status.and_then(|s| s.code()),
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        }
    }
}

fn drain<R: Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut r) = r {
            let _ = r.read_to_string(&mut s);
        }
        s
    })
}

/// Kill a child and wait for it (for processes started outside [`App`]).
pub fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

// ------------------------------------------------------------------ HTTP with tokens

pub struct Http {
    rt: tokio::runtime::Runtime,
    c: reqwest::Client,
}

impl Http {
    pub fn new() -> Http {
        Http::build(reqwest::Client::builder())
    }

    /// A client that trusts only `ca_pem` (a test's own certificate).
    pub fn trusting(ca_pem: &[u8]) -> Http {
        let cert = reqwest::Certificate::from_pem(ca_pem).expect("PEM certificate");
        Http::build(reqwest::Client::builder().tls_certs_only([cert]))
    }

    fn build(b: reqwest::ClientBuilder) -> Http {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Http {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            c: b.timeout(Duration::from_secs(20)).build().expect("client"),
        }
    }

    /// One request; `(0, error text)` when it could not be made at all.
    pub fn call(
        &self,
        method: &str,
        url: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, String) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut r = self.c.request(m, url);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        self.rt.block_on(async {
            match r.send().await {
                Ok(res) => {
                    let s = res.status().as_u16();
                    (s, res.text().await.unwrap_or_default())
                }
                Err(e) => (0, format!("{e:?}")),
            }
        })
    }

    pub fn get(&self, url: &str, token: Option<&str>) -> (u16, String) {
        self.call("GET", url, token, None)
    }

    pub fn post(&self, url: &str, token: Option<&str>, body: &Value) -> (u16, String) {
        self.call("POST", url, token, Some(body))
    }
}

impl Default for Http {
    fn default() -> Self {
        Http::new()
    }
}

/// The JSON of an answer body (Null when it is not JSON).
pub fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or(Value::Null)
}

// ------------------------------------------------------------------ mail text

/// A mail's body as text: quoted-printable and base64 transfer encodings undone.
pub fn mail_text(m: &Mail) -> String {
    let enc = m.header("content-transfer-encoding").to_ascii_lowercase();
    if enc.contains("base64") {
        let joined: String = m.body.split_whitespace().collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(joined)
            .unwrap_or_default();
        return String::from_utf8_lossy(&bytes).into_owned();
    }
    if enc.contains("quoted-printable") {
        return quoted_printable(&m.body);
    }
    m.body.clone()
}

fn quoted_printable(s: &str) -> String {
    let b = s.replace("=\r\n", "").replace("=\n", "");
    let b = b.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'='
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&String::from_utf8_lossy(&b[i + 1..i + 3]), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first acknowledge link (`…/v1/ack/TOKEN`) in a text.
pub fn ack_link(text: &str) -> Option<String> {
    text.split_whitespace()
        .find(|w| w.contains("/v1/ack/"))
        .map(|w| w.trim_end_matches(['.', ',', ')', '>']).to_string())
}

/// The test workflows with the breach rule repeating every second, up to 5 times, so an
/// acknowledgement has repeats to stop.
pub fn repeating_workflows(hook_port: u16) -> super::Workflows {
    let wf = super::workflows(hook_port, false);
    let p = wf.dir.path().join("fast.yaml");
    let src = std::fs::read_to_string(&p).expect("fast.yaml").replace(
        "notify: [supervisor, oncall], template: sla_breach }",
        "notify: [supervisor, oncall], template: sla_breach, repeat: 1s, times: 5 }",
    );
    std::fs::write(&p, src).expect("fast.yaml");
    wf
}

// ------------------------------------------------------------------ a vendor-like receiver

/// One request a [`Recorder`] got.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub query: String,
    pub headers: std::collections::BTreeMap<String, String>,
    pub body: Value,
}

/// A loopback HTTP server that records every request and answers each the way its vendor
/// does when all is well: `/slack*` `ok`, `/dingtalk*` and `/wecom*` `{"errcode":0}`,
/// `/feishu*` `{"code":0}`, `/pd*` 202 `{"status":"success"}`, anything else 200 `{}`.
pub struct Recorder {
    pub port: u16,
    got: Arc<Mutex<Vec<Recorded>>>,
    _rt: tokio::runtime::Runtime,
}

impl Recorder {
    pub fn start() -> Recorder {
        let got: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let g = got.clone();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let g = g.clone();
                async move {
                    let raw = String::from_utf8_lossy(&body).into_owned();
                    let path = uri.path().to_string();
                    let rec = Recorded {
                        path: path.clone(),
                        query: uri.query().unwrap_or("").to_string(),
                        headers: headers
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                            .collect(),
                        body: serde_json::from_str(&raw).unwrap_or(Value::Null),
                    };
                    if let Ok(mut v) = g.lock() {
                        v.push(rec);
                    }
                    let (status, answer) = if path.starts_with("/slack") {
                        (200, "ok")
                    } else if path.starts_with("/dingtalk") || path.starts_with("/wecom") {
                        (200, r#"{"errcode":0,"errmsg":"ok"}"#)
                    } else if path.starts_with("/feishu") {
                        (200, r#"{"code":0,"msg":"success"}"#)
                    } else if path.starts_with("/pd") {
                        (202, r#"{"status":"success","message":"Event processed"}"#)
                    } else {
                        (200, "{}")
                    };
                    (
                        axum::http::StatusCode::from_u16(status)
                            .unwrap_or(axum::http::StatusCode::OK),
                        answer,
                    )
                }
            },
        );
        let (rt, port) = serve_loopback(app);
        Recorder { port, got, _rt: rt }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://127.0.0.1:{}{path_and_query}", self.port)
    }

    pub fn all(&self) -> Vec<Recorded> {
        self.got.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

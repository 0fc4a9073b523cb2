//! What ships beside the binary, checked with the real tools (issue 21, "Shipping"):
//! the Dockerfile built on a base image made locally (debootstrap, no ca-certificates, never
//! pulled) and run against the local PostgreSQL; `compose.yaml` through `docker-compose
//! config` and its Prometheus configuration through `promtool check config`; the systemd unit
//! through `systemd-analyze verify` and `security`.
//! Set-up: `bash scripts/test-env.sh` (it calls scripts/test-env-image.sh).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);
const TOKEN: &str = "image-test-api-token";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tool(key: &str) -> String {
    setting(key).unwrap_or_else(|| {
        panic!("{key} is not set up: run `bash scripts/test-env.sh` (writes .test-env/env)")
    })
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Readable by the container's user (uid 10001): tempdirs are 0700.
fn open_up(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = if p.is_dir() { 0o755 } else { 0o644 };
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    if p.is_dir() {
        for e in std::fs::read_dir(p).expect("read dir").flatten() {
            open_up(&e.path());
        }
    }
}

/// The build context: the files the Dockerfile copies, as the repository has them, and this
/// build's binary (debug info stripped: 300 MB copied through vfs layers is slow) where
/// `--target prebuilt` takes it.
fn context() -> tempfile::TempDir {
    let ctx = tempfile::tempdir().expect("tempdir");
    for f in ["Dockerfile", ".dockerignore"] {
        std::fs::copy(root().join(f), ctx.path().join(f)).expect("copy");
    }
    copy_dir(&root().join("workflows"), &ctx.path().join("workflows"));
    copy_dir(
        &root().join("deploy/docker"),
        &ctx.path().join("deploy/docker"),
    );
    let bin = ctx.path().join("target/release/slakeeper");
    std::fs::create_dir_all(bin.parent().expect("parent")).expect("mkdir");
    let stripped = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(env!("CARGO_BIN_EXE_slakeeper"))
        .arg(&bin)
        .status()
        .is_ok_and(|s| s.success());
    if !stripped {
        std::fs::copy(env!("CARGO_BIN_EXE_slakeeper"), &bin).expect("copy binary");
    }
    ctx
}

/// An image and the containers made from it, removed at the end whatever happened.
struct Image {
    docker: String,
    tag: String,
    containers: Vec<String>,
}

impl Image {
    fn docker(&self) -> Command {
        Command::new(&self.docker)
    }

    fn inspect(&self, what: &str, format: &str) -> String {
        let out = run(self.docker().args(["inspect", "--format", format, what]));
        text(&out.stdout).trim().to_string()
    }

    fn logs(&self, name: &str) -> String {
        let out = run(self.docker().args(["logs", name]));
        format!("{}{}", text(&out.stdout), text(&out.stderr))
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = Command::new(&self.docker)
                .args(["rm", "--force", "--volumes", c])
                .output();
        }
        // --no-prune keeps the untagged layers below it (user, workflows, health check): the
        // next build takes them from the cache and only copies the binary.
        let _ = Command::new(&self.docker)
            .args(["rmi", "--force", "--no-prune", &self.tag])
            .output();
    }
}

fn http(method: &str, url: &str, token: Option<&str>, body: Option<&Value>) -> (u16, Value) {
    let (s, text) = launch::Http::new().call(method, url, token, body);
    (s, launch::json(&text))
}

/// Issue 21 rows 9 and 11: the project's image, built from the Dockerfile on a minimal base
/// without ca-certificates, runs as a non-root user against PostgreSQL, turns healthy,
/// takes an event, shows it back, and delivers by SMTP and an http:// webhook.
#[test]
fn image_on_a_minimal_base_serves_postgres_and_turns_healthy() {
    // Arrange
    let docker = tool("SLAKEEPER_TEST_DOCKER");
    let base = tool("SLAKEEPER_TEST_BASE_IMAGE");
    let ctx = context();
    let mut image = Image {
        docker,
        tag: format!(
            "slakeeper-test:{}",
            ulid::Ulid::new().to_string().to_lowercase()
        ),
        containers: Vec::new(),
    };
    let t = Instant::now();
    ok(image
        .docker()
        .args([
            "build",
            "--quiet",
            "--target",
            "prebuilt",
            "--build-arg",
            &format!("BASE={base}"),
            "--tag",
            &image.tag,
        ])
        .arg(ctx.path()));
    let built = t.elapsed();
    // The image as the Dockerfile made it: its user, health check and defaults.
    assert_eq!(
        image.inspect(&image.tag, "{{.Config.User}}"),
        "slakeeper:slakeeper"
    );
    let check = image.inspect(&image.tag, "{{json .Config.Healthcheck.Test}}");
    assert!(check.contains("slakeeper-healthcheck"), "{check}");
    let env = image.inspect(&image.tag, "{{json .Config.Env}}");
    assert!(env.contains("SLAKEEPER_LISTEN=0.0.0.0:8080"), "{env}");
    let smtp = Smtp::start();
    let hooks = Hooks::start();
    let wf = workflows(hooks.port, false);
    open_up(wf.dir.path());
    let db = TestDb::new(Backend::Postgres);
    let port = free_port();
    let name = format!("slakeeper-test-{port}");
    image.containers.push(name.clone());
    // Act: the image's defaults (listen on 0.0.0.0, hence the token), the test's
    // second-scale workflows instead of the shipped ones; health checked every second instead
    // of every 15 s. One container for everything (each one is a full copy of the image on
    // the vfs storage driver).
    let t = Instant::now();
    ok(image.docker().args([
        "run",
        "--detach",
        "--name",
        &name,
        "--network",
        "host",
        "--health-interval",
        "1s",
        "--volume",
        &format!("{}:/srv/workflows:ro", wf.dir.path().display()),
        "--env",
        "SLAKEEPER_WORKFLOWS=/srv/workflows",
        "--env",
        &format!("SLAKEEPER_DATABASE_URL={}", db.url),
        "--env",
        &format!("SLAKEEPER_LISTEN=0.0.0.0:{port}"),
        "--env",
        &format!("SLAKEEPER_API_TOKEN={TOKEN}"),
        "--env",
        &format!("SLAKEEPER_SMTP_URL=smtp://127.0.0.1:{}", smtp.port),
        "--env",
        "SLAKEEPER_SMTP_FROM=slakeeper@test.local",
        "--env",
        &format!("SLAKEEPER_WEBHOOK_SECRET={SECRET}"),
        &image.tag,
    ]));
    let health = wait_for(LONG, || {
        let h = image.inspect(&name, "{{.State.Health.Status}}");
        (h == "healthy" || h == "unhealthy" || h.is_empty()).then_some(h)
    });
    let healthy_after = t.elapsed();
    assert_eq!(
        health.as_deref(),
        Some("healthy"),
        "state {}\n{}",
        image.inspect(&name, "{{json .State}}"),
        image.logs(&name)
    );
    // Its user, and the base it runs on has no CA certificates (what row 11 is about).
    let exec = |args: &[&str]| run(image.docker().arg("exec").arg(&name).args(args));
    let uid = exec(&["/usr/bin/id", "-u"]);
    assert_eq!(
        text(&uid.stdout).trim(),
        "10001",
        "not the image's own user"
    );
    let certs = exec(&["/bin/ls", "/etc/ssl/certs/ca-certificates.crt"]);
    assert!(!certs.status.success(), "the base has ca-certificates");
    // The shipped workflows are in the image and valid.
    let valid = exec(&["slakeeper", "validate", "/etc/slakeeper/workflows"]);
    assert!(
        // Its calendar warnings (cn-office's 2027 data, from November 2026 on) come first.
        text(&valid.stdout)
            .lines()
            .any(|l| l.starts_with("/etc/slakeeper/workflows: 5 workflows OK")),
        "{}{}",
        text(&valid.stdout),
        text(&valid.stderr)
    );
    let base_url = format!("http://127.0.0.1:{port}");
    let ev = opened("img-1", "T-IMAGE", "urgent", &now_rfc3339(0));
    let (s, _) = http("POST", &format!("{base_url}/v1/events"), None, Some(&ev));
    assert_eq!(s, 401, "the API token is required");
    let (s, body) = http(
        "POST",
        &format!("{base_url}/v1/events"),
        Some(TOKEN),
        Some(&ev),
    );
    assert_eq!(s, 202, "{body}\n{}", image.logs(&name));
    let (s, ticket) = http(
        "GET",
        &format!("{base_url}/v1/tickets/T-IMAGE"),
        Some(TOKEN),
        None,
    );
    // Assert: the ticket reads back from PostgreSQL, and the breach (3 s) goes out by mail
    // and by the http:// webhook from a base with no CA certificate.
    assert_eq!(s, 200, "{ticket}");
    assert_eq!(ticket["id"], json!("T-IMAGE"), "{ticket:#}");
    assert_eq!(ticket["workflow"], json!("fast"), "{ticket:#}");
    let mails = smtp.wait_mails(LONG, |m| {
        !matching(m, "oncall@test.local", "[SLA breach] T-IMAGE").is_empty()
    });
    assert_eq!(
        matching(&mails, "oncall@test.local", "[SLA breach] T-IMAGE").len(),
        1,
        "{mails:#?}\n{}",
        image.logs(&name)
    );
    let hook = wait_for(LONG, || {
        let h = hooks.all();
        (!h.is_empty()).then_some(h)
    });
    assert!(
        hook.is_some_and(|h| h.iter().all(|x| x.signature_ok)),
        "{}",
        image.logs(&name)
    );
    let logs = image.logs(&name);
    assert!(logs.contains("bundled Mozilla roots"), "{logs}");
    // The health check fails when /readyz cannot be reached (it is not always 0).
    let bad = run(image.docker().args([
        "exec",
        "--env",
        "SLAKEEPER_LISTEN=127.0.0.1:1",
        &name,
        "/usr/local/bin/slakeeper-healthcheck",
    ]));
    assert!(!bad.status.success(), "{}", text(&bad.stdout));
    eprintln!("image built in {built:?}, healthy {healthy_after:?} after docker run");
}

// ------------------------------------------------------------------ compose

/// compose.yaml is valid for docker-compose, names the five services with the roles the
/// docs describe, and every file it mounts from the repository exists.
#[test]
fn image_compose_file_is_valid_and_mounts_files_that_exist() {
    // Arrange: docker-compose resolves paths against the file's directory; secrets are
    // created by the operator (docs), so a scratch copy of the repository's layout has them.
    let compose = tool("SLAKEEPER_TEST_COMPOSE");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(root().join("compose.yaml"), dir.path().join("compose.yaml")).expect("copy");
    for d in ["deploy", "grafana"] {
        copy_dir(&root().join(d), &dir.path().join(d));
    }
    // Act
    let out = run(Command::new(&compose).current_dir(dir.path()).args([
        "--file",
        "compose.yaml",
        "config",
    ]));
    // Assert
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cfg: Value =
        serde_saphyr::from_str(&text(&out.stdout)).expect("docker-compose config prints YAML");
    let services = cfg["services"].as_object().expect("services");
    let mut names: Vec<&str> = services.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["api", "grafana", "postgres", "prometheus", "worker"]
    );
    assert_eq!(
        services["api"]["command"],
        json!(["serve", "--role", "api"])
    );
    assert_eq!(
        services["worker"]["command"],
        json!(["serve", "--role", "worker"])
    );
    // A worker answers /readyz too: the image's health check stays on.
    assert_ne!(
        services["worker"]["healthcheck"]["disable"],
        json!(true),
        "{}",
        services["worker"]
    );
    for s in ["api", "worker"] {
        let env = &services[s]["environment"];
        assert!(env["SLAKEEPER_API_TOKEN_FILE"].is_string(), "{s}: {env}");
        assert!(env["SLAKEEPER_DATABASE_URL_FILE"].is_string(), "{s}: {env}");
    }
    let mut mounts = 0;
    for (name, s) in services {
        for v in s["volumes"].as_array().into_iter().flatten() {
            let src = v
                .as_str()
                .map(|v| v.split(':').next().unwrap_or_default().to_string())
                .or_else(|| v["source"].as_str().map(str::to_string))
                .unwrap_or_default();
            if src.starts_with('/') {
                assert!(
                    Path::new(&src).exists(),
                    "{name} mounts {src}, which is missing"
                );
                mounts += 1;
            }
        }
    }
    assert_eq!(
        mounts, 5,
        "prometheus.yml, rules, and three grafana directories"
    );
    // A broken file is refused: the check can fail.
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  api:\n    image: x\n    ports: 8080\n",
    )
    .expect("write");
    let bad = run(Command::new(&compose).current_dir(dir.path()).args([
        "--file",
        "compose.yaml",
        "config",
        "--quiet",
    ]));
    assert!(!bad.status.success(), "{}", text(&bad.stdout));
}

/// The Prometheus configuration compose mounts loads the shipped rules (as mounted there)
/// and passes promtool.
#[test]
fn image_compose_prometheus_config_passes_promtool_with_the_shipped_rules() {
    let promtool = tool("SLAKEEPER_TEST_PROMTOOL");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        root().join("deploy/compose/prometheus.yml"),
        dir.path().join("prometheus.yml"),
    )
    .expect("copy");
    // As compose mounts them: grafana/alerts at rules/ beside prometheus.yml, and the metrics
    // token as a secret file (promtool checks that credentials_file exists).
    copy_dir(&root().join("grafana/alerts"), &dir.path().join("rules"));
    let cfg = std::fs::read_to_string(dir.path().join("prometheus.yml")).expect("read");
    // One job scrapes the api and every worker (counters only workers increment).
    let parsed: Value = serde_saphyr::from_str(&cfg).expect("prometheus.yml is YAML");
    let job = &parsed["scrape_configs"][0];
    assert_eq!(job["job_name"], "slakeeper", "{job}");
    assert_eq!(
        job["static_configs"][0]["targets"],
        json!(["api:8080"]),
        "{job}"
    );
    assert_eq!(
        job["dns_sd_configs"][0]["names"],
        json!(["worker"]),
        "{job}"
    );
    assert_eq!(job["dns_sd_configs"][0]["port"], json!(8080), "{job}");
    let secret = dir.path().join("metrics_token");
    std::fs::write(&secret, "t").expect("write");
    std::fs::write(
        dir.path().join("prometheus.yml"),
        cfg.replace("/run/secrets/metrics_token", &secret.display().to_string()),
    )
    .expect("write");
    let out = ok(Command::new(&promtool).current_dir(dir.path()).args([
        "check",
        "config",
        "prometheus.yml",
    ]));
    assert!(
        out.contains("SUCCESS") && out.contains("rules found"),
        "{out}"
    );
}

// ------------------------------------------------------------------ systemd

/// The unit passes `systemd-analyze verify` without a single warning (verify exits 0 on
/// unknown keys and bad values, so its output is what tells), and its exposure level stays
/// at 2.0 ("OK") or below.
#[test]
fn image_systemd_unit_verifies_cleanly_and_is_hardened() {
    // Arrange: verify checks that ExecStart exists; point it at this build's binary.
    let analyze = tool("SLAKEEPER_TEST_SYSTEMD_ANALYZE");
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = std::fs::read_to_string(root().join("deploy/slakeeper.service")).expect("unit");
    assert!(
        unit.contains("ExecStart=/usr/local/bin/slakeeper serve"),
        "{unit}"
    );
    let file = dir.path().join("slakeeper.service");
    std::fs::write(
        &file,
        unit.replace("/usr/local/bin/slakeeper", env!("CARGO_BIN_EXE_slakeeper")),
    )
    .expect("write");
    // Act
    let out = run(Command::new(&analyze).arg("verify").arg(&file));
    // Assert
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
    let sec = run(Command::new(&analyze)
        .args(["security", "--offline=yes", "--threshold=20"])
        .arg(&file));
    assert!(
        sec.status.success(),
        "exposure above 2.0:\n{}",
        text(&sec.stdout)
    );
    // A misspelt setting is caught (the check can fail).
    std::fs::write(
        &file,
        unit.replace("ProtectSystem=strict", "ProtectSystem=stricter"),
    )
    .expect("write");
    let bad = run(Command::new(&analyze).arg("verify").arg(&file));
    assert!(!text(&bad.stderr).trim().is_empty());
}

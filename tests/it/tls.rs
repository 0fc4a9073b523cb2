//! HTTPS on the listener (issue 18, row 8): `serve --tls-cert FILE --tls-key FILE` with a
//! certificate the test makes (openssl, installed by scripts/test-env.sh), through the real
//! binary; acknowledge links then say `https://`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::launch::{Http, Launch, ack_link, json, mail_text, repeating_workflows};
use crate::common::*;

const API: &str = "tls-api-token";

/// A self-signed certificate for 127.0.0.1 and localhost: (cert.pem, key.pem).
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let openssl = setting("SLAKEEPER_TEST_OPENSSL").unwrap_or_else(|| "openssl".into());
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new(&openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=slakeeper test",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap_or_else(|e| panic!("{openssl}: {e}; run `bash scripts/test-env.sh`"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

fn https(backend: Backend) {
    // Arrange
    let tmp = tempfile::tempdir().expect("tempdir");
    let (cert, key) = certificate(tmp.path());
    let smtp = Smtp::start();
    let hooks = Hooks::start();
    let wf = repeating_workflows(hooks.port);
    let db = TestDb::new(backend);
    let app = Launch::serve(&db.url, wf.dir.path())
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .env("SLAKEEPER_API_TOKEN", API)
        .env(
            "SLAKEEPER_SMTP_URL",
            format!("smtp://127.0.0.1:{}", smtp.port),
        )
        .start();
    let pem = std::fs::read(&cert).expect("cert");
    let h = Http::trusting(&pem);
    // Act
    let healthz = h.get(&format!("{}/healthz", app.base), None);
    let posted = h.post(
        &format!("{}/v1/events", app.base),
        Some(API),
        &opened("t1", "T-TLS", "urgent", &now_rfc3339(0)),
    );
    let plain = Http::new().get(
        &format!("{}/healthz", app.base.replacen("https://", "http://", 1)),
        None,
    );
    let untrusted = Http::new().get(&format!("{}/healthz", app.base), None);
    let mails = smtp.wait_mails(Duration::from_secs(30), |m| {
        !matching(m, "supervisor@test.local", "breach").is_empty()
    });
    // Assert: HTTPS answers, plain HTTP and an unknown certificate get nothing.
    assert!(app.base.starts_with("https://127.0.0.1:"), "{}", app.base);
    assert_eq!(healthz.0, 200, "{}", healthz.1);
    assert_eq!(posted.0, 202, "{}", posted.1);
    assert_eq!(json(&posted.1)["accepted"], 1);
    assert_eq!(plain.0, 0, "plain HTTP was answered: {}", plain.1);
    assert_eq!(untrusted.0, 0, "{}", untrusted.1);
    // The acknowledge link in the breach mail says https:// and works over it.
    let mail = matching(&mails, "supervisor@test.local", "breach")
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no breach mail: {}", app.stderr()))
        .clone();
    let link = ack_link(&mail_text(&mail)).expect("a link");
    assert!(link.starts_with(&format!("{}/v1/ack/", app.base)), "{link}");
    let (s, page) = h.get(&link, None);
    assert_eq!(s, 200, "{page}");
    let (s, page) = h.call("POST", &link, None, None);
    assert_eq!(s, 200, "{page}");
}

#[test]
fn a_bad_certificate_or_key_stops_the_start_naming_the_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (cert, key) = certificate(tmp.path());
    let junk = tmp.path().join("junk.pem");
    std::fs::write(&junk, "not a pem file\n").expect("junk");
    let wf = workflows(9, false);
    for (c, k, names) in [(&junk, &key, &junk), (&cert, &junk, &junk)] {
        let db = TestDb::new(Backend::Sqlite);
        let out = Launch::serve(&db.url, wf.dir.path())
            .arg("--tls-cert")
            .arg(c)
            .arg("--tls-key")
            .arg(k)
            .exit();
        assert_eq!(out.code, Some(1), "{out:?}");
        assert!(
            out.stderr.contains(&names.display().to_string()),
            "{}",
            out.stderr
        );
        assert!(
            !Path::new(db.url.trim_start_matches("sqlite://")).exists(),
            "created the database"
        );
    }
    // One without the other is a usage error.
    let db = TestDb::new(Backend::Sqlite);
    let out = Launch::serve(&db.url, wf.dir.path())
        .arg("--tls-cert")
        .arg(&cert)
        .exit();
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("--tls-key"), "{}", out.stderr);
}

crate::both_databases! {
    serve_speaks_https_with_the_given_certificate => https,
}

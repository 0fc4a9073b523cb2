//! Running it for years (issue 21, shipping and backups), through the real binary: a start
//! on a machine with no CA certificates, `backup` under concurrent ingest verified by
//! `export` from the copy. The container image, compose file and systemd unit are tested by
//! `tests/image.rs` (opt-in, see there).
//! Set-up: `bash scripts/test-env.sh` (the README's test command does it).

mod common;

use std::time::Duration;

use common::*;

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

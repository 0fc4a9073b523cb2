//! Acknowledge links with no set-up (issue 18, rows 5 and 6), through the real binary and a
//! real SMTP server: a fresh install (no ack secret, no webhook secret, no API token) mails
//! every staff escalation with a working link; the key is generated once and kept in the
//! database, so every process on it signs and checks the same links.

use std::time::Duration;

use crate::common::launch::{Http, Launch, ack_link, mail_text, repeating_workflows};
use crate::common::*;

const LONG: Duration = Duration::from_secs(30);

fn staff(mails: &[Mail]) -> Vec<&Mail> {
    mails
        .iter()
        .filter(|m| !m.to().contains("@customer.test"))
        .collect()
}

fn breaches_to_supervisor(smtp: &Smtp) -> usize {
    matching(&smtp.mails(), "supervisor@test.local", "breach").len()
}

fn zero_config_link_works(backend: Backend) {
    // Arrange: nothing configured but the database and the SMTP server.
    let smtp = Smtp::start();
    let hooks = Hooks::start();
    let wf = repeating_workflows(hooks.port);
    let db = TestDb::new(backend);
    let app = Launch::serve(&db.url, wf.dir.path())
        .env(
            "SLAKEEPER_SMTP_URL",
            format!("smtp://127.0.0.1:{}", smtp.port),
        )
        .start();
    let h = Http::new();
    let (s, b) = h.post(
        &format!("{}/v1/events", app.base),
        None,
        &opened("z1", "T-ZERO", "urgent", &now_rfc3339(0)),
    );
    assert_eq!(s, 202, "{b}");
    // Act: the breach e-mail (3 s) and its first repeat.
    let mails = smtp.wait_mails(LONG, |m| {
        matching(m, "supervisor@test.local", "breach").len() >= 2
    });
    let first = matching(&mails, "supervisor@test.local", "breach")
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no breach mail: {}", app.stderr()))
        .clone();
    let text = mail_text(&first);
    let link = ack_link(&text).unwrap_or_else(|| panic!("no link in:\n{text}"));
    // Assert: the link is the listen address's, and the shipped template shows it.
    assert!(
        link.starts_with(&format!("{}/v1/ack/", app.base)),
        "{link} vs {}",
        app.base
    );
    assert!(
        text.contains("On it? Acknowledge here and the repeat alerts stop:"),
        "{text}"
    );
    // GET shows the page and acknowledges nothing.
    let (s, page) = h.get(&link, None);
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("<form method=post>"), "{page}");
    let (_, show) = h.get(&format!("{}/v1/tickets/T-ZERO", app.base), None);
    assert!(
        !show.contains("escalation.acknowledged"),
        "GET acknowledged"
    );
    // POST acknowledges; the repeats stop (one already in flight may still land).
    let (s, page) = h.call("POST", &link, None, None);
    assert_eq!(s, 200, "{page}");
    let at_ack = breaches_to_supervisor(&smtp);
    std::thread::sleep(Duration::from_secs(4));
    let after = breaches_to_supervisor(&smtp);
    assert!(
        after <= at_ack + 1 && after < 6,
        "repeats went on: {at_ack} -> {after}"
    );
    let (_, show) = h.get(&format!("{}/v1/tickets/T-ZERO", app.base), None);
    assert!(
        show.contains("escalation.acknowledged"),
        "not in the timeline: {show}"
    );
    // Every staff e-mail carried a link; no customer one did.
    let mails = smtp.mails();
    let staff = staff(&mails);
    let linked = staff
        .iter()
        .filter(|m| ack_link(&mail_text(m)).is_some())
        .count();
    assert!(staff.len() >= 4, "{} staff mails", staff.len());
    assert_eq!(
        linked,
        staff.len(),
        "{linked} of {} staff e-mails",
        staff.len()
    );
    // One key, kept in the database; the warnings about it are gone, the URL one is once.
    assert_eq!(
        db.query_pairs("SELECT name, COUNT(*) FROM sk_keys GROUP BY name"),
        vec![("ack_links".to_string(), 1)]
    );
    let log = app.stderr();
    assert!(!log.contains("carry no acknowledge link"), "{log}");
    assert_eq!(
        log.matches("SLAKEEPER_PUBLIC_URL is not set").count(),
        1,
        "{log}"
    );
}

fn two_first_starts_share_one_key(backend: Backend) {
    // Arrange: one fresh database, two processes started at the same moment.
    let smtp = Smtp::start();
    let hooks = Hooks::start();
    let wf = repeating_workflows(hooks.port);
    let db = TestDb::new(backend);
    if backend == Backend::Sqlite {
        // Two processes migrating one new SQLite file at once trip over apalis' migrations
        // (SQLite has no advisory lock); migrate first, so the race left is the key's.
        let m = Launch::new(&["migrate", "--database", &db.url]).exit();
        assert_eq!(m.code, Some(0), "{m:?}");
    }
    let launch = || {
        Launch::serve(&db.url, wf.dir.path()).env(
            "SLAKEEPER_SMTP_URL",
            format!("smtp://127.0.0.1:{}", smtp.port),
        )
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| launch().start());
        let b = s.spawn(|| launch().start());
        (a.join().expect("a"), b.join().expect("b"))
    });
    let h = Http::new();
    assert_eq!(
        h.post(
            &format!("{}/v1/events", a.base),
            None,
            &opened("r1", "T-RACE", "urgent", &now_rfc3339(0)),
        )
        .0,
        202
    );
    // Act: a link from whichever process sent the breach.
    let mails = smtp.wait_mails(LONG, |m| {
        !matching(m, "supervisor@test.local", "breach").is_empty()
    });
    let mail = matching(&mails, "supervisor@test.local", "breach")
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no breach mail: {}\n{}", a.stderr(), b.stderr()))
        .clone();
    let link = ack_link(&mail_text(&mail)).expect("a link");
    let token = link.rsplit('/').next().unwrap_or("").to_string();
    // Assert: one key row, and both processes accept the link.
    assert_eq!(
        db.query_pairs("SELECT name, COUNT(*) FROM sk_keys GROUP BY name"),
        vec![("ack_links".to_string(), 1)]
    );
    for app in [&a, &b] {
        let (s, page) = h.get(&format!("{}/v1/ack/{token}", app.base), None);
        assert_eq!(s, 200, "{}: {page}", app.base);
    }
}

#[test]
fn a_custom_template_without_the_link_gets_it_as_its_last_line() {
    // Arrange: an sla_breach template written before links existed; a configured secret.
    let smtp = Smtp::start();
    let hooks = Hooks::start();
    let wf = repeating_workflows(hooks.port);
    std::fs::write(
        wf.dir.path().join("templates/sla_breach.en.txt"),
        "Subject: [SLA breach] {{ ticket.id }}\n\nTicket {{ ticket.id }} breached.\n\n-- ops\n",
    )
    .expect("template");
    let db = TestDb::new(Backend::Sqlite);
    let app = Launch::serve(&db.url, wf.dir.path())
        .env(
            "SLAKEEPER_SMTP_URL",
            format!("smtp://127.0.0.1:{}", smtp.port),
        )
        .env("SLAKEEPER_ACK_SECRET", "configured-ack-secret")
        .env("SLAKEEPER_PUBLIC_URL", "https://sk.example.com/")
        .start();
    let (s, _) = Http::new().post(
        &format!("{}/v1/events", app.base),
        None,
        &opened("c1", "T-CUSTOM", "urgent", &now_rfc3339(0)),
    );
    assert_eq!(s, 202);
    // Act
    let mails = smtp.wait_mails(LONG, |m| {
        !matching(m, "supervisor@test.local", "breach").is_empty()
    });
    let mail = matching(&mails, "supervisor@test.local", "breach")
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no breach mail: {}", app.stderr()))
        .clone();
    let text = mail_text(&mail);
    // Assert: the template's text, then the link as the last line, from the public URL.
    let last = text.trim_end().lines().last().unwrap_or("");
    assert!(text.starts_with("Ticket T-CUSTOM breached."), "{text}");
    assert!(
        last.starts_with(
            "Acknowledge (stops the repeats and later escalations): https://sk.example.com/v1/ack/"
        ),
        "{text}"
    );
    assert!(
        !app.stderr().contains("SLAKEEPER_PUBLIC_URL is not set"),
        "{}",
        app.stderr()
    );
}

/// The key's race itself, without process start-up around it: eight concurrent first starts
/// on one fresh database all come back with the same key, and one row is stored.
fn concurrent_first_starts_agree(backend: Backend) {
    let db = TestDb::new(backend);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    let keys: Vec<String> = rt.block_on(async {
        let d = slakeeper::shell::db::Db::connect(&db.url)
            .await
            .expect("connect");
        slakeeper::shell::queue::migrate(&d).await.expect("migrate");
        let now = chrono::Utc::now();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let d = d.clone();
                tokio::spawn(async move { slakeeper::shell::ack_key::stored(&d, now).await })
            })
            .collect();
        let mut keys = Vec::new();
        for t in tasks {
            let k = t.await.expect("task").expect("key");
            keys.push(k.expose().to_string());
        }
        d.close().await;
        keys
    });
    assert_eq!(keys.len(), 8);
    assert!(
        keys.iter().all(|k| k == &keys[0] && k.len() == 64),
        "{keys:?}"
    );
    assert_eq!(
        db.query_pairs("SELECT name, COUNT(*) FROM sk_keys GROUP BY name"),
        vec![("ack_links".to_string(), 1)]
    );
}

crate::both_databases! {
    a_fresh_install_mails_a_working_acknowledge_link => zero_config_link_works,
    two_first_starts_on_one_database_end_with_one_key => two_first_starts_share_one_key,
    concurrent_first_starts_agree_on_one_key => concurrent_first_starts_agree,
}

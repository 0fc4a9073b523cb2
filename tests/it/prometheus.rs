//! The monitoring contract, proven with a real Prometheus (Debian's 2.42 and promtool,
//! installed by scripts/test-env.sh):
//!
//! 1. `promtool check rules` and `promtool test rules` on the alert rules;
//! 2. a live `slakeeper serve` driven through a scenario (breach, progress, survey scores,
//!    call-backs, re-open, failed webhook), its `/metrics` linted by `promtool check metrics`;
//! 3. a Prometheus scraping it; every dashboard panel's and every rule's PromQL evaluated
//!    through the HTTP API: each must parse and evaluate, and every `slakeeper_*` series it
//!    reads must be one the engine exported in the scenario (no typos, no dead panels).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{self, *};
use serde_json::{Value, json};

fn tool(key: &str, default: &str) -> String {
    let t = setting(key).unwrap_or_else(|| default.to_string());
    assert!(
        Path::new(&t).exists(),
        "{t} not found: run `bash scripts/test-env.sh` (installs Debian's prometheus)"
    );
    t
}

fn repo(p: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(p)
        .display()
        .to_string()
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let promtool = tool("SLAKEEPER_TEST_PROMTOOL", "/usr/bin/promtool");
    let out = Command::new(&promtool)
        .args([
            "check",
            "rules",
            &repo("grafana/alerts/slakeeper-rules.yaml"),
        ])
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&promtool)
        .args([
            "test",
            "rules",
            &repo("grafana/alerts/slakeeper-rules.test.yaml"),
        ])
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dashboards_are_valid_grafana_models() {
    let out = Command::new("python3")
        .arg(repo("scripts/check_dashboards.py"))
        .args(["--check-series", &repo("grafana/known-series.txt")])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Metric family names in a Prometheus exposition (histogram suffixes folded).
fn exported_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|n| {
            n.trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count")
                .to_string()
        })
        .collect()
}

/// `slakeeper_*` names an expression reads (histogram suffixes folded).
fn referenced(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("slakeeper_") {
        let start = i + pos;
        let mut end = start;
        while end < b.len()
            && (b[end].is_ascii_lowercase() || b[end] == b'_' || b[end].is_ascii_digit())
        {
            end += 1;
        }
        let name = &expr[start..end];
        out.insert(
            name.trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count")
                .to_string(),
        );
        i = end;
    }
    out
}

fn drive_scenario(app: &App, smtp: &Smtp) {
    let t = |s| now_rfc3339(s);
    let events = json!({"events": [
        // Breached first response (urgent, 3 s), then resolved at first contact, score 5.
        opened("m1", "M-1", "urgent", &t(-10)),
        event("m2", "M-1", "ticket.resolved", &t(-1)),
        {"id": "m3", "ticket": "M-1", "type": "survey.answered", "at": t(0), "score": 5, "nps": 10},
        // Met first response, plan, progress, resolution, low score, call-back overdue.
        opened("m4", "M-2", "urgent", &t(0)),
        event("m5", "M-2", "ticket.responded", &t(0)),
        event("m6", "M-2", "ticket.plan_agreed", &t(0)),
        event("m7", "M-2", "ticket.progress_updated", &t(0)),
        // A ticket that re-opens.
        opened("m8", "M-3", "normal", &t(0)),
        event("m9", "M-3", "ticket.resolved", &t(0)),
        event("m10", "M-3", "ticket.reopened", &t(0)),
        // One that stays open.
        opened("m11", "M-4", "normal", &t(0)),
    ]});
    let (s, b) = app.post(&events);
    assert_eq!(s, 202, "{b}");
    // A duplicate and a rejected event, for the events counter's other outcomes.
    app.post(&opened("m11", "M-4", "normal", &t(0)));
    app.post(&json!({"id": "bad", "ticket": "M-5", "type": "nope", "at": t(0)}));
    std::thread::sleep(Duration::from_secs(5));
    let more = json!({"events": [
        event("m12", "M-2", "ticket.resolved", &t(0)),
        {"id": "m13", "ticket": "M-2", "type": "survey.answered", "at": t(0), "score": 2, "nps": 3},
        {"id": "m14", "ticket": "M-1", "type": "callback.completed", "at": t(0)},
    ]});
    assert_eq!(app.post(&more).0, 202);
    smtp.wait_mails(Duration::from_secs(30), |m| {
        !matching(m, "manager@test.local", "[SLA escalation] M-2").is_empty()
    });
}

#[test]
fn every_panel_and_rule_evaluates_against_a_live_engine() {
    let prometheus = tool("SLAKEEPER_TEST_PROMETHEUS", "/usr/bin/prometheus");
    let promtool = tool("SLAKEEPER_TEST_PROMTOOL", "/usr/bin/promtool");
    // Arrange: a live engine; the webhook target is down so failures and retries happen.
    let smtp = Smtp::start();
    let wf = workflows(free_port(), true);
    with_office_calendar(wf.dir.path());
    let db = TestDb::new(Backend::Sqlite);
    let app = App::start(AppOpts::new(&db.url, wf.dir.path(), smtp.port));
    drive_scenario(&app, &smtp);
    let exposition = app.metrics();
    // The exposition passes promtool's lint.
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(exposition.as_bytes()).expect("write");
    }
    let lint = child.wait_with_output().expect("promtool output");
    assert!(
        lint.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    let exported = exported_names(&exposition);
    // No label value may be a ticket id, a person or an address.
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        for needle in ["M-1", "M-2", "@", "Li", "Wang"] {
            assert!(!line.contains(needle), "personal data in a metric: {line}");
        }
    }

    // Act: Prometheus scrapes the engine.
    let prom_port = free_port();
    let tmp = tempfile::tempdir().expect("tempdir");
    let target = app.base.trim_start_matches("http://").to_string();
    let cfg = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: slakeeper\n    static_configs:\n      - targets: ['{target}']\n",
        repo("grafana/alerts/slakeeper-rules.yaml")
    );
    let cfg_path = tmp.path().join("prometheus.yml");
    std::fs::write(&cfg_path, cfg).expect("config");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _prometheus = Kill(
        Command::new(&prometheus)
            .arg(format!("--config.file={}", cfg_path.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                tmp.path().join("data").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let client = common::reqwest::blocking_client();
    let api = format!("http://127.0.0.1:{prom_port}/api/v1");
    let query = |q: &str| -> Value {
        let url = format!("{api}/query?query={}", url_encode(q));
        client.get(&url).1
    };
    wait_for(Duration::from_secs(30), || {
        let r = query("up{job=\"slakeeper\"}");
        (r["data"]["result"][0]["value"][1] == "1").then_some(())
    })
    .expect("Prometheus scrapes the engine");
    // A few scrapes, so rate() over the shortest windows has two samples.
    std::thread::sleep(Duration::from_secs(4));

    // Every expression of every panel, variable query and rule.
    let out = Command::new("python3")
        .arg(repo("scripts/check_dashboards.py"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exprs: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(exprs.len() >= 40, "only {} expressions found", exprs.len());
    let mut failures = Vec::new();
    let mut read = BTreeSet::new();
    for e in &exprs {
        let expr = e["expr"].as_str().unwrap_or("");
        let where_ = format!("{} / {}", e["source"], e["panel"]);
        let r = query(expr);
        if r["status"] != "success" {
            failures.push(format!("{where_}: {expr}\n    -> {}", r["error"]));
        }
        for name in referenced(expr) {
            if !exported.contains(&name) {
                failures.push(format!(
                    "{where_}: reads `{name}`, which the engine did not export"
                ));
            }
            read.insert(name);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // And the boards read every SPEC metric (nothing the engine exports goes unwatched).
    for spec in [
        "slakeeper_events_total",
        "slakeeper_tickets_open",
        "slakeeper_sla_outcomes_total",
        "slakeeper_sla_time_seconds",
        "slakeeper_escalations_total",
        "slakeeper_progress_updates_total",
        "slakeeper_surveys_sent_total",
        "slakeeper_survey_scores_total",
        "slakeeper_callbacks_total",
        "slakeeper_notifications_total",
        "slakeeper_timers_pending",
        "slakeeper_timer_lateness_seconds",
        "slakeeper_build_info",
        // Issue 9: NPS and the per-workflow KPI targets the boards and alerts compare with.
        "slakeeper_nps_answers_total",
        "slakeeper_kpi_target",
        // Issue 22: the At risk row of the SLA overview.
        "slakeeper_clocks_at_risk",
        // Issue 20: when each calendar in use runs out of holiday data.
        "slakeeper_calendar_coverage_end_timestamp_seconds",
    ] {
        assert!(exported.contains(spec), "{spec} not exported");
        assert!(read.contains(spec), "{spec} is on no board or rule");
    }
    // The scenario's numbers reach Prometheus: a breach and the CSAT inputs.
    let breached = query("sum(slakeeper_sla_outcomes_total{outcome=\"breached\"})");
    let v: f64 = breached["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0);
    assert!(v >= 1.0, "{breached}");
    // M-4 (normal, 6 s first response) is still open and past its deadline: the gauge
    // computed from the database counts it as breached; the rest of the grid is at 0.
    let at_risk = query(
        r#"sum(slakeeper_clocks_at_risk{workflow="fast", clock="first_response", priority="normal", band="breached"})"#,
    );
    let n: f64 = at_risk["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0);
    assert_eq!(n, 1.0, "{at_risk}");
    // Each workflow is compared with its own targets (tests/fixtures/e2e/fast.yaml sets
    // nps 30, csat 80 %): the scenario's NPS (1 promoter, 1 detractor) is 0, 30 below.
    let value = |q: &str| -> Option<f64> {
        query(q)["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
    };
    assert_eq!(
        value(r#"slakeeper_kpi_target{workflow="fast",kpi="csat"}"#),
        Some(0.8)
    );
    // Raw counters: the answers came before the first scrape, so `increase` would see none.
    let nps = r#"100 * (sum by (workflow) (slakeeper_nps_answers_total{workflow="fast", class="promoter"}) - sum by (workflow) (slakeeper_nps_answers_total{workflow="fast", class="detractor"})) / sum by (workflow) (slakeeper_nps_answers_total{workflow="fast"})"#;
    let margin = value(&format!(
        r#"({nps}) - on (workflow) max by (workflow) (slakeeper_kpi_target{{workflow="fast", kpi="nps"}})"#
    ));
    assert!(
        margin.is_some_and(|m| (m + 30.0).abs() < 1e-6),
        "NPS against target: {margin:?}"
    );
}

/// A calendar with holiday data (2026 only) and a workflow counting on it, so the engine
/// exports `slakeeper_calendar_coverage_end_timestamp_seconds` (calendars without holidays,
/// like the fixture's `always`, never run out and have no series).
fn with_office_calendar(dir: &Path) {
    let cal = dir.join("calendars.yaml");
    let mut src = std::fs::read_to_string(&cal).expect("calendars.yaml");
    src.push_str("  office:\n    timezone: Asia/Shanghai\n    hours: { mon-fri: \"09:00-18:00\" }\n    years: [2026]\n    holidays: [2026-10-01]\n");
    std::fs::write(&cal, src).expect("calendars.yaml");
    std::fs::write(
        dir.join("office.yaml"),
        "workflow: office\nmatch: { categories: [office-only] }\ncalendar: office\nlanguage: en\npriorities: [normal]\nstages:\n  intake:\n    sla:\n      first_response: { default: 1wd }\n",
    )
    .expect("office.yaml");
}

fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

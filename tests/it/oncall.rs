//! On-call channels through the real binary: local receivers that check each vendor's
//! signature and body the way the vendor documents it and answer like the vendor (success,
//! an error inside a 200 body, 429), rotations, held emails, `validate` of the new keys.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const LONG: Duration = Duration::from_secs(30);
const DING_SECRET: &str = "SECdingtalk-test-secret";
const FEISHU_SECRET: &str = "feishu-test-secret";
const PD_KEY: &str = "R0UT1NGKEY0123456789012345678901";
const ZD_AUTH: &str = "Basic em9uZTp0b2tlbg==";

fn hmac_b64(key: &[u8], data: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("hmac key");
    m.update(data);
    STANDARD.encode(m.finalize().into_bytes())
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let h = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("00");
            out.push(u8::from_str_radix(h, 16).unwrap_or(0));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_default()
}

/// One request a receiver got (query and headers kept for failure messages).
#[derive(Debug, Clone)]
#[allow(dead_code)]
struct Got {
    path: String,
    query: BTreeMap<String, String>,
    headers: BTreeMap<String, String>,
    body: Value,
    raw: String,
    at: Instant,
    /// Did the vendor-side check (signature, shape) pass?
    valid: bool,
    answered: u16,
}

/// Vendor receivers on one port: `/slack`, `/teams`, `/dingtalk`, `/feishu`, `/wecom`,
/// `/pd`, `/zendesk/...`, `/hook`. Each checks what its vendor checks and answers like it;
/// the first call to `/dingtalk` reports an error in a 200 body and the first call to
/// `/slack` is rate limited (429, Retry-After: 1).
struct Vendors {
    port: u16,
    got: Arc<Mutex<Vec<Got>>>,
    _rt: tokio::runtime::Runtime,
}

fn check(
    path: &str,
    q: &BTreeMap<String, String>,
    h: &BTreeMap<String, String>,
    body: &Value,
    raw: &str,
) -> bool {
    let now = chrono::Utc::now().timestamp();
    match path {
        "/slack" => body["blocks"].is_array() && body["text"].is_string(),
        "/teams" => {
            body["type"] == "message"
                && body["attachments"][0]["contentType"]
                    == "application/vnd.microsoft.card.adaptive"
                && body["attachments"][0]["content"]["type"] == "AdaptiveCard"
        }
        "/dingtalk" => {
            // DingTalk: timestamp (ms) within an hour, sign = urlencode(base64(HMAC-SHA256(
            // secret, timestamp + "\n" + secret))); the query arrives url-encoded.
            let ts = q.get("timestamp").cloned().unwrap_or_default();
            let ts_ok = ts
                .parse::<i64>()
                .is_ok_and(|t| (now * 1000 - t).abs() < 3_600_000);
            let want = hmac_b64(
                DING_SECRET.as_bytes(),
                format!("{ts}\n{DING_SECRET}").as_bytes(),
            );
            let got = url_decode(q.get("sign").map(String::as_str).unwrap_or(""));
            ts_ok
                && got == want
                && body["msgtype"] == "markdown"
                && body["markdown"]["text"].is_string()
        }
        "/feishu" => {
            // Feishu: HMAC-SHA256 keyed with timestamp + "\n" + secret over an empty message.
            let ts = body["timestamp"].as_str().unwrap_or("");
            let ts_ok = ts.parse::<i64>().is_ok_and(|t| (now - t).abs() < 3600);
            let want = hmac_b64(format!("{ts}\n{FEISHU_SECRET}").as_bytes(), b"");
            ts_ok && body["sign"] == want.as_str() && body["msg_type"] == "interactive"
        }
        "/wecom" => q.get("key").is_some_and(|k| k == "wecom-key") && body["msgtype"] == "markdown",
        "/pd" => {
            body["routing_key"] == PD_KEY
                && matches!(
                    body["event_action"].as_str(),
                    Some("trigger" | "acknowledge" | "resolve")
                )
                && body["dedup_key"].is_string()
                && (body["event_action"] != "trigger"
                    || (body["payload"]["summary"].is_string()
                        && body["payload"]["source"].is_string()
                        && body["payload"]["severity"].is_string()))
        }
        "/hook" => {
            // Standard Webhooks: v1,base64(HMAC-SHA256(key, id.timestamp.body)).
            let id = h.get("webhook-id").cloned().unwrap_or_default();
            let ts = h.get("webhook-timestamp").cloned().unwrap_or_default();
            let want = format!(
                "v1,{}",
                hmac_b64(SECRET.as_bytes(), format!("{id}.{ts}.{raw}").as_bytes())
            );
            h.get("webhook-signature")
                .is_some_and(|s| s.split(' ').any(|p| p == want))
        }
        p if p.starts_with("/zendesk/") => h.get("authorization").is_some_and(|a| a == ZD_AUTH),
        _ => false,
    }
}

impl Vendors {
    fn start() -> Vendors {
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let g = got.clone();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, raw: String| {
                let g = g.clone();
                async move {
                    let path = uri.path().to_string();
                    let query: BTreeMap<String, String> = uri
                        .query()
                        .unwrap_or("")
                        .split('&')
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                    let hs: BTreeMap<String, String> = headers
                        .iter()
                        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                        .collect();
                    let body: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
                    let valid = check(&path, &query, &hs, &body, &raw);
                    let mut v = g.lock().expect("lock");
                    let n = v.iter().filter(|x| x.path == path).count();
                    use axum::response::IntoResponse;
                    let (status, resp) = match path.as_str() {
                        "/slack" if n == 0 => (429, axum::response::Response::builder()
                            .status(429).header("retry-after", "1").body(axum::body::Body::from("rate_limited"))
                            .expect("resp")),
                        "/slack" if valid => (200, "ok".into_response()),
                        "/slack" => (400, (axum::http::StatusCode::BAD_REQUEST, "invalid_payload").into_response()),
                        "/teams" => (202, axum::http::StatusCode::ACCEPTED.into_response()),
                        "/dingtalk" if !valid => (200, r#"{"errcode":310000,"errmsg":"sign not match"}"#.into_response()),
                        "/dingtalk" if n == 0 => (200, r#"{"errcode":300001,"errmsg":"token is not exist"}"#.into_response()),
                        "/dingtalk" | "/wecom" => (200, r#"{"errcode":0,"errmsg":"ok"}"#.into_response()),
                        "/feishu" if valid => (200, r#"{"code":0,"msg":"success","data":{}}"#.into_response()),
                        "/feishu" => (200, r#"{"code":19021,"msg":"sign match fail or timestamp is not within one hour from current time"}"#.into_response()),
                        "/pd" if valid => (202, (axum::http::StatusCode::ACCEPTED,
                            json!({"status":"success","message":"Event processed","dedup_key":body["dedup_key"]}).to_string()).into_response()),
                        "/pd" => (400, (axum::http::StatusCode::BAD_REQUEST, r#"{"status":"invalid event"}"#).into_response()),
                        _ if valid => (200, "{}".into_response()),
                        _ => (401, axum::http::StatusCode::UNAUTHORIZED.into_response()),
                    };
                    v.push(Got { path, query, headers: hs, body, raw, at: Instant::now(), valid, answered: status });
                    resp
                }
            },
        );
        let (rt, port) = serve_loopback(app);
        Vendors { port, got, _rt: rt }
    }

    fn at(&self, path: &str) -> Vec<Got> {
        self.got
            .lock()
            .map(|v| {
                v.iter()
                    .filter(|g| g.path.starts_with(path))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// The test workflows with `routes` as routes.yaml and a Shanghai calendar.
fn oncall_workflows(routes: &str) -> Workflows {
    let wf = workflows(1, false);
    std::fs::write(wf.dir.path().join("routes.yaml"), routes).expect("routes");
    std::fs::write(
        wf.dir.path().join("calendars.yaml"),
        "calendars:\n  always:\n    timezone: UTC\n    hours: { mon-sun: \"00:00-24:00\" }\n  cn-office:\n    timezone: Asia/Shanghai\n    hours: { mon-fri: \"09:00-18:00\" }\n",
    )
    .expect("calendars");
    wf
}

fn vendor_env(v: &Vendors) -> Vec<(&'static str, String)> {
    vec![
        ("SLK_SLACK_URL", v.url("/slack")),
        ("SLK_TEAMS_URL", v.url("/teams")),
        (
            "SLK_DINGTALK_URL",
            v.url("/dingtalk?access_token=ding-token"),
        ),
        ("SLK_DINGTALK_SECRET", DING_SECRET.to_string()),
        ("SLK_FEISHU_URL", v.url("/feishu")),
        ("SLK_FEISHU_SECRET", FEISHU_SECRET.to_string()),
        ("SLK_WECOM_URL", v.url("/wecom?key=wecom-key")),
        ("SLK_PD_KEY", PD_KEY.to_string()),
        ("SLK_ZENDESK_AUTH", ZD_AUTH.to_string()),
    ]
}

fn all_channels_routes(v: &Vendors) -> String {
    format!(
        r#"supervisor: {{ email: [supervisor@test.local] }}
manager:    {{ email: [manager@test.local] }}
oncall:
  email:     [oncall@test.local]
  webhook:   ["{hook}"]
  slack:     [{{ url_env: SLK_SLACK_URL }}]
  teams:     [{{ url_env: SLK_TEAMS_URL }}]
  dingtalk:  [{{ url_env: SLK_DINGTALK_URL, secret_env: SLK_DINGTALK_SECRET, at_mobiles: ["13800000000"] }}]
  feishu:    [{{ url_env: SLK_FEISHU_URL, secret_env: SLK_FEISHU_SECRET }}]
  wecom:     [{{ url_env: SLK_WECOM_URL }}]
  pagerduty: [{{ routing_key_env: SLK_PD_KEY, url: "{pd}" }}]
  http:
    - method: PUT
      url: "{zd}/{{{{ ticket.id }}}}.json"
      headers_env: {{ Authorization: SLK_ZENDESK_AUTH }}
      body: '{{"ticket": {{"comment": {{"body": {{{{ message.subject|json }}}}, "public": false}}}}, "clock": "{{{{ clock.name }}}}"}}'
"#,
        hook = v.url("/hook"),
        pd = v.url("/pd"),
        zd = v.url("/zendesk/api/v2/tickets"),
    )
}

fn start(wf: &Workflows, db: &TestDb, smtp: Option<u16>, env: Vec<(&'static str, String)>) -> App {
    let mut o = AppOpts::new(&db.url, wf.dir.path(), smtp.unwrap_or(1));
    o.smtp_port = smtp;
    o.extra_env = env;
    App::start(o)
}

#[test]
fn every_vendor_channel_gets_the_breach_the_vendors_way() {
    // Arrange
    let smtp = Smtp::start();
    let v = Vendors::start();
    let wf = oncall_workflows(&all_channels_routes(&v));
    let db = TestDb::new(Backend::Sqlite);
    let app = start(&wf, &db, Some(smtp.port), vendor_env(&v));
    // Act: the urgent first response breaches 3 s after opening.
    let (s, b) = app.post(&opened("o1", "T-ONCALL", "urgent", &now_rfc3339(0)));
    assert_eq!(s, 202, "{b}");
    // Assert: every channel delivered (after the error-in-200 and the 429).
    let done = wait_for(LONG, || {
        let ok = |p: &str| {
            v.at(p)
                .iter()
                .any(|g| g.valid && (200..300).contains(&g.answered))
        };
        let dingtalk_ok = v
            .at("/dingtalk")
            .iter()
            .filter(|g| g.answered == 200)
            .count()
            >= 2;
        ([
            "/slack",
            "/teams",
            "/feishu",
            "/wecom",
            "/pd",
            "/zendesk/",
            "/hook",
        ]
        .iter()
        .all(|p| ok(p))
            && dingtalk_ok)
            .then_some(())
    });
    assert!(
        done.is_some(),
        "not every channel delivered: {:#?}\n{}",
        v.got.lock().map(|g| g.clone()).unwrap_or_default(),
        app.stderr()
    );
    // Every request passed its vendor's check.
    for g in v.got.lock().map(|g| g.clone()).unwrap_or_default() {
        assert!(g.valid, "vendor check failed: {g:#?}");
    }
    // DingTalk: the error in a 200 body was a failed attempt, retried.
    let ding = v.at("/dingtalk");
    assert!(ding.len() >= 2, "{ding:#?}");
    assert_eq!(ding[0].body["at"]["atMobiles"][0], "13800000000");
    assert!(
        ding[0].body["markdown"]["text"]
            .as_str()
            .unwrap_or("")
            .contains("@13800000000")
    );
    // Slack: the 429 queued the message for Retry-After (1 s), not dropped.
    let slack = v.at("/slack");
    assert_eq!(slack[0].answered, 429);
    let gap = slack[1].at.duration_since(slack[0].at);
    assert!(gap >= Duration::from_millis(900), "retried after {gap:?}");
    assert_eq!(slack[1].body["blocks"][0]["type"], "header");
    // Teams: an Adaptive Card with an acknowledge action.
    let teams = v.at("/teams");
    let card = &teams[0].body["attachments"][0]["content"];
    assert!(
        card["body"][0]["text"]
            .as_str()
            .unwrap_or("")
            .contains("T-ONCALL"),
        "{card:#}"
    );
    // PagerDuty: a trigger whose dedup key names the clock run.
    let pd = v.at("/pd");
    assert_eq!(pd[0].body["event_action"], "trigger");
    assert_eq!(
        pd[0].body["dedup_key"],
        "slakeeper/T-ONCALL/first_response/1"
    );
    // http write-back: the templated URL, method and body.
    let zd = v.at("/zendesk/");
    assert_eq!(zd[0].path, "/zendesk/api/v2/tickets/T-ONCALL.json");
    assert_eq!(zd[0].body["ticket"]["comment"]["public"], false);
    assert!(
        zd[0].body["ticket"]["comment"]["body"]
            .as_str()
            .unwrap_or("")
            .contains("T-ONCALL")
    );
    assert_eq!(zd[0].body["clock"], "first_response");
    // No secret and no customer contact data in what slakeeper stores or logs.
    let (_, show) = app.get("/v1/tickets/T-ONCALL");
    let shown = show.to_string();
    let log = app.stderr();
    for secret in [
        "ding-token",
        "wecom-key",
        DING_SECRET,
        FEISHU_SECRET,
        PD_KEY,
        ZD_AUTH,
        "T-ONCALL@customer.test",
    ] {
        assert!(!shown.contains(secret), "{secret} in ticket show: {shown}");
        assert!(!log.contains(secret), "{secret} in the log");
    }
    for g in v.got.lock().map(|g| g.clone()).unwrap_or_default() {
        assert!(
            !g.raw.contains("T-ONCALL@customer.test"),
            "contact data sent to staff: {g:#?}"
        );
    }
    // Failed attempts are in ticket show.
    assert!(shown.contains("errcode 300001"), "{show:#}");
}

#[test]
fn a_rotation_pages_the_member_on_duty_in_its_calendars_zone() {
    // Arrange: a daily hand-off one minute ago in Shanghai time, counted from today's
    // Shanghai date, so alice's turn began a minute ago. Read in UTC the hand-off would be
    // hours away (or a day off), and someone else would be paged.
    let smtp = Smtp::start();
    let sh = (chrono::Utc::now() - chrono::Duration::minutes(1))
        .with_timezone(&chrono_tz::Asia::Shanghai);
    let routes = format!(
        "supervisor: {{ email: [supervisor@test.local] }}\nmanager: {{ email: [manager@test.local] }}\nalice: {{ email: [alice@test.local] }}\nbob: {{ email: [bob@test.local] }}\ncarol: {{ email: [carol@test.local] }}\noncall:\n  rotation: {{ calendar: cn-office, handoff: \"{}\", members: [alice, bob, carol], start: {} }}\n",
        sh.format("%H:%M"),
        sh.format("%Y-%m-%d"),
    );
    let wf = oncall_workflows(&routes);
    let db = TestDb::new(Backend::Sqlite);
    let app = start(&wf, &db, Some(smtp.port), vec![]);
    // Act
    let (s, b) = app.post(&opened("r1", "T-ROT", "urgent", &now_rfc3339(0)));
    assert_eq!(s, 202, "{b}");
    // Assert: alice got the breach, nobody else on the rotation did.
    let mails = smtp.wait_mails(LONG, |m| {
        !matching(m, "alice@test.local", "[SLA breach] T-ROT").is_empty()
    });
    assert_eq!(
        matching(&mails, "alice@test.local", "[SLA breach] T-ROT").len(),
        1,
        "{mails:#?}\n{}",
        app.stderr()
    );
    assert!(matching(&mails, "bob@test.local", "T-ROT").is_empty());
    assert!(matching(&mails, "carol@test.local", "T-ROT").is_empty());
    // ticket show names who was paged.
    let (_, show) = app.get("/v1/tickets/T-ROT");
    let paged: Vec<&Value> = show["timeline"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|r| r.to_string().contains("\"paged\""))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        paged.iter().any(|r| r.to_string().contains("alice")),
        "{show:#}"
    );
}

#[test]
fn emails_without_smtp_are_held_then_sent_when_smtp_is_configured() {
    // Arrange: no SMTP server configured.
    let smtp = Smtp::start();
    let wf = oncall_workflows(
        "supervisor: { email: [supervisor@test.local] }\nmanager: { email: [manager@test.local] }\noncall: { email: [oncall@test.local] }\n",
    );
    let db = TestDb::new(Backend::Sqlite);
    let mut app = start(&wf, &db, None, vec![]);
    let (s, _) = app.post(&opened("h1", "T-HELD", "urgent", &now_rfc3339(0)));
    assert_eq!(s, 202);
    // Assert: held (a gauge), not failed and retried.
    let held = wait_for(LONG, || {
        let held = metric_sum(
            &app.metrics(),
            "slakeeper_notifications_held",
            &["channel=\"email\""],
        );
        Some(held).filter(|n| *n >= 2.0)
    });
    assert!(held.is_some(), "{}", app.metrics());
    std::thread::sleep(Duration::from_secs(2));
    let m = app.metrics();
    assert!(
        !m.lines().any(|l| l
            .starts_with("slakeeper_notifications_total{channel=\"email\",outcome=\"retried\"}")
            && !l.ends_with(" 0")),
        "held emails were retried: {m}"
    );
    // Act: restart with SMTP configured.
    app.terminate(Duration::from_secs(30));
    let app = start(&wf, &db, Some(smtp.port), vec![]);
    // Assert: the held mails go out once.
    let mails = smtp.wait_mails(LONG, |m| {
        !matching(m, "oncall@test.local", "[SLA breach] T-HELD").is_empty()
    });
    assert_eq!(
        matching(&mails, "oncall@test.local", "[SLA breach] T-HELD").len(),
        1,
        "{}",
        app.stderr()
    );
}

fn validate(dir: &std::path::Path, env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_slakeeper"));
    cmd.arg("validate").arg(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("validate");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn validate_checks_channels_env_vars_and_rotation_members() {
    let wf = oncall_workflows(
        "supervisor: { email: [s@test.local] }\nmanager: { email: [m@test.local] }\noncall:\n  slack: [{ url_env: SLK_UNSET_SLACK_URL }]\n  pigeon: [{ url: \"http://x\" }]\nnight:\n  rotation: { calendar: cn-office, handoff: \"Mon 09:00\", members: [alice] }\n",
    );
    let (ok, out) = validate(wf.dir.path(), &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("routes.yaml:"), "{out}");
    assert!(out.contains("pigeon"), "{out}");
    let wf = oncall_workflows(
        "supervisor: { email: [s@test.local] }\nmanager: { email: [m@test.local] }\noncall:\n  slack: [{ url_env: SLK_UNSET_SLACK_URL }]\nnight:\n  rotation: { calendar: cn-office, handoff: \"Mon 09:00\", members: [alice] }\n",
    );
    let (ok, out) = validate(wf.dir.path(), &[]);
    assert!(!ok);
    assert!(
        out.contains("routes.yaml:4:") && out.contains("SLK_UNSET_SLACK_URL"),
        "{out}"
    );
    assert!(
        out.contains("routes.yaml:6:") && out.contains("`alice` is not a role"),
        "{out}"
    );
    let (ok, out) = validate(
        wf.dir.path(),
        &[("SLK_UNSET_SLACK_URL", "http://127.0.0.1:9/x")],
    );
    assert!(!ok);
    assert!(!out.contains("SLK_UNSET_SLACK_URL"), "{out}");
}

/// The test workflows with the breach rule repeating every second, up to 5 times, and the
/// on-call role on a signed generic webhook (which carries the acknowledge link).
fn repeating(v: &Vendors) -> Workflows {
    let wf = oncall_workflows(&format!(
        "supervisor: {{ email: [supervisor@test.local] }}\nmanager: {{ email: [manager@test.local] }}\noncall: {{ webhook: [\"{}\"] }}\n",
        v.url("/hook")
    ));
    let p = wf.dir.path().join("fast.yaml");
    let src = std::fs::read_to_string(&p).expect("fast.yaml").replace(
        "notify: [supervisor, oncall], template: sla_breach }",
        "notify: [oncall], template: sla_breach, repeat: 1s, times: 5 }",
    );
    std::fs::write(&p, src).expect("fast.yaml");
    wf
}

fn breaches(v: &Vendors, ticket: &str) -> Vec<Got> {
    v.at("/hook")
        .into_iter()
        .filter(|g| g.body["ticket"] == ticket && g.body["template"] == "sla_breach")
        .collect()
}

fn timeline_has(app: &App, ticket: &str, needle: &str) -> bool {
    let (_, show) = app.get(&format!("/v1/tickets/{ticket}"));
    show["timeline"].to_string().contains(needle)
}

#[test]
fn an_escalation_repeats_until_acknowledged_by_event() {
    // Arrange
    let smtp = Smtp::start();
    let v = Vendors::start();
    let wf = repeating(&v);
    let db = TestDb::new(Backend::Sqlite);
    let app = start(&wf, &db, Some(smtp.port), vec![]);
    let (s, _) = app.post(&opened("a1", "T-REP", "urgent", &now_rfc3339(0)));
    assert_eq!(s, 202);
    // The breach at 3 s, then a repeat a second later.
    let got = wait_for(LONG, || (breaches(&v, "T-REP").len() >= 2).then_some(()));
    assert!(got.is_some(), "no repeat: {}", app.stderr());
    let hooks = breaches(&v, "T-REP");
    assert!(hooks.iter().all(|h| h.valid), "{hooks:#?}");
    assert!(
        hooks[1].body["reason"]
            .as_str()
            .unwrap_or("")
            .contains("repeat 1 of 5"),
        "{:#}",
        hooks[1].body
    );
    // Act: acknowledge by event.
    let ack = json!({"id": "a2", "ticket": "T-REP", "type": "escalation.acknowledged",
                     "at": now_rfc3339(0), "clock": "first_response", "by": "wang"});
    let (s, b) = app.post(&ack);
    assert_eq!(s, 202, "{b}");
    let at_ack = breaches(&v, "T-REP").len();
    // Assert: no more repeats (one already in flight may land), and the timeline says why.
    std::thread::sleep(Duration::from_secs(4));
    let after = breaches(&v, "T-REP").len();
    assert!(
        after <= at_ack + 1 && after < 6,
        "repeats went on: {at_ack} -> {after}"
    );
    assert!(
        timeline_has(&app, "T-REP", "acknowledged"),
        "no acknowledgement in the timeline"
    );
}

#[test]
fn an_acknowledge_link_confirms_on_get_acknowledges_on_post_and_refuses_tampering() {
    // Arrange
    let smtp = Smtp::start();
    let v = Vendors::start();
    let wf = repeating(&v);
    let db = TestDb::new(Backend::Sqlite);
    let app = start(&wf, &db, Some(smtp.port), vec![]);
    let (s, _) = app.post(&opened("l1", "T-LINK", "urgent", &now_rfc3339(0)));
    assert_eq!(s, 202);
    let first = wait_for(LONG, || breaches(&v, "T-LINK").into_iter().next()).expect("a breach");
    let link = first.body["ack_url"].as_str().unwrap_or("").to_string();
    assert!(
        link.starts_with(&app.base) && link.contains("/v1/ack/"),
        "{link}"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let c = ::reqwest::Client::new();
    let call = |post: bool, url: &str| {
        rt.block_on(async {
            let r = if post {
                c.post(url).send().await
            } else {
                c.get(url).send().await
            }
            .expect("request");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        })
    };
    // Act + Assert: GET only shows a page with a button that POSTs; nothing acknowledged.
    let (s, page) = call(false, &link);
    assert_eq!(s, 200);
    assert!(
        page.contains("<form method=post>") && page.contains("first_response"),
        "{page}"
    );
    assert!(!timeline_has(&app, "T-LINK", "acknowledged"));
    // A tampered token is refused and changes nothing.
    let mut tampered = link.clone();
    let last = tampered.pop().unwrap_or('A');
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert!((400..500).contains(&call(true, &tampered).0));
    let (payload, _) = link.rsplit_once('.').unwrap_or((&link, ""));
    assert!((400..500).contains(&call(true, &format!("{payload}.AAAA")).0));
    assert!(!timeline_has(&app, "T-LINK", "acknowledged"));
    // POST acknowledges; the repeats stop.
    let (s, page) = call(true, &link);
    assert_eq!(s, 200, "{page}");
    assert!(timeline_has(&app, "T-LINK", "acknowledged"));
    let at_ack = breaches(&v, "T-LINK").len();
    std::thread::sleep(Duration::from_secs(4));
    let after = breaches(&v, "T-LINK").len();
    assert!(
        after <= at_ack + 1 && after < 6,
        "repeats went on: {at_ack} -> {after}"
    );
}

#[test]
fn pagerduty_gets_trigger_acknowledge_resolve_with_one_dedup_key() {
    // Arrange: on-call pages PagerDuty only.
    let smtp = Smtp::start();
    let v = Vendors::start();
    let wf = oncall_workflows(&format!(
        "supervisor: {{ email: [supervisor@test.local] }}\nmanager: {{ email: [manager@test.local] }}\noncall:\n  pagerduty: [{{ routing_key_env: SLK_PD_KEY, url: \"{}\" }}]\n",
        v.url("/pd")
    ));
    let db = TestDb::new(Backend::Sqlite);
    let app = start(&wf, &db, Some(smtp.port), vendor_env(&v));
    let (s, _) = app.post(&opened("p1", "T-PD", "urgent", &now_rfc3339(0)));
    assert_eq!(s, 202);
    let trig = wait_for(LONG, || v.at("/pd").into_iter().next());
    assert!(trig.is_some(), "no trigger: {}", app.stderr());
    // Act: acknowledge, then meet the clock.
    let ack = json!({"id": "p2", "ticket": "T-PD", "type": "escalation.acknowledged",
                     "at": now_rfc3339(0), "clock": "first_response", "by": "wang"});
    assert_eq!(app.post(&ack).0, 202);
    let _ = wait_for(LONG, || (v.at("/pd").len() >= 2).then_some(()));
    assert_eq!(
        app.post(&event("p3", "T-PD", "ticket.responded", &now_rfc3339(0)))
            .0,
        202
    );
    let all = wait_for(LONG, || {
        let g = v.at("/pd");
        g.iter()
            .any(|x| x.body["event_action"] == "resolve")
            .then_some(g)
    });
    // Assert: trigger → acknowledge → resolve, one dedup key, every event valid.
    let all = all.unwrap_or_else(|| panic!("no resolve: {:#?}\n{}", v.at("/pd"), app.stderr()));
    let actions: Vec<&str> = all
        .iter()
        .filter_map(|g| g.body["event_action"].as_str())
        .collect();
    assert_eq!(actions, ["trigger", "acknowledge", "resolve"], "{all:#?}");
    assert!(all.iter().all(|g| g.valid && g.answered == 202), "{all:#?}");
    let keys: std::collections::BTreeSet<&str> = all
        .iter()
        .filter_map(|g| g.body["dedup_key"].as_str())
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
}

//! The on-call parts of `routes.yaml`: vendor channel entries (`slack: [{ url_env: … }]`,
//! `dingtalk: [{ url_env, secret_env, at_mobiles }]`, `pagerduty: [{ routing_key_env, url }]`,
//! `http: [{ method, url|url_env, headers, headers_env, body }]` …) and rotations. Every
//! problem is a diagnostic with its position. Secrets are only ever named here (environment
//! variables); an unset variable is reported by name at load time, so `serve` refuses to start
//! with a channel that could never send rather than retrying it forever.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDate;

use super::ctx::{Ctx, sorted_by_pos, text};
use super::env::{EnvRef, EnvUse, name_ok};
use super::raw::{RawChannelEntry, RawRotation, RawRoute, RawRoutes, S, Text};
use super::routes::{ChannelEntry, Routes};
use crate::core::calendar::Calendar;
use crate::core::channel::ChannelKind;
use crate::core::rotation::{Rotation, default_start, parse_handoff};

/// A role's entries under each vendor key, in [`ChannelKind::VENDORS`] order.
fn entries(r: &RawRoute) -> [(ChannelKind, &Option<Vec<S<RawChannelEntry>>>); 7] {
    [
        (ChannelKind::Slack, &r.slack),
        (ChannelKind::Teams, &r.teams),
        (ChannelKind::Dingtalk, &r.dingtalk),
        (ChannelKind::Feishu, &r.feishu),
        (ChannelKind::Wecom, &r.wecom),
        (ChannelKind::Pagerduty, &r.pagerduty),
        (ChannelKind::Http, &r.http),
    ]
}

/// Whether a role has vendor channels or a rotation (then it needs no email or webhook).
pub(super) fn has_oncall(r: &RawRoute) -> bool {
    r.rotation.is_some() || entries(r).iter().any(|(_, e)| e.is_some())
}

/// Add each role's vendor channels and rotation to `routes`.
pub(super) fn compile_oncall(
    cx: &mut Ctx<'_>,
    raw: &RawRoutes,
    calendars: &BTreeMap<String, Arc<Calendar>>,
    routes: &mut Routes,
) {
    let roles = sorted_by_pos(raw);
    for (role, r) in &roles {
        let name = text(role);
        let mut channels = Vec::new();
        for (channel, list) in entries(&r.value) {
            for e in list.iter().flatten() {
                if let Some(c) = compile_entry(cx, channel, e) {
                    channels.push(c);
                }
            }
        }
        if let Some(route) = routes.roles.get_mut(name) {
            route.channels = channels;
        }
    }
    // Rotations last: their members are roles, checked against the whole file.
    for (role, r) in &roles {
        let Some(rot) = &r.value.rotation else {
            continue;
        };
        let name = text(role);
        let own = &r.value;
        if own.email.is_some()
            || own.webhook.is_some()
            || entries(own).iter().any(|(_, e)| e.is_some())
        {
            cx.err(
                role,
                format!(
                    "role `{name}` has a rotation and its own channels: a rotation pages its members, give the channels to them"
                ),
            );
        }
        if let Some(rotation) = compile_rotation(cx, name, rot, calendars, routes)
            && let Some(route) = routes.roles.get_mut(name)
        {
            route.rotation = Some(rotation);
        }
    }
}

fn env_set(cx: &mut Ctx<'_>, v: &S<Text>, key: &str) -> Option<String> {
    let name = text(v);
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        cx.err(
            v,
            format!("`{key}: {name}` must name an environment variable (e.g. SLK_SLACK_URL)"),
        );
        return None;
    }
    // Whether it is set is not a property of the files: `validate` warns about unset ones
    // (see [`super::env`]), `serve` refuses them.
    Some(name.to_string())
}

/// Every well-formed variable name routes.yaml gives (`url_env`, `secret_env`,
/// `routing_key_env`, `headers_env`), with its position, whatever else is wrong with it.
pub(super) fn env_refs(path: &std::path::Path, raw: &RawRoutes) -> Vec<EnvRef> {
    let mut out = Vec::new();
    let mut add = |v: &S<Text>, key: &'static str| {
        out.push(EnvRef::new(path, v, text(v), key, EnvUse::Delivery));
    };
    for (_, r) in sorted_by_pos(raw) {
        for (_, list) in entries(&r.value) {
            for e in list.iter().flatten() {
                let e = &e.value;
                let single = [
                    (&e.url_env, "url_env"),
                    (&e.secret_env, "secret_env"),
                    (&e.routing_key_env, "routing_key_env"),
                ];
                for (v, key) in single {
                    if let Some(v) = v {
                        add(v, key);
                    }
                }
                for (_, v) in e
                    .headers_env
                    .as_ref()
                    .map(sorted_by_pos)
                    .unwrap_or_default()
                {
                    add(v, "headers_env");
                }
            }
        }
    }
    out.retain(|r| name_ok(&r.name));
    out
}

/// Keys that only one channel understands, given to another.
fn misplaced_keys(cx: &mut Ctx<'_>, channel: ChannelKind, e: &S<RawChannelEntry>) {
    use ChannelKind::{Dingtalk, Feishu, Http, Pagerduty};
    let r = &e.value;
    let only =
        |key: &str, allowed: &[ChannelKind]| (!allowed.contains(&channel)).then(|| key.to_string());
    let misplaced = [
        r.secret_env
            .as_ref()
            .and_then(|_| only("secret_env", &[Dingtalk, Feishu])),
        r.routing_key_env
            .as_ref()
            .and_then(|_| only("routing_key_env", &[Pagerduty])),
        r.severity
            .as_ref()
            .and_then(|_| only("severity", &[Pagerduty])),
        r.at_mobiles
            .as_ref()
            .and_then(|_| only("at_mobiles", &[Dingtalk])),
        r.method.as_ref().and_then(|_| only("method", &[Http])),
        r.headers.as_ref().and_then(|_| only("headers", &[Http])),
        r.headers_env
            .as_ref()
            .and_then(|_| only("headers_env", &[Http])),
        r.body.as_ref().and_then(|_| only("body", &[Http])),
    ];
    for key in misplaced.into_iter().flatten() {
        cx.err(e, format!("`{key}` is not a {} setting", channel.as_str()));
    }
}

fn compile_entry(
    cx: &mut Ctx<'_>,
    channel: ChannelKind,
    e: &S<RawChannelEntry>,
) -> Option<ChannelEntry> {
    let before = cx.diags.len();
    let mut out = ChannelEntry::new(channel);
    misplaced_keys(cx, channel, e);
    entry_url(cx, e, &mut out);
    entry_keys(cx, e, &mut out);
    entry_http(cx, e, &mut out);
    (cx.diags.len() == before).then_some(out)
}

/// `url` or `url_env` (PagerDuty has a default URL).
fn entry_url(cx: &mut Ctx<'_>, e: &S<RawChannelEntry>, out: &mut ChannelEntry) {
    let r = &e.value;
    match (&r.url_env, &r.url) {
        (Some(_), Some(u)) => cx.err(u, "give `url` or `url_env`, not both"),
        (Some(v), None) => out.url_env = env_set(cx, v, "url_env"),
        (None, Some(u)) => {
            let s = text(u);
            if s.starts_with("http://") || s.starts_with("https://") {
                out.url = Some(s.to_string());
            } else {
                cx.err(u, format!("url `{s}` must be an http:// or https:// URL"));
            }
        }
        (None, None) if out.channel == ChannelKind::Pagerduty => {
            out.url = Some("https://events.pagerduty.com/v2/enqueue".into());
        }
        (None, None) => cx.err(
            e,
            format!(
                "{} entry needs `url_env: VAR` (the webhook URL carries its token)",
                out.channel.as_str()
            ),
        ),
    }
}

/// The secrets, PagerDuty's routing key and severity, DingTalk's `at_mobiles`.
fn entry_keys(cx: &mut Ctx<'_>, e: &S<RawChannelEntry>, out: &mut ChannelEntry) {
    let r = &e.value;
    if let Some(v) = &r.secret_env {
        out.secret_env = env_set(cx, v, "secret_env");
    }
    if out.channel == ChannelKind::Pagerduty {
        match &r.routing_key_env {
            Some(v) => out.routing_key_env = env_set(cx, v, "routing_key_env"),
            None => cx.err(
                e,
                "pagerduty entry needs `routing_key_env: VAR` (the integration key)",
            ),
        }
    }
    if let Some(s) = &r.severity {
        match text(s) {
            v @ ("critical" | "error" | "warning" | "info") => out.severity = Some(v.to_string()),
            v => cx.err(
                s,
                format!("severity `{v}` must be critical, error, warning or info"),
            ),
        }
    }
    for m in r.at_mobiles.iter().flatten() {
        let s = text(m);
        if s.chars()
            .all(|c| c.is_ascii_digit() || c == '+' || c == '-')
            && !s.is_empty()
        {
            out.at_mobiles.push(s.to_string());
        } else {
            cx.err(m, format!("`{s}` is not a mobile number"));
        }
    }
}

/// An `http` entry's request: method, headers, body, and the URL as a template.
fn entry_http(cx: &mut Ctx<'_>, e: &S<RawChannelEntry>, out: &mut ChannelEntry) {
    let r = &e.value;
    if let Some(m) = &r.method {
        let v = text(m).to_ascii_uppercase();
        if matches!(v.as_str(), "POST" | "PUT" | "PATCH" | "GET" | "DELETE") {
            out.method = Some(v);
        } else {
            cx.err(
                m,
                format!(
                    "method `{}` must be POST, PUT, PATCH, GET or DELETE",
                    text(m)
                ),
            );
        }
    }
    for (h, v) in r.headers.as_ref().map(sorted_by_pos).unwrap_or_default() {
        check_template(cx, v);
        out.headers.push((text(h).to_string(), text(v).to_string()));
    }
    for (h, v) in r
        .headers_env
        .as_ref()
        .map(sorted_by_pos)
        .unwrap_or_default()
    {
        if let Some(name) = env_set(cx, v, "headers_env") {
            out.headers_env.push((text(h).to_string(), name));
        }
    }
    if let Some(b) = &r.body {
        check_template(cx, b);
        out.body = Some(text(b).to_string());
    }
    if let Some(u) = &r.url
        && out.channel == ChannelKind::Http
    {
        check_template(cx, u);
    }
}

/// An `http` template must parse (MiniJinja), and may not use customer contact data.
fn check_template(cx: &mut Ctx<'_>, v: &S<Text>) {
    let src = text(v);
    if let Err(e) = minijinja::Environment::new().template_from_str(src) {
        cx.err(v, format!("template: {e}"));
    }
    if src.contains("customer.email") || src.contains("customer.phone") {
        cx.err(v, "customer contact data may not be sent to staff channels");
    }
}

fn compile_rotation(
    cx: &mut Ctx<'_>,
    name: &str,
    rot: &S<RawRotation>,
    calendars: &BTreeMap<String, Arc<Calendar>>,
    routes: &Routes,
) -> Option<Rotation> {
    let before = cx.diags.len();
    let r = &rot.value;
    let cal = calendars.get(text(&r.calendar));
    if cal.is_none() {
        cx.err(
            &r.calendar,
            format!(
                "unknown calendar `{}` (calendars.yaml defines: {})",
                text(&r.calendar),
                calendars.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        );
    }
    let handoff = parse_handoff(text(&r.handoff));
    if let Err(e) = &handoff {
        cx.err(&r.handoff, e.to_string());
    }
    let start = match &r.start {
        None => Some(default_start()),
        Some(s) => match NaiveDate::parse_from_str(text(s), "%Y-%m-%d") {
            Ok(d) => Some(d),
            Err(_) => {
                cx.err(s, format!("start `{}` is not a date (YYYY-MM-DD)", text(s)));
                None
            }
        },
    };
    let mut members = Vec::new();
    for m in &r.members.value {
        let mname = text(m);
        match routes.roles.get(mname) {
            None => cx.err(
                m,
                format!("rotation member `{mname}` is not a role in routes.yaml"),
            ),
            Some(mr) if mr.rotation.is_some() || mname == name => {
                cx.err(m, format!("rotation member `{mname}` is itself a rotation"))
            }
            Some(_) => members.push(mname.to_string()),
        }
    }
    if r.members.value.is_empty() {
        // Nobody would be on duty: every page would go nowhere.
        cx.err(
            &r.members,
            "a rotation needs at least one member (someone must be on duty at all times)",
        );
    }
    if cx.diags.len() > before {
        return None;
    }
    let (weekday, time) = handoff.ok()?;
    Some(Rotation {
        calendar: text(&r.calendar).to_string(),
        tz: cal?.tz(),
        weekday,
        time,
        members,
        start: start?,
    })
}

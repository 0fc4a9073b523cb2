//! Raw YAML → typed model, collecting every error with its position.
//!
//! Order: calendars and routes first (workflows refer to them), then templates, then each
//! workflow file, then the checks across workflows (duplicate names, overlapping `match`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use serde_saphyr::Spanned;

use super::raw::*;
use super::templates::Templates;
use super::{Config, Diag};
use crate::core::calendar::{Calendar, parse_days, parse_shifts};
use crate::core::duration::{Span, parse_span};
use crate::core::event::EventKind;
use crate::core::model::*;
use crate::core::schedule::Schedule;

/// Where a role's notifications go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route {
    pub email: Vec<String>,
    pub webhook: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Routes {
    pub roles: BTreeMap<String, Route>,
}

impl Routes {
    pub fn get(&self, role: &str) -> Option<&Route> {
        self.roles.get(role)
    }
}

struct Ctx<'a> {
    path: &'a Path,
    diags: &'a mut Vec<Diag>,
}

impl Ctx<'_> {
    fn err<T>(&mut self, at: &Spanned<T>, message: impl Into<String>) {
        self.err_at(
            at.referenced.line() as u32,
            at.referenced.column() as u32,
            message,
        );
    }
    fn err_at(&mut self, line: u32, col: u32, message: impl Into<String>) {
        self.diags.push(Diag {
            path: self.path.to_path_buf(),
            line: line.max(1),
            col: col.max(1),
            message: message.into(),
        });
    }
}

fn text(s: &Spanned<Text>) -> &str {
    s.value.0.as_str()
}

/// Parse a YAML file into `T`, turning a syntax or shape error into a diagnostic.
fn parse_yaml<T: serde::de::DeserializeOwned>(
    path: &Path,
    src: &str,
    diags: &mut Vec<Diag>,
) -> Option<T> {
    match serde_saphyr::from_str::<T>(src) {
        Ok(v) => Some(v),
        Err(e) => {
            let (line, col) = e
                .location()
                .map(|l| (l.line() as u32, l.column() as u32))
                .unwrap_or((1, 1));
            let msg = e.without_snippet().to_string();
            // The library appends its own " at line L, column C"; we print positions first.
            let msg = match msg.rfind(" at line ") {
                Some(i) => msg[..i].to_string(),
                None => msg,
            };
            diags.push(Diag {
                path: path.to_path_buf(),
                line: line.max(1),
                col: col.max(1),
                message: msg,
            });
            None
        }
    }
}

fn sorted_by_pos<K, V>(m: &HashMap<Spanned<K>, V>) -> Vec<(&Spanned<K>, &V)> {
    let mut v: Vec<_> = m.iter().collect();
    v.sort_by_key(|(k, _)| (k.referenced.line(), k.referenced.column()));
    v
}

pub fn load(dir: &Path) -> Result<Config, Vec<Diag>> {
    let mut diags = Vec::new();
    if !dir.is_dir() {
        diags.push(Diag {
            path: dir.to_path_buf(),
            line: 1,
            col: 1,
            message: "workflow directory not found (pass --workflows DIR)".into(),
        });
        return Err(diags);
    }
    let calendars = load_calendars(&dir.join("calendars.yaml"), &mut diags);
    let routes = load_routes(&dir.join("routes.yaml"), &mut diags);
    let templates = Templates::load(&dir.join("templates"), &mut diags);

    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                (name.ends_with(".yaml") || name.ends_with(".yml"))
                    && !matches!(
                        name,
                        "calendars.yaml"
                            | "calendars.yml"
                            | "routes.yaml"
                            | "routes.yml"
                            | "sources.yaml"
                    )
            })
            .collect(),
        Err(e) => {
            diags.push(Diag {
                path: dir.to_path_buf(),
                line: 1,
                col: 1,
                message: format!("cannot read directory: {e}"),
            });
            Vec::new()
        }
    };
    files.sort();
    if files.is_empty() && diags.is_empty() {
        diags.push(Diag {
            path: dir.to_path_buf(),
            line: 1,
            col: 1,
            message: "no workflow files (*.yaml) in this directory".into(),
        });
    }

    // name → (file, position of `workflow:`, position of `match:`)
    let mut seen: BTreeMap<String, (PathBuf, u32, u32)> = BTreeMap::new();
    let mut compiled: Vec<(Workflow, PathBuf, (u32, u32))> = Vec::new();
    for path in &files {
        let src = match std::fs::read_to_string(path) {
            Ok(s) => s,
            Err(e) => {
                diags.push(Diag {
                    path: path.clone(),
                    line: 1,
                    col: 1,
                    message: format!("cannot read: {e}"),
                });
                continue;
            }
        };
        let Some(raw) = parse_yaml::<RawWorkflow>(path, &src, &mut diags) else {
            continue;
        };
        let mut cx = Ctx {
            path,
            diags: &mut diags,
        };
        let name = text(&raw.workflow).to_string();
        if let Some((first, l, c)) = seen.get(&name) {
            let msg = format!(
                "duplicate workflow name `{name}` (first defined at {}:{l}:{c})",
                first.display()
            );
            cx.err(&raw.workflow, msg);
        } else {
            seen.insert(
                name.clone(),
                (
                    path.clone(),
                    raw.workflow.referenced.line() as u32,
                    raw.workflow.referenced.column() as u32,
                ),
            );
        }
        let match_pos = raw
            .matcher
            .as_ref()
            .map(|m| (m.referenced.line() as u32, m.referenced.column() as u32))
            .unwrap_or((
                raw.workflow.referenced.line() as u32,
                raw.workflow.referenced.column() as u32,
            ));
        if let Some(wf) = compile_workflow(&mut cx, &raw, &calendars, &routes, &templates) {
            compiled.push((wf, path.clone(), match_pos));
        }
    }

    // Overlapping `match` rules would make the choice of workflow depend on file order.
    for i in 0..compiled.len() {
        for j in 0..i {
            let (a, apath, _) = &compiled[j];
            let (b, bpath, bpos) = &compiled[i];
            if a.name == b.name {
                continue;
            }
            if let (Some(ma), Some(mb)) = (&a.matcher, &b.matcher)
                && ma.overlaps(mb)
            {
                diags.push(Diag {
                    path: bpath.clone(),
                    line: bpos.0,
                    col: bpos.1,
                    message: format!(
                        "match ({}) overlaps workflow `{}` in {} ({}): a ticket could match both; make the categories, channels or attributes disjoint",
                        mb.describe(),
                        a.name,
                        apath.display(),
                        ma.describe()
                    ),
                });
            }
        }
    }

    let wfs: Vec<&Workflow> = compiled.iter().map(|(w, _, _)| w).collect();
    let sources = super::sources::load(dir, &wfs, &mut diags);
    if !diags.is_empty() {
        diags.sort();
        diags.dedup();
        return Err(diags);
    }
    let mut catalog = Catalog::default();
    let mut names = BTreeMap::new();
    for (wf, path, _) in compiled {
        names.insert(wf.name.clone(), path);
        catalog.workflows.insert(wf.name.clone(), Arc::new(wf));
    }
    Ok(Config {
        dir: dir.to_path_buf(),
        catalog,
        routes,
        templates,
        files: names,
        sources,
    })
}

fn load_calendars(path: &Path, diags: &mut Vec<Diag>) -> BTreeMap<String, Arc<Calendar>> {
    let mut out = BTreeMap::new();
    // `always` exists even without a calendars file; a file may redefine it (e.g. to give
    // it a time zone for display and the review cron).
    out.insert("always".to_string(), Arc::new(Calendar::always()));
    let Ok(src) = std::fs::read_to_string(path) else {
        return out;
    };
    let Some(raw) = parse_yaml::<RawCalendars>(path, &src, diags) else {
        return out;
    };
    let mut cx = Ctx { path, diags };
    for (name, cal) in sorted_by_pos(&raw.calendars) {
        let tz: chrono_tz::Tz = match text(&cal.value.timezone).parse() {
            Ok(tz) => tz,
            Err(_) => {
                let msg = format!(
                    "unknown time zone `{}` (use an IANA name such as Asia/Shanghai)",
                    text(&cal.value.timezone)
                );
                cx.err(&cal.value.timezone, msg);
                continue;
            }
        };
        let mut weekly: [Vec<crate::core::calendar::Shift>; 7] = Default::default();
        let mut ok = true;
        for (days, shifts) in sorted_by_pos(&cal.value.hours) {
            let d = match parse_days(text(days)) {
                Ok(d) => d,
                Err(e) => {
                    cx.err(days, e.to_string());
                    ok = false;
                    continue;
                }
            };
            let s = match parse_shifts(text(shifts)) {
                Ok(s) => s,
                Err(e) => {
                    cx.err(shifts, e.to_string());
                    ok = false;
                    continue;
                }
            };
            for i in d {
                if !weekly[i].is_empty() {
                    cx.err(
                        days,
                        format!("`{}` gives hours for a day twice", text(days)),
                    );
                    ok = false;
                }
                weekly[i] = s.clone();
            }
        }
        let mut dates = |list: &Option<Vec<Spanned<Text>>>, what: &str, cx: &mut Ctx<'_>| {
            let mut set = BTreeSet::new();
            for d in list.iter().flatten() {
                match NaiveDate::parse_from_str(text(d), "%Y-%m-%d") {
                    Ok(date) => {
                        set.insert(date);
                    }
                    Err(_) => {
                        cx.err(
                            d,
                            format!("`{}` is not a {what} date (YYYY-MM-DD)", text(d)),
                        );
                        ok = false;
                    }
                }
            }
            set
        };
        let holidays = dates(&cal.value.holidays, "holiday", &mut cx);
        let workdays = dates(&cal.value.workdays, "make-up working day", &mut cx);
        if !ok {
            continue;
        }
        if text(name) == "always" {
            // `always` may be given a zone (display, review cron) but must stay 24/7.
            let all_day = weekly.iter().all(|d| {
                d.len() == 1 && d[0].start == chrono::NaiveTime::MIN && d[0].ends_at_midnight()
            });
            if !all_day || !holidays.is_empty() || !workdays.is_empty() {
                cx.err(
                    name,
                    "calendar `always` must be 24/7 (hours: { mon-sun: \"00:00-24:00\" }, no holidays or workdays); give business hours another name",
                );
            } else {
                out.insert("always".to_string(), Arc::new(Calendar::always_in(tz)));
            }
            continue;
        }
        match Calendar::new(text(name), tz, weekly, holidays, workdays) {
            Ok(c) => {
                out.insert(text(name).to_string(), Arc::new(c));
            }
            Err(e) => cx.err(name, format!("calendar `{}`: {e}", text(name))),
        }
    }
    out
}

fn load_routes(path: &Path, diags: &mut Vec<Diag>) -> Routes {
    let mut routes = Routes::default();
    let Ok(src) = std::fs::read_to_string(path) else {
        return routes;
    };
    let Some(raw) = parse_yaml::<RawRoutes>(path, &src, diags) else {
        return routes;
    };
    let mut cx = Ctx { path, diags };
    for (role, r) in sorted_by_pos(&raw) {
        let name = text(role);
        if matches!(name, "customer" | "assignee") {
            cx.err(
                role,
                format!("`{name}` is addressed from ticket events and cannot be routed"),
            );
            continue;
        }
        let mut route = Route::default();
        for e in r.value.email.iter().flatten() {
            let s = text(e);
            if s.contains('@') && !s.contains(char::is_whitespace) {
                route.email.push(s.to_string());
            } else {
                cx.err(e, format!("`{s}` is not an email address"));
            }
        }
        for w in r.value.webhook.iter().flatten() {
            let s = text(w);
            if s.starts_with("http://") || s.starts_with("https://") {
                route.webhook.push(s.to_string());
            } else {
                cx.err(
                    w,
                    format!("webhook `{s}` must be an http:// or https:// URL"),
                );
            }
        }
        if route.email.is_empty() && route.webhook.is_empty() {
            cx.err(role, format!("role `{name}` has no email and no webhook"));
        }
        routes.roles.insert(name.to_string(), route);
    }
    routes
}

const RESERVED_KEYS: [&str; 4] = ["by", "calendar", "met_by", "default"];

fn valid_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn compile_span(cx: &mut Ctx<'_>, s: &Spanned<Text>) -> Option<Span> {
    match parse_span(text(s)) {
        Ok(span) => Some(span),
        Err(e) => {
            cx.err(s, format!("bad duration `{}`: {e}", text(s)));
            None
        }
    }
}

/// A target table; `allow_meta` permits `calendar` / `met_by` (clock tables only).
#[allow(clippy::too_many_arguments)]
fn compile_targets(
    cx: &mut Ctx<'_>,
    what: &str,
    table: &Spanned<RawTable>,
    priorities: &[String],
    calendars: &BTreeMap<String, Arc<Calendar>>,
    allow_meta: bool,
) -> Option<(Targets, Option<Arc<Calendar>>, Option<MetBy>)> {
    let mut ok = true;
    let mut by = Dimension::Priority;
    let mut calendar = None;
    let mut met_by = None;
    if let Some((k, v)) = table.value.iter().find(|(k, _)| text(k) == "by") {
        let _ = k;
        by = match text(v) {
            "priority" => Dimension::Priority,
            "category" => Dimension::Category,
            "channel" => Dimension::Channel,
            other => match other.strip_prefix("attributes.") {
                Some(a) if !a.is_empty() => Dimension::Attribute(a.to_string()),
                _ => {
                    cx.err(
                        v,
                        format!(
                            "`by: {other}` must be priority, category, channel or attributes.<name>"
                        ),
                    );
                    ok = false;
                    Dimension::Priority
                }
            },
        };
    }
    let mut values = BTreeMap::new();
    let mut default = None;
    for (k, v) in sorted_by_pos(&table.value) {
        let key = text(k);
        match key {
            "by" => {}
            "calendar" if allow_meta => match calendars.get(text(v)) {
                Some(c) => calendar = Some(c.clone()),
                None => {
                    cx.err(
                        v,
                        format!(
                            "unknown calendar `{}` (calendars.yaml defines: {})",
                            text(v),
                            calendars.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    );
                    ok = false;
                }
            },
            "met_by" if allow_meta => {
                let ev = text(v);
                if EventKind::parse(ev).is_some() {
                    met_by = Some(if ev == "clock.met" {
                        MetBy::Milestone
                    } else {
                        MetBy::Event(ev.to_string())
                    });
                } else {
                    cx.err(
                        v,
                        format!(
                            "`met_by: {ev}` is not an event type (one of: {})",
                            EventKind::ALL.map(|k| k.as_str()).join(", ")
                        ),
                    );
                    ok = false;
                }
            }
            "calendar" | "met_by" => {
                cx.err(k, format!("`{key}` is only allowed in an SLA clock table"));
                ok = false;
            }
            "default" => {
                default = compile_span(cx, v).or_else(|| {
                    ok = false;
                    None
                })
            }
            _ => {
                if by == Dimension::Priority && !priorities.iter().any(|p| p == key) {
                    cx.err(
                        k,
                        format!(
                            "{what}: priority `{key}` is not declared in `priorities` ({})",
                            priorities.join(", ")
                        ),
                    );
                    ok = false;
                    continue;
                }
                match compile_span(cx, v) {
                    Some(s) => {
                        values.insert(key.to_string(), s);
                    }
                    None => ok = false,
                }
            }
        }
    }
    if values.is_empty() && default.is_none() && ok {
        cx.err(
            table,
            format!("{what}: no targets (add `default: …` or one per {by})"),
        );
        ok = false;
    }
    ok.then_some((
        Targets {
            by,
            values,
            default,
        },
        calendar,
        met_by,
    ))
}

fn compile_roles(
    cx: &mut Ctx<'_>,
    list: &Spanned<Vec<Spanned<Text>>>,
    routes: &Routes,
    per_ticket: bool,
) -> Vec<Role> {
    if list.value.is_empty() {
        cx.err(list, "`notify` needs at least one role");
    }
    let mut out = Vec::new();
    for r in &list.value {
        let role = Role::parse(text(r));
        match &role {
            Role::Customer | Role::Assignee if !per_ticket => {
                cx.err(
                    r,
                    format!(
                        "`{}` is a per-ticket role; the review report goes to roles in routes.yaml",
                        role
                    ),
                );
            }
            Role::Named(n) if routes.get(n).is_none() => {
                cx.err(
                    r,
                    format!(
                        "role `{n}` is not in routes.yaml (known roles: customer, assignee{})",
                        routes
                            .roles
                            .keys()
                            .map(|k| format!(", {k}"))
                            .collect::<String>()
                    ),
                );
            }
            _ => out.push(role),
        }
    }
    out
}

fn compile_template(
    cx: &mut Ctx<'_>,
    t: &Spanned<Text>,
    languages: &[String],
    templates: &Templates,
) -> String {
    let name = text(t);
    for lang in languages {
        if !templates.has(name, lang) {
            cx.err(
                t,
                format!(
                    "template `{name}` has no {lang} version (expected templates/{name}.{lang}.txt)"
                ),
            );
        }
    }
    name.to_string()
}

fn compile_workflow(
    cx: &mut Ctx<'_>,
    raw: &RawWorkflow,
    calendars: &BTreeMap<String, Arc<Calendar>>,
    routes: &Routes,
    templates: &Templates,
) -> Option<Workflow> {
    let before = cx.diags.len();
    let name = text(&raw.workflow).to_string();
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        || name.is_empty()
    {
        cx.err(
            &raw.workflow,
            format!("workflow name `{name}` may only use letters, digits, `-` and `_`"),
        );
    }

    // priorities
    let mut priorities = Vec::new();
    for p in &raw.priorities.value {
        let s = text(p).to_string();
        if RESERVED_KEYS.contains(&s.as_str()) {
            cx.err(p, format!("`{s}` is reserved and cannot be a priority"));
        } else if priorities.contains(&s) {
            cx.err(p, format!("priority `{s}` is listed twice"));
        } else {
            priorities.push(s);
        }
    }
    if raw.priorities.value.is_empty() {
        cx.err(
            &raw.priorities,
            "`priorities` must list at least one priority",
        );
    }

    // calendar
    let calendar = match &raw.calendar {
        None => calendars
            .get("always")
            .cloned()
            .unwrap_or_else(|| Arc::new(Calendar::always())),
        Some(c) => match calendars.get(text(c)) {
            Some(cal) => cal.clone(),
            None => {
                cx.err(
                    c,
                    format!(
                        "unknown calendar `{}` (calendars.yaml defines: {})",
                        text(c),
                        calendars.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
                Arc::new(Calendar::always())
            }
        },
    };

    // languages
    let language = raw
        .language
        .as_ref()
        .map(|l| text(l).to_string())
        .unwrap_or_else(|| "en".to_string());
    let mut languages = vec![language.clone()];
    for l in raw.languages.iter().flat_map(|l| l.value.iter()) {
        let s = text(l).to_string();
        if !languages.contains(&s) {
            languages.push(s);
        }
    }

    // match
    let matcher = raw.matcher.as_ref().map(|m| {
        let set = |v: &Option<Spanned<Vec<Spanned<Text>>>>| {
            v.as_ref().map(|l| {
                l.value
                    .iter()
                    .map(|x| text(x).to_string())
                    .collect::<BTreeSet<_>>()
            })
        };
        let attributes = m
            .value
            .attributes
            .iter()
            .flatten()
            .map(|(k, v)| {
                (
                    text(k).to_string(),
                    v.value.iter().map(|x| text(x).to_string()).collect(),
                )
            })
            .collect();
        let mm = Match {
            categories: set(&m.value.categories),
            channels: set(&m.value.channels),
            attributes,
        };
        if mm.categories.as_ref().is_some_and(BTreeSet::is_empty)
            || mm.channels.as_ref().is_some_and(BTreeSet::is_empty)
        {
            cx.err(
                m,
                "an empty list in `match` matches nothing; remove it or add values",
            );
        }
        mm
    });

    // stages
    let mut clocks: Vec<ClockSpec> = Vec::new();
    let mut progress = None;
    let mut survey = None;
    let mut rules = Vec::new();
    let mut review = None;
    let empty = RawStages::default();
    let stages = raw.stages.as_ref().map(|s| &s.value).unwrap_or(&empty);

    let add_sla = |cx: &mut Ctx<'_>,
                   stage: Stage,
                   sla: &Option<HashMap<Spanned<Text>, Spanned<RawTable>>>,
                   clocks: &mut Vec<ClockSpec>| {
        let Some(sla) = sla else {
            return;
        };
        for (cname, table) in sorted_by_pos(sla) {
            let n = text(cname);
            if !valid_ident(n) {
                cx.err(cname, format!("clock name `{n}` must be lower_snake_case"));
                continue;
            }
            if n == PROGRESS || n == CALLBACK {
                cx.err(
                    cname,
                    format!(
                        "`{n}` is reserved: {}",
                        if n == PROGRESS {
                            "set the interval under execution.progress_updates.every"
                        } else {
                            "a score rule's `callback: {{ within: … }}` declares it"
                        }
                    ),
                );
                continue;
            }
            if clocks.iter().any(|c| c.name == n) {
                cx.err(cname, format!("clock `{n}` is declared twice"));
                continue;
            }
            let Some((targets, cal, met_by)) = compile_targets(
                cx,
                &format!("clock {n}"),
                table,
                &priorities,
                calendars,
                true,
            ) else {
                continue;
            };
            let met_by = met_by.unwrap_or_else(|| match n {
                FIRST_RESPONSE => MetBy::Event("ticket.responded".into()),
                RESOLUTION => MetBy::Event("ticket.resolved".into()),
                PLAN => MetBy::Event("ticket.plan_agreed".into()),
                _ => MetBy::Milestone,
            });
            clocks.push(ClockSpec {
                name: n.to_string(),
                stage,
                targets,
                calendar: cal.unwrap_or_else(|| calendar.clone()),
                met_by,
            });
        }
    };
    if let Some(s) = &stages.intake {
        add_sla(cx, Stage::Intake, &s.value.sla, &mut clocks);
    }
    if let Some(s) = &stages.diagnosis {
        add_sla(cx, Stage::Diagnosis, &s.value.sla, &mut clocks);
    }
    if let Some(s) = &stages.execution {
        add_sla(cx, Stage::Execution, &s.value.sla, &mut clocks);
        if let Some(p) = &s.value.progress_updates {
            let every = compile_targets(
                cx,
                "progress_updates.every",
                &p.value.every,
                &priorities,
                calendars,
                false,
            );
            let notify = compile_roles(cx, &p.value.notify, routes, true);
            let template = compile_template(cx, &p.value.template, &languages, templates);
            if let Some((every, _, _)) = every {
                progress = Some(ProgressSpec {
                    every,
                    notify,
                    template,
                    skip_if_updated: p.value.skip_if_updated.as_ref().is_some_and(|b| b.value),
                });
            }
        }
    }
    if let Some(f) = &stages.feedback {
        add_sla(cx, Stage::Feedback, &f.value.sla, &mut clocks);
        if let Some(s) = &f.value.survey {
            let after = compile_span(cx, &s.value.after);
            let notify = compile_roles(cx, &s.value.notify, routes, true);
            let template = compile_template(cx, &s.value.template, &languages, templates);
            if let Some(after) = after {
                survey = Some(SurveySpec {
                    after,
                    notify,
                    template,
                });
            }
        }
        for r in f.value.rules.iter().flat_map(|r| r.value.iter()) {
            let score = |cx: &mut Ctx<'_>, v: &Option<Spanned<Text>>| -> Option<u8> {
                let v = v.as_ref()?;
                match text(v).parse::<u8>() {
                    Ok(n @ 1..=5) => Some(n),
                    _ => {
                        cx.err(
                            v,
                            format!("score `{}` must be an integer from 1 to 5", text(v)),
                        );
                        None
                    }
                }
            };
            let when = ScoreCondition {
                at_most: score(cx, &r.value.when.value.score_at_most),
                at_least: score(cx, &r.value.when.value.score_at_least),
            };
            if when.at_most.is_none() && when.at_least.is_none() {
                cx.err(
                    &r.value.when,
                    "`when` needs score_at_most and/or score_at_least (1-5)",
                );
            }
            let callback = r.value.callback.as_ref().and_then(|c| {
                let within = compile_span(cx, &c.value.within);
                let notify = compile_roles(cx, &c.value.notify, routes, true);
                let template = compile_template(cx, &c.value.template, &languages, templates);
                within.map(|within| CallbackSpec {
                    within,
                    notify,
                    template,
                })
            });
            let send = r.value.send.as_ref().map(|s| Send {
                notify: compile_roles(cx, &s.value.notify, routes, true),
                template: compile_template(cx, &s.value.template, &languages, templates),
            });
            let reopen = r.value.reopen.as_ref().is_some_and(|b| b.value);
            if r.value.callback.is_none() && send.is_none() && !reopen {
                cx.err(r, "a rule needs an action: callback, send or reopen: true");
            }
            rules.push(ScoreRule {
                when,
                callback,
                send,
                reopen,
            });
        }
        let callbacks: Vec<&CallbackSpec> =
            rules.iter().filter_map(|r| r.callback.as_ref()).collect();
        if callbacks.windows(2).any(|w| w[0].within != w[1].within)
            && let Some(r) = &f.value.rules
        {
            cx.err(
                r,
                "all call-back rules must use the same `within` (one `callback` clock)",
            );
        }
    }
    if let Some(r) = &stages.review {
        let tz = calendar.tz();
        let schedule = match Schedule::parse(text(&r.value.schedule), tz) {
            Ok(s) => Some(s),
            Err(e) => {
                cx.err(&r.value.schedule, e.to_string());
                None
            }
        };
        let notify = compile_roles(cx, &r.value.notify, routes, false);
        let template = compile_template(cx, &r.value.template, &languages, templates);
        if let Some(schedule) = schedule {
            review = Some(ReviewSpec {
                schedule,
                expression: text(&r.value.schedule).to_string(),
                notify,
                template,
            });
        }
    }

    // escalations
    let has_callback = rules.iter().any(|r| r.callback.is_some());
    let mut escalations = Vec::new();
    for (i, e) in raw
        .escalations
        .iter()
        .flat_map(|l| l.value.iter())
        .enumerate()
    {
        let c = text(&e.value.clock);
        let clock = if c == "any" {
            Some(ClockSelector::Any)
        } else if clocks.iter().any(|k| k.name == c)
            || (c == CALLBACK && has_callback)
            || (c == PROGRESS && progress.is_some())
        {
            Some(ClockSelector::Named(c.to_string()))
        } else {
            // `any` first: with no clock declared (or none compiled) the list is just `any`.
            let mut known: Vec<String> = vec!["any".into()];
            known.extend(clocks.iter().map(|k| k.name.clone()));
            if has_callback {
                known.push(CALLBACK.into());
            }
            if progress.is_some() {
                known.push(PROGRESS.into());
            }
            cx.err(
                &e.value.clock,
                format!(
                    "escalation on unknown clock `{c}` (this workflow has: {})",
                    known.join(", ")
                ),
            );
            None
        };
        let at_s = text(&e.value.at).trim().to_string();
        let at = if let Some(p) = at_s.strip_suffix('%') {
            match p.trim().parse::<u32>() {
                Ok(n @ 1..=100) => Some(EscalateAt::Share(n)),
                Ok(n) => {
                    cx.err(
                        &e.value.at,
                        format!(
                            "`at: {n}%` is out of range: a share must be 1%-100% (after the breach, use an offset such as +4h)"
                        ),
                    );
                    None
                }
                Err(_) => {
                    cx.err(
                        &e.value.at,
                        format!("`at: {at_s}` is not a percentage such as 75%"),
                    );
                    None
                }
            }
        } else if let Some(off) = at_s.strip_prefix('+') {
            match parse_span(off) {
                Ok(s) => Some(EscalateAt::After(s)),
                Err(err) => {
                    cx.err(&e.value.at, format!("`at: {at_s}`: bad offset: {err}"));
                    None
                }
            }
        } else {
            cx.err(
                &e.value.at,
                format!(
                    "`at: {at_s}` must be a share of the target (75%, 100%) or an offset after the breach (+4h)"
                ),
            );
            None
        };
        let notify = compile_roles(cx, &e.value.notify, routes, true);
        let template = compile_template(cx, &e.value.template, &languages, templates);
        if let (Some(clock), Some(at)) = (clock, at) {
            escalations.push(Escalation {
                clock,
                at,
                notify,
                template,
                level: i as u32 + 1,
            });
        }
    }

    if cx.diags.len() > before {
        return None;
    }
    Some(Workflow {
        name,
        matcher,
        calendar,
        language,
        languages,
        priorities,
        clocks,
        progress,
        survey,
        rules,
        review,
        escalations,
    })
}

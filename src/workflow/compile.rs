//! Raw YAML values → the typed model, collecting every error with its position. Nothing here
//! reads files (that is [`super::load`]); each section of a workflow file has its own
//! function, in file order: name, priorities, calendar, languages, `match`, the stages (SLA
//! clocks, progress updates, survey and score rules, review) and the escalations.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use serde_saphyr::Spanned;

use super::ctx::{Ctx, pos, sorted_by_pos, text};
use super::diag::Diag;
use super::raw::*;
use super::routes::{Route, Routes};
use super::templates::Templates;
use super::{coverage, oncall};
use crate::core::calendar::{Calendar, Shift, parse_days, parse_shifts};
use crate::core::duration::{Span, parse_span};
use crate::core::event::EventKind;
use crate::core::model::*;
use crate::core::schedule::Schedule;

/// What every workflow file may refer to: the shared files of the directory, and the moment
/// of validation (a review schedule must tick within five years of it).
pub(super) struct Env<'a> {
    pub calendars: &'a BTreeMap<String, Arc<Calendar>>,
    pub routes: &'a Routes,
    pub templates: &'a Templates,
    pub now: DateTime<Utc>,
}

/// A compiled workflow with where it came from, for the checks across files.
pub(super) struct Compiled {
    pub workflow: Workflow,
    pub path: PathBuf,
    /// Position of `match:` (or of `workflow:` when there is none), for overlap messages.
    pub match_pos: (u32, u32),
}

/// Workflow name → (file, position of `workflow:`), including files that failed to compile,
/// so a duplicate name is reported whatever else is wrong.
pub(super) type Seen = BTreeMap<String, (PathBuf, u32, u32)>;

/// Compile one workflow file, checking its name against the files before it.
pub(super) fn compile_file(
    cx: &mut Ctx<'_>,
    raw: &RawWorkflow,
    env: &Env<'_>,
    seen: &mut Seen,
) -> Option<Compiled> {
    let name = text(&raw.workflow).to_string();
    let (line, col) = pos(&raw.workflow);
    if let Some((first, l, c)) = seen.get(&name) {
        let msg = format!(
            "duplicate workflow name `{name}` (first defined at {}:{l}:{c})",
            first.display()
        );
        cx.err(&raw.workflow, msg);
    } else {
        seen.insert(name, (cx.path.to_path_buf(), line, col));
    }
    let match_pos = raw.matcher.as_ref().map(pos).unwrap_or((line, col));
    compile_workflow(cx, raw, env).map(|workflow| Compiled {
        workflow,
        path: cx.path.to_path_buf(),
        match_pos,
    })
}

/// Overlapping `match` rules would make the choice of workflow depend on file order.
pub(super) fn check_overlaps(compiled: &[Compiled], diags: &mut Vec<Diag>) {
    for i in 0..compiled.len() {
        for j in 0..i {
            let (a, b) = (&compiled[j], &compiled[i]);
            if a.workflow.name == b.workflow.name {
                continue;
            }
            if let (Some(ma), Some(mb)) = (&a.workflow.matcher, &b.workflow.matcher)
                && ma.overlaps(mb)
            {
                diags.push(Diag {
                    path: b.path.clone(),
                    line: b.match_pos.0,
                    col: b.match_pos.1,
                    message: format!(
                        "match ({}) overlaps workflow `{}` in {} ({}): a ticket could match both; make the categories, channels or attributes disjoint",
                        mb.describe(),
                        a.workflow.name,
                        a.path.display(),
                        ma.describe()
                    ),
                });
            }
        }
    }
}

// ------------------------------------------------------------------ calendars and routes

/// `calendars.yaml` (None: no file). `always` exists even without one; a file may redefine
/// it (e.g. to give it a time zone for display and the review cron).
pub(super) fn compile_calendars(
    cx: &mut Ctx<'_>,
    raw: Option<&RawCalendars>,
) -> BTreeMap<String, Arc<Calendar>> {
    let mut out = BTreeMap::new();
    out.insert("always".to_string(), Arc::new(Calendar::always()));
    for (name, cal) in raw.map(|r| sorted_by_pos(&r.calendars)).unwrap_or_default() {
        if let Some(c) = compile_calendar(cx, name, &cal.value) {
            out.insert(text(name).to_string(), Arc::new(c));
        }
    }
    out
}

fn compile_calendar(cx: &mut Ctx<'_>, name: &Spanned<Text>, cal: &RawCalendar) -> Option<Calendar> {
    let Ok(tz) = text(&cal.timezone).parse::<chrono_tz::Tz>() else {
        let msg = format!(
            "unknown time zone `{}` (use an IANA name such as Asia/Shanghai)",
            text(&cal.timezone)
        );
        cx.err(&cal.timezone, msg);
        return None;
    };
    let weekly = weekly_hours(cx, &cal.hours);
    let holidays = dates(cx, &cal.holidays, "holiday");
    let workdays = dates(cx, &cal.workdays, "make-up working day");
    let years = coverage::years(cx, cal.years.as_ref());
    let (weekly, holidays, workdays, years) = (weekly?, holidays?, workdays?, years.ok()?);
    if text(name) == "always" {
        // `always` may be given a zone (display, review cron) but must stay 24/7.
        let all_day = weekly.iter().all(|d| {
            d.len() == 1 && d[0].start == chrono::NaiveTime::MIN && d[0].ends_at_midnight()
        });
        if !all_day || !holidays.is_empty() || !workdays.is_empty() || years.is_some() {
            cx.err(
                name,
                "calendar `always` must be 24/7 (hours: { mon-sun: \"00:00-24:00\" }, no holidays, workdays or years); give business hours another name",
            );
            return None;
        }
        return Some(Calendar::always_in(tz));
    }
    match Calendar::new(text(name), tz, weekly, holidays, workdays) {
        Ok(c) => Some(match years {
            Some(y) => c.with_years(y),
            None => c,
        }),
        Err(e) => {
            cx.err(name, format!("calendar `{}`: {e}", text(name)));
            None
        }
    }
}

/// `hours: { mon-fri: "09:00-12:00,13:00-18:00" }` → shifts per weekday (Monday first).
fn weekly_hours(
    cx: &mut Ctx<'_>,
    hours: &HashMap<Spanned<Text>, Spanned<Text>>,
) -> Option<[Vec<Shift>; 7]> {
    let mut weekly: [Vec<Shift>; 7] = Default::default();
    let mut ok = true;
    for (days, shifts) in sorted_by_pos(hours) {
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
    ok.then_some(weekly)
}

fn dates(
    cx: &mut Ctx<'_>,
    list: &Option<Vec<Spanned<Text>>>,
    what: &str,
) -> Option<BTreeSet<NaiveDate>> {
    let mut set = BTreeSet::new();
    let mut ok = true;
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
    ok.then_some(set)
}

/// `routes.yaml` with its vendor channels and rotations: [`compile_routes`] for email and
/// webhooks, then each role's channel entries and rotation, which need the calendars.
pub(super) fn compile_routes_with(
    cx: &mut Ctx<'_>,
    raw: &RawRoutes,
    calendars: &BTreeMap<String, Arc<Calendar>>,
) -> Routes {
    let mut routes = compile_routes(cx, raw);
    oncall::compile_oncall(cx, raw, calendars, &mut routes);
    routes
}

/// `routes.yaml`: role → email addresses and webhooks.
pub(super) fn compile_routes(cx: &mut Ctx<'_>, raw: &RawRoutes) -> Routes {
    let mut routes = Routes::default();
    for (role, r) in sorted_by_pos(raw) {
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
        if route.email.is_empty() && route.webhook.is_empty() && !oncall::has_oncall(&r.value) {
            cx.err(role, format!("role `{name}` has no email and no webhook"));
        }
        routes.roles.insert(name.to_string(), route);
    }
    routes
}

// ------------------------------------------------------------------ shared pieces

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

/// What one workflow's sections may refer to once its head is compiled.
struct Scope<'a> {
    env: &'a Env<'a>,
    priorities: &'a [String],
    calendar: &'a Arc<Calendar>,
    languages: &'a [String],
}

/// A target table and the clock-only keys it may carry.
struct Table {
    targets: Targets,
    calendar: Option<Arc<Calendar>>,
    met_by: Option<MetBy>,
}

fn target_dimension(cx: &mut Ctx<'_>, v: &Spanned<Text>) -> Option<Dimension> {
    match text(v) {
        "priority" => Some(Dimension::Priority),
        "category" => Some(Dimension::Category),
        "channel" => Some(Dimension::Channel),
        other => match other.strip_prefix("attributes.") {
            Some(a) if !a.is_empty() => Some(Dimension::Attribute(a.to_string())),
            _ => {
                cx.err(
                    v,
                    format!(
                        "`by: {other}` must be priority, category, channel or attributes.<name>"
                    ),
                );
                None
            }
        },
    }
}

fn compile_met_by(cx: &mut Ctx<'_>, v: &Spanned<Text>) -> Option<MetBy> {
    match EventKind::parse(text(v)) {
        Some(EventKind::ClockMet) => Some(MetBy::Milestone),
        Some(kind) => Some(MetBy::Event(kind)),
        None => {
            cx.err(
                v,
                format!(
                    "`met_by: {}` is not an event type (one of: {})",
                    text(v),
                    EventKind::ALL.map(|k| k.as_str()).join(", ")
                ),
            );
            None
        }
    }
}

/// A target table; `allow_meta` permits `calendar` / `met_by` (clock tables only).
fn compile_targets(
    cx: &mut Ctx<'_>,
    what: &str,
    table: &Spanned<RawTable>,
    sc: &Scope<'_>,
    allow_meta: bool,
) -> Option<Table> {
    let mut ok = true;
    let by = match table.value.iter().find(|(k, _)| text(k) == "by") {
        Some((_, v)) => target_dimension(cx, v).unwrap_or_else(|| {
            ok = false;
            Dimension::Priority
        }),
        None => Dimension::Priority,
    };
    let mut out = Table {
        targets: Targets {
            by,
            values: BTreeMap::new(),
            default: None,
        },
        calendar: None,
        met_by: None,
    };
    for (k, v) in sorted_by_pos(&table.value) {
        ok &= target_entry(cx, what, k, v, sc, allow_meta, &mut out);
    }
    let t = &out.targets;
    if t.values.is_empty() && t.default.is_none() && ok {
        cx.err(
            table,
            format!("{what}: no targets (add `default: …` or one per {})", t.by),
        );
        ok = false;
    }
    ok.then_some(out)
}

/// One `key: value` of a target table; false when it is in error.
fn target_entry(
    cx: &mut Ctx<'_>,
    what: &str,
    k: &Spanned<Text>,
    v: &Spanned<Text>,
    sc: &Scope<'_>,
    allow_meta: bool,
    out: &mut Table,
) -> bool {
    let key = text(k);
    match key {
        "by" => true,
        "calendar" if allow_meta => {
            out.calendar = pick_calendar(cx, v, sc.env.calendars);
            out.calendar.is_some()
        }
        "met_by" if allow_meta => {
            out.met_by = compile_met_by(cx, v);
            out.met_by.is_some()
        }
        "calendar" | "met_by" => {
            cx.err(k, format!("`{key}` is only allowed in an SLA clock table"));
            false
        }
        "default" => {
            out.targets.default = compile_span(cx, v);
            out.targets.default.is_some()
        }
        _ => {
            if out.targets.by == Dimension::Priority && !sc.priorities.iter().any(|p| p == key) {
                cx.err(
                    k,
                    format!(
                        "{what}: priority `{key}` is not declared in `priorities` ({})",
                        sc.priorities.join(", ")
                    ),
                );
                return false;
            }
            match compile_span(cx, v) {
                Some(s) => {
                    out.targets.values.insert(key.to_string(), s);
                    true
                }
                None => false,
            }
        }
    }
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

fn compile_template(cx: &mut Ctx<'_>, t: &Spanned<Text>, sc: &Scope<'_>) -> String {
    let name = text(t);
    for lang in sc.languages {
        if !sc.env.templates.has(name, lang) {
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

/// `notify:` and `template:` of a message-sending section.
fn compile_send(
    cx: &mut Ctx<'_>,
    notify: &Spanned<Vec<Spanned<Text>>>,
    template: &Spanned<Text>,
    sc: &Scope<'_>,
    per_ticket: bool,
) -> (Vec<Role>, String) {
    (
        compile_roles(cx, notify, sc.env.routes, per_ticket),
        compile_template(cx, template, sc),
    )
}

// ------------------------------------------------------------------ the workflow head

fn compile_workflow(cx: &mut Ctx<'_>, raw: &RawWorkflow, env: &Env<'_>) -> Option<Workflow> {
    let before = cx.diags.len();
    let name = compile_name(cx, &raw.workflow);
    let priorities = compile_priorities(cx, &raw.priorities);
    let calendar = match &raw.calendar {
        None => env
            .calendars
            .get("always")
            .cloned()
            .unwrap_or_else(|| Arc::new(Calendar::always())),
        Some(c) => {
            pick_calendar(cx, c, env.calendars).unwrap_or_else(|| Arc::new(Calendar::always()))
        }
    };
    let (language, languages) = compile_languages(raw);
    let matcher = raw.matcher.as_ref().map(|m| compile_match(cx, m));
    let sc = Scope {
        env,
        priorities: &priorities,
        calendar: &calendar,
        languages: &languages,
    };
    let stages = compile_stages(cx, raw.stages.as_ref(), &sc);
    let escalations = compile_escalations(cx, raw.escalations.as_ref(), &sc, &stages);
    let kpis = raw
        .kpis
        .as_ref()
        .map(|k| compile_kpis(cx, k))
        .unwrap_or_default();
    let close_after = raw.close_after.as_ref().and_then(|s| compile_span(cx, s));
    let personal = compile_personal(cx, raw, matcher.as_ref(), &stages);
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
        clocks: stages.clocks,
        progress: stages.progress,
        survey: stages.survey,
        rules: stages.rules,
        review: stages.review,
        escalations,
        kpis,
        close_after,
        personal,
    })
}

/// `attributes: { order: { personal: true } }`: the attributes `slakeeper erase` removes.
/// A personal attribute may not choose the workflow (`match`) or a target (`by:`): erasing
/// it would change which workflow or target a rebuild picks, and clocks must survive erasure.
fn compile_personal(
    cx: &mut Ctx<'_>,
    raw: &RawWorkflow,
    matcher: Option<&crate::core::model::Match>,
    stages: &Stages,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Some(attrs) = &raw.attributes else {
        return out;
    };
    let by_attribute = |name: &str| {
        stages
            .clocks
            .iter()
            .map(|c| &c.targets.by)
            .chain(stages.progress.iter().map(|p| &p.every.by))
            .any(|d| matches!(d, Dimension::Attribute(a) if a == name))
    };
    for (name, a) in sorted_by_pos(&attrs.value) {
        let Some(flag) = &a.value.personal else {
            continue;
        };
        let personal = match text(flag) {
            "true" => true,
            "false" => false,
            other => {
                cx.err(flag, format!("`personal: {other}` must be true or false"));
                continue;
            }
        };
        let n = text(name);
        if !personal {
            continue;
        }
        if matcher.is_some_and(|m| m.attributes.contains_key(n)) {
            let msg = format!(
                "attribute `{n}` is personal, so `match` cannot use it: erasing it would change the workflow a rebuild picks"
            );
            cx.err(flag, msg);
        } else if by_attribute(n) {
            let msg = format!(
                "attribute `{n}` is personal, so no `by: attributes.{n}` may use it: erasing it would change the targets a rebuild picks"
            );
            cx.err(flag, msg);
        } else {
            out.insert(n.to_string());
        }
    }
    out
}

/// `kpis: { nps: 40, csat: 95%, fcr: 80% }`: NPS in points (-100 to 100, as the score itself
/// is written), CSAT and FCR as percentages (the `%` is required, so `0.95` and `95` cannot be
/// mistaken for each other).
fn compile_kpis(cx: &mut Ctx<'_>, raw: &Spanned<RawTable>) -> Kpis {
    let mut kpis = Kpis::default();
    for (k, v) in sorted_by_pos(&raw.value) {
        let Some(kpi) = Kpi::parse(text(k)) else {
            cx.err(
                k,
                format!(
                    "unknown KPI `{}` (expected one of: {})",
                    text(k),
                    Kpi::ALL.map(Kpi::as_str).join(", ")
                ),
            );
            continue;
        };
        if let Some(target) = kpi_target(cx, kpi, v) {
            kpis.set(kpi, target);
        }
    }
    kpis
}

fn kpi_target(cx: &mut Ctx<'_>, kpi: Kpi, v: &Spanned<Text>) -> Option<f64> {
    let s = text(v).trim();
    let parsed = match kpi {
        Kpi::Nps => s
            .parse::<i32>()
            .ok()
            .filter(|n| (-100..=100).contains(n))
            .map(f64::from)
            .ok_or("an integer from -100 to 100, such as `40`"),
        Kpi::Csat | Kpi::Fcr => s
            .strip_suffix('%')
            .and_then(|p| p.trim().parse::<f64>().ok())
            .filter(|p| (0.0..=100.0).contains(p))
            .map(|p| p / 100.0)
            .ok_or("a percentage from 0% to 100%, such as `90%`"),
    };
    match parsed {
        Ok(t) => Some(t),
        Err(want) => {
            cx.err(v, format!("{} target `{s}` must be {want}", kpi.as_str()));
            None
        }
    }
}

fn compile_name(cx: &mut Ctx<'_>, raw: &Spanned<Text>) -> String {
    let name = text(raw).to_string();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        cx.err(
            raw,
            format!("workflow name `{name}` may only use letters, digits, `-` and `_`"),
        );
    }
    name
}

fn compile_priorities(cx: &mut Ctx<'_>, raw: &Spanned<Vec<Spanned<Text>>>) -> Vec<String> {
    let mut priorities = Vec::new();
    for p in &raw.value {
        let s = text(p).to_string();
        if RESERVED_KEYS.contains(&s.as_str()) {
            cx.err(p, format!("`{s}` is reserved and cannot be a priority"));
        } else if priorities.contains(&s) {
            cx.err(p, format!("priority `{s}` is listed twice"));
        } else {
            priorities.push(s);
        }
    }
    if raw.value.is_empty() {
        cx.err(raw, "`priorities` must list at least one priority");
    }
    priorities
}

fn pick_calendar(
    cx: &mut Ctx<'_>,
    c: &Spanned<Text>,
    calendars: &BTreeMap<String, Arc<Calendar>>,
) -> Option<Arc<Calendar>> {
    let cal = calendars.get(text(c)).cloned();
    if cal.is_none() {
        cx.err(
            c,
            format!(
                "unknown calendar `{}` (calendars.yaml defines: {})",
                text(c),
                calendars.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        );
    }
    cal
}

/// The default language (first) and every language templates must exist in.
fn compile_languages(raw: &RawWorkflow) -> (String, Vec<String>) {
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
    (language, languages)
}

fn compile_match(cx: &mut Ctx<'_>, m: &Spanned<RawMatch>) -> Match {
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
}

// ------------------------------------------------------------------ stages

#[derive(Default)]
struct Stages {
    clocks: Vec<ClockSpec>,
    progress: Option<ProgressSpec>,
    survey: Option<SurveySpec>,
    rules: Vec<ScoreRule>,
    review: Option<ReviewSpec>,
}

fn compile_stages(cx: &mut Ctx<'_>, raw: Option<&Spanned<RawStages>>, sc: &Scope<'_>) -> Stages {
    let mut out = Stages::default();
    let Some(stages) = raw.map(|s| &s.value) else {
        return out;
    };
    if let Some(s) = &stages.intake {
        compile_sla(cx, Stage::Intake, &s.value.sla, sc, &mut out.clocks);
    }
    if let Some(s) = &stages.diagnosis {
        compile_sla(cx, Stage::Diagnosis, &s.value.sla, sc, &mut out.clocks);
    }
    if let Some(s) = &stages.execution {
        compile_sla(cx, Stage::Execution, &s.value.sla, sc, &mut out.clocks);
        if let Some(p) = &s.value.progress_updates {
            out.progress = compile_progress(cx, &p.value, sc);
        }
    }
    if let Some(f) = &stages.feedback {
        compile_sla(cx, Stage::Feedback, &f.value.sla, sc, &mut out.clocks);
        if let Some(s) = &f.value.survey {
            out.survey = compile_survey(cx, &s.value, sc);
        }
        if let Some(r) = &f.value.rules {
            out.rules = compile_rules(cx, r, sc);
        }
    }
    if let Some(r) = &stages.review {
        out.review = compile_review(cx, &r.value, sc);
    }
    out
}

type RawSla = Option<HashMap<Spanned<Text>, Spanned<RawTable>>>;

/// A stage's `sla:` clocks, appended to `clocks` in file order.
fn compile_sla(
    cx: &mut Ctx<'_>,
    stage: Stage,
    sla: &RawSla,
    sc: &Scope<'_>,
    clocks: &mut Vec<ClockSpec>,
) {
    for (cname, table) in sla.as_ref().map(sorted_by_pos).unwrap_or_default() {
        if let Some(c) = compile_clock(cx, stage, cname, table, sc, clocks) {
            clocks.push(c);
        }
    }
}

fn compile_clock(
    cx: &mut Ctx<'_>,
    stage: Stage,
    cname: &Spanned<Text>,
    table: &Spanned<RawTable>,
    sc: &Scope<'_>,
    earlier: &[ClockSpec],
) -> Option<ClockSpec> {
    let n = text(cname);
    if !valid_ident(n) {
        cx.err(cname, format!("clock name `{n}` must be lower_snake_case"));
        return None;
    }
    if n == PROGRESS || n == CALLBACK {
        let why = if n == PROGRESS {
            "set the interval under execution.progress_updates.every"
        } else {
            "a score rule's `callback: { within: … }` declares it"
        };
        cx.err(cname, format!("`{n}` is reserved: {why}"));
        return None;
    }
    if earlier.iter().any(|c| c.name == n) {
        cx.err(cname, format!("clock `{n}` is declared twice"));
        return None;
    }
    let t = compile_targets(cx, &format!("clock {n}"), table, sc, true)?;
    Some(ClockSpec {
        name: n.to_string(),
        stage,
        targets: t.targets,
        calendar: t.calendar.unwrap_or_else(|| sc.calendar.clone()),
        met_by: t.met_by.unwrap_or_else(|| default_met_by(n)),
    })
}

/// The event that meets a clock when its table names none.
fn default_met_by(clock: &str) -> MetBy {
    match clock {
        FIRST_RESPONSE => MetBy::Event(EventKind::Responded),
        RESOLUTION => MetBy::Event(EventKind::Resolved),
        PLAN => MetBy::Event(EventKind::PlanAgreed),
        _ => MetBy::Milestone,
    }
}

fn compile_progress(cx: &mut Ctx<'_>, p: &RawProgress, sc: &Scope<'_>) -> Option<ProgressSpec> {
    let every = compile_targets(cx, "progress_updates.every", &p.every, sc, false);
    let (notify, template) = compile_send(cx, &p.notify, &p.template, sc, true);
    Some(ProgressSpec {
        every: every?.targets,
        notify,
        template,
        skip_if_updated: p.skip_if_updated.as_ref().is_some_and(|b| b.value),
    })
}

fn compile_survey(cx: &mut Ctx<'_>, s: &RawSurvey, sc: &Scope<'_>) -> Option<SurveySpec> {
    let after = compile_span(cx, &s.after);
    let (notify, template) = compile_send(cx, &s.notify, &s.template, sc, true);
    Some(SurveySpec {
        after: after?,
        notify,
        template,
    })
}

fn compile_rules(
    cx: &mut Ctx<'_>,
    raw: &Spanned<Vec<Spanned<RawRule>>>,
    sc: &Scope<'_>,
) -> Vec<ScoreRule> {
    let rules: Vec<ScoreRule> = raw.value.iter().map(|r| compile_rule(cx, r, sc)).collect();
    let callbacks: Vec<&CallbackSpec> = rules.iter().filter_map(|r| r.callback.as_ref()).collect();
    if callbacks.windows(2).any(|w| w[0].within != w[1].within) {
        cx.err(
            raw,
            "all call-back rules must use the same `within` (one `callback` clock)",
        );
    }
    rules
}

fn score_bound(cx: &mut Ctx<'_>, v: &Option<Spanned<Text>>) -> Option<u8> {
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
}

fn compile_rule(cx: &mut Ctx<'_>, r: &Spanned<RawRule>, sc: &Scope<'_>) -> ScoreRule {
    let raw = &r.value;
    let when = ScoreCondition {
        at_most: score_bound(cx, &raw.when.value.score_at_most),
        at_least: score_bound(cx, &raw.when.value.score_at_least),
    };
    if when.at_most.is_none() && when.at_least.is_none() {
        cx.err(
            &raw.when,
            "`when` needs score_at_most and/or score_at_least (1-5)",
        );
    }
    let callback = raw.callback.as_ref().and_then(|c| {
        let within = compile_span(cx, &c.value.within);
        let (notify, template) = compile_send(cx, &c.value.notify, &c.value.template, sc, true);
        within.map(|within| CallbackSpec {
            within,
            notify,
            template,
        })
    });
    let send = raw.send.as_ref().map(|s| {
        let (notify, template) = compile_send(cx, &s.value.notify, &s.value.template, sc, true);
        Send { notify, template }
    });
    let reopen = raw.reopen.as_ref().is_some_and(|b| b.value);
    if raw.callback.is_none() && send.is_none() && !reopen {
        cx.err(r, "a rule needs an action: callback, send or reopen: true");
    }
    ScoreRule {
        when,
        callback,
        send,
        reopen,
    }
}

/// How far ahead a review schedule must tick: a schedule that never fires in this window is
/// a mistake (`0 0 0 30 2 *`, February 30th), not a rare report.
const REVIEW_HORIZON_DAYS: i64 = 5 * 366;

fn compile_review(cx: &mut Ctx<'_>, r: &RawReview, sc: &Scope<'_>) -> Option<ReviewSpec> {
    let expression = text(&r.schedule).to_string();
    let schedule = match Schedule::parse(&expression, sc.calendar.tz()) {
        Ok(s) => {
            let horizon = sc.env.now + chrono::Duration::days(REVIEW_HORIZON_DAYS);
            match s.next_after(sc.env.now) {
                Some(tick) if tick <= horizon => Some(s),
                _ => {
                    cx.err(
                        &r.schedule,
                        format!(
                            "schedule \"{expression}\" never fires in the next 5 years (check the day of month and month: e.g. February has no 30th)"
                        ),
                    );
                    None
                }
            }
        }
        Err(e) => {
            cx.err(&r.schedule, e.to_string());
            None
        }
    };
    let (notify, template) = compile_send(cx, &r.notify, &r.template, sc, false);
    Some(ReviewSpec {
        schedule: schedule?,
        expression,
        notify,
        template,
    })
}

// ------------------------------------------------------------------ escalations

fn compile_escalations(
    cx: &mut Ctx<'_>,
    raw: Option<&Spanned<Vec<Spanned<RawEscalation>>>>,
    sc: &Scope<'_>,
    stages: &Stages,
) -> Vec<Escalation> {
    let mut escalations = Vec::new();
    for (i, e) in raw.iter().flat_map(|l| l.value.iter()).enumerate() {
        let clock = escalation_clock(cx, &e.value.clock, stages);
        let at = escalate_at(cx, &e.value.at);
        let (notify, template) = compile_send(cx, &e.value.notify, &e.value.template, sc, true);
        let (repeat, times) = escalation_repeat(cx, &e.value);
        if let (Some(clock), Some(at)) = (clock, at) {
            escalations.push(Escalation {
                clock,
                at,
                notify,
                template,
                level: i as u32 + 1,
                repeat,
                times,
            });
        }
    }
    escalations
}

/// `repeat: 15m` and `times: 8` (up to 8 more messages; without `times`, 3). A repeat needs
/// a bound: an unacknowledged page must not repeat forever.
fn escalation_repeat(cx: &mut Ctx<'_>, e: &RawEscalation) -> (Option<Span>, u32) {
    let repeat = e.repeat.as_ref().and_then(|r| compile_span(cx, r));
    let times = match &e.times {
        None => 3,
        Some(t) => match text(t).parse::<u32>() {
            Ok(n @ 1..=100) => n,
            _ => {
                cx.err(
                    t,
                    format!("`times: {}` must be a whole number from 1 to 100", text(t)),
                );
                0
            }
        },
    };
    if e.times.is_some() && e.repeat.is_none() {
        cx.err(
            e.times
                .as_ref()
                .map(|t| t as &Spanned<Text>)
                .unwrap_or(&e.template),
            "`times` needs `repeat: <interval>`",
        );
    }
    (repeat, if repeat.is_some() { times } else { 0 })
}

fn escalation_clock(
    cx: &mut Ctx<'_>,
    raw: &Spanned<Text>,
    stages: &Stages,
) -> Option<ClockSelector> {
    let c = text(raw);
    let has_callback = stages.rules.iter().any(|r| r.callback.is_some());
    let has_progress = stages.progress.is_some();
    if c == "any" {
        return Some(ClockSelector::Any);
    }
    if stages.clocks.iter().any(|k| k.name == c)
        || (c == CALLBACK && has_callback)
        || (c == PROGRESS && has_progress)
    {
        return Some(ClockSelector::Named(c.to_string()));
    }
    // `any` first: with no clock declared (or none compiled) the list is just `any`.
    let mut known: Vec<String> = vec!["any".into()];
    known.extend(stages.clocks.iter().map(|k| k.name.clone()));
    if has_callback {
        known.push(CALLBACK.into());
    }
    if has_progress {
        known.push(PROGRESS.into());
    }
    cx.err(
        raw,
        format!(
            "escalation on unknown clock `{c}` (this workflow has: {})",
            known.join(", ")
        ),
    );
    None
}

fn escalate_at(cx: &mut Ctx<'_>, raw: &Spanned<Text>) -> Option<EscalateAt> {
    let at_s = text(raw).trim();
    let (at, problem) = if let Some(p) = at_s.strip_suffix('%') {
        match p.trim().parse::<u32>() {
            Ok(n @ 1..=100) => (Some(EscalateAt::Share(n)), None),
            Ok(n) => (
                None,
                Some(format!(
                    "`at: {n}%` is out of range: a share must be 1%-100% (after the breach, use an offset such as +4h)"
                )),
            ),
            Err(_) => (
                None,
                Some(format!("`at: {at_s}` is not a percentage such as 75%")),
            ),
        }
    } else if let Some(off) = at_s.strip_prefix('+') {
        match parse_span(off) {
            Ok(s) => (Some(EscalateAt::After(s)), None),
            Err(err) => (None, Some(format!("`at: {at_s}`: bad offset: {err}"))),
        }
    } else {
        (
            None,
            Some(format!(
                "`at: {at_s}` must be a share of the target (75%, 100%) or an offset after the breach (+4h)"
            )),
        )
    };
    if let Some(m) = problem {
        cx.err(raw, m);
    }
    at
}

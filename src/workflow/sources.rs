//! `sources.yaml`: the ticket systems that post their webhooks to `POST /v1/sources/{name}`
//! (SPEC "Sources"). Optional: a directory without it has no sources.
//!
//! Parse, don't validate: the YAML becomes [`Sources`], with every vendor table already merged
//! with the kind's shipped defaults, so the shell only looks values up. What is checked here,
//! each error as `path:line:col`:
//! - the kind is one we know;
//! - the secret or token is named by an environment variable (`secret_env` / `token_env`),
//!   never written in the file — whether the variable is *set* is checked when `serve`
//!   starts, because `validate` often runs where the secrets are not (CI);
//! - every priority a table maps to is declared by the workflow(s) the tickets can land in
//!   (the source's `workflow:`, else any workflow), every status maps to an action we know,
//!   and `workflow:` names a loaded workflow;
//! - a `generic` source says where the ticket id, the time and the event type are.
//!
//! Nothing here reads the environment or the clock.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::diag::Diag;
use super::env::{EnvRef, EnvUse, name_ok};
use super::raw::Text;
use crate::core::event::EventKind;
use crate::core::model::Workflow;

/// The file's name in the workflows directory.
pub const FILE: &str = "sources.yaml";

/// The vendor formats `POST /v1/sources/{name}` understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Zendesk,
    Jira,
    Freshdesk,
    Zammad,
    Chatwoot,
    Generic,
    Native,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Zendesk,
        Kind::Jira,
        Kind::Freshdesk,
        Kind::Zammad,
        Kind::Chatwoot,
        Kind::Generic,
        Kind::Native,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Zendesk => "zendesk",
            Kind::Jira => "jira",
            Kind::Freshdesk => "freshdesk",
            Kind::Zammad => "zammad",
            Kind::Chatwoot => "chatwoot",
            Kind::Generic => "generic",
            Kind::Native => "native",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// How the vendor authenticates its requests: an HMAC over the body keyed with a shared
    /// secret (`secret_env`), or a shared token in the request (`token_env`).
    fn auth(self) -> Auth {
        match self {
            Kind::Zendesk | Kind::Zammad | Kind::Chatwoot => Auth::Secret,
            // Jira webhooks sign (`secret_env`); a Jira Service Management automation rule's
            // "Send web request" cannot, so it sends a token header instead (`token_env`).
            Kind::Jira => Auth::SecretOrToken,
            // The event API's own format too: every source authenticates, or anyone who
            // can reach /v1/sources/{name} could post events around the API token.
            Kind::Freshdesk | Kind::Generic | Kind::Native => Auth::Token,
        }
    }
}

enum Auth {
    Secret,
    Token,
    SecretOrToken,
}

/// What a vendor status means to the clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Being worked on: resumes a paused ticket, re-opens a resolved one.
    Open,
    /// Waiting on the customer: pauses the clocks.
    Waiting,
    Resolved,
    Closed,
    /// Means nothing to any clock.
    Ignore,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Open,
        Status::Waiting,
        Status::Resolved,
        Status::Closed,
        Status::Ignore,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Waiting => "waiting",
            Status::Resolved => "resolved",
            Status::Closed => "closed",
            Status::Ignore => "ignore",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The key of a priority table used when the vendor sends no priority, or one the table does
/// not list.
pub const DEFAULT_KEY: &str = "default";

/// Shipped priority tables (vendor value, lower-cased → slakeeper priority). The targets are
/// the common four-level vocabulary; a workflow that declares other names needs a
/// `priorities:` override, and `validate` says so.
pub fn default_priorities(kind: Kind) -> &'static [(&'static str, &'static str)] {
    match kind {
        Kind::Zendesk | Kind::Chatwoot => &[
            ("urgent", "urgent"),
            ("high", "high"),
            ("normal", "normal"),
            ("medium", "normal"),
            ("low", "low"),
            (DEFAULT_KEY, "normal"),
        ],
        Kind::Jira => &[
            ("highest", "urgent"),
            ("high", "high"),
            ("medium", "normal"),
            ("low", "low"),
            ("lowest", "low"),
            (DEFAULT_KEY, "normal"),
        ],
        // Freshdesk renders `{{ticket.priority}}` as the name; its API and some rules use
        // the number (1 low … 4 urgent).
        Kind::Freshdesk => &[
            ("urgent", "urgent"),
            ("4", "urgent"),
            ("high", "high"),
            ("3", "high"),
            ("medium", "normal"),
            ("2", "normal"),
            ("low", "low"),
            ("1", "low"),
            (DEFAULT_KEY, "normal"),
        ],
        Kind::Zammad => &[
            ("3 high", "high"),
            ("2 normal", "normal"),
            ("1 low", "low"),
            (DEFAULT_KEY, "normal"),
        ],
        Kind::Generic | Kind::Native => &[],
    }
}

/// Shipped status tables (vendor status, lower-cased → meaning). Statuses not listed mean
/// nothing to the clocks.
pub fn default_statuses(kind: Kind) -> &'static [(&'static str, Status)] {
    use Status::*;
    match kind {
        Kind::Zendesk => &[
            ("new", Open),
            ("open", Open),
            ("pending", Waiting),
            ("hold", Waiting),
            ("on-hold", Waiting),
            ("solved", Resolved),
            ("closed", Closed),
        ],
        Kind::Jira => &[
            ("open", Open),
            ("to do", Open),
            ("in progress", Open),
            ("work in progress", Open),
            ("waiting for support", Open),
            ("reopened", Open),
            ("waiting for customer", Waiting),
            ("pending", Waiting),
            ("resolved", Resolved),
            ("done", Resolved),
            ("closed", Closed),
            ("canceled", Closed),
            ("cancelled", Closed),
        ],
        Kind::Freshdesk => &[
            ("open", Open),
            ("2", Open),
            ("pending", Waiting),
            ("3", Waiting),
            ("resolved", Resolved),
            ("4", Resolved),
            ("closed", Closed),
            ("5", Closed),
            ("waiting on customer", Waiting),
            ("6", Waiting),
            // Waiting on a third party is the team's wait, not the customer's: clocks run.
            ("waiting on third party", Open),
            ("7", Open),
        ],
        // Zammad has no "resolved": `closed` is the resolution the survey follows.
        Kind::Zammad => &[
            ("new", Open),
            ("open", Open),
            ("pending reminder", Waiting),
            ("pending close", Waiting),
            ("closed", Resolved),
            ("merged", Closed),
        ],
        // Chatwoot's `pending` is "not yet picked up by an agent" (bot inboxes), not a wait
        // on the customer; `snoozed` is.
        Kind::Chatwoot => &[
            ("open", Open),
            ("pending", Ignore),
            ("snoozed", Waiting),
            ("resolved", Resolved),
        ],
        Kind::Generic | Kind::Native => &[
            ("open", Open),
            ("waiting", Waiting),
            ("resolved", Resolved),
            ("closed", Closed),
        ],
    }
}

/// Where a `generic` source finds each field: JSON Pointers (RFC 6901) into the body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldMap {
    pub ticket: String,
    pub time: String,
    pub kind: Option<String>,
    pub status: Option<String>,
    pub priority: Option<String>,
    pub category: Option<String>,
    pub assignee: Option<String>,
    pub assignee_email: Option<String>,
    pub customer: Option<String>,
    pub customer_email: Option<String>,
    pub score: Option<String>,
    pub comment: Option<String>,
    pub delivery: Option<String>,
}

/// One configured source, with the kind's defaults already merged into its tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpec {
    pub name: String,
    pub kind: Kind,
    pub secret_env: Option<String>,
    pub token_env: Option<String>,
    /// Prepended to every ticket id (`ZM-` + `10081`).
    pub id_prefix: String,
    /// The workflow new tickets from this source open in (else the `match` rules choose).
    pub workflow: Option<String>,
    /// The category of new tickets when the vendor's type is not in `categories`.
    pub category: Option<String>,
    /// Lower-cased vendor priority → slakeeper priority; [`DEFAULT_KEY`] for none/unknown.
    pub priorities: BTreeMap<String, String>,
    /// Lower-cased vendor status → meaning.
    pub statuses: BTreeMap<String, Status>,
    /// Lower-cased vendor ticket type → category.
    pub categories: BTreeMap<String, String>,
    /// `generic`: vendor event name (as sent) → event type.
    pub types: BTreeMap<String, EventKind>,
    pub map: Option<FieldMap>,
}

impl SourceSpec {
    /// The slakeeper priority for a vendor priority (None: the vendor sent none).
    pub fn priority(&self, vendor: Option<&str>) -> Option<String> {
        let key = vendor
            .map(|v| v.trim().to_lowercase())
            .filter(|v| !v.is_empty());
        match key {
            Some(k) => match self.priorities.get(&k) {
                Some(p) => Some(p.clone()),
                // An unlisted vendor value: the table's default, else (generic sources,
                // whose senders often already speak our names) the value itself.
                None => self
                    .priorities
                    .get(DEFAULT_KEY)
                    .cloned()
                    .or_else(|| vendor.map(|v| v.trim().to_string())),
            },
            None => self.priorities.get(DEFAULT_KEY).cloned(),
        }
    }

    pub fn status(&self, vendor: &str) -> Status {
        self.statuses
            .get(&vendor.trim().to_lowercase())
            .copied()
            .unwrap_or(Status::Ignore)
    }

    /// Whether the vendor status is listed at all (an unlisted one falls back to a
    /// vendor-specific rule, such as Jira's status category).
    pub fn knows_status(&self, vendor: &str) -> bool {
        self.statuses.contains_key(&vendor.trim().to_lowercase())
    }

    pub fn category(&self, vendor_type: Option<&str>) -> Option<String> {
        vendor_type
            .and_then(|t| self.categories.get(&t.trim().to_lowercase()))
            .cloned()
            .or_else(|| self.category.clone())
    }
}

/// Every configured source by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    pub sources: BTreeMap<String, SourceSpec>,
}

impl Sources {
    pub fn get(&self, name: &str) -> Option<&SourceSpec> {
        self.sources.get(name)
    }
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }
}

// ------------------------------------------------------------------ raw YAML

type S<T> = Spanned<T>;
type RawTable = HashMap<S<Text>, S<Text>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    sources: Option<HashMap<S<Text>, S<RawSource>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    kind: S<Text>,
    #[serde(default)]
    secret_env: Option<S<Text>>,
    #[serde(default)]
    token_env: Option<S<Text>>,
    #[serde(default)]
    id_prefix: Option<S<Text>>,
    #[serde(default)]
    workflow: Option<S<Text>>,
    #[serde(default)]
    category: Option<S<Text>>,
    #[serde(default)]
    priorities: Option<RawTable>,
    #[serde(default)]
    statuses: Option<RawTable>,
    #[serde(default)]
    categories: Option<RawTable>,
    #[serde(default)]
    types: Option<RawTable>,
    #[serde(default)]
    map: Option<S<RawMap>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMap {
    #[serde(default)]
    ticket: Option<S<Text>>,
    #[serde(default)]
    time: Option<S<Text>>,
    #[serde(rename = "type", default)]
    kind: Option<S<Text>>,
    #[serde(default)]
    status: Option<S<Text>>,
    #[serde(default)]
    priority: Option<S<Text>>,
    #[serde(default)]
    category: Option<S<Text>>,
    #[serde(default)]
    assignee: Option<S<Text>>,
    #[serde(default)]
    assignee_email: Option<S<Text>>,
    #[serde(default)]
    customer: Option<S<Text>>,
    #[serde(default)]
    customer_email: Option<S<Text>>,
    #[serde(default)]
    score: Option<S<Text>>,
    #[serde(default)]
    comment: Option<S<Text>>,
    #[serde(default)]
    delivery: Option<S<Text>>,
}

struct Cx<'a> {
    path: &'a Path,
    diags: &'a mut Vec<Diag>,
}

impl Cx<'_> {
    fn err<T>(&mut self, at: &Spanned<T>, message: impl Into<String>) {
        self.diags.push(Diag {
            path: self.path.to_path_buf(),
            line: (at.referenced.line() as u32).max(1),
            col: (at.referenced.column() as u32).max(1),
            message: message.into(),
        });
    }
}

fn txt(s: &S<Text>) -> &str {
    s.value.0.trim()
}

fn by_pos<V>(m: &HashMap<S<Text>, V>) -> Vec<(&S<Text>, &V)> {
    let mut v: Vec<_> = m.iter().collect();
    v.sort_by_key(|(k, _)| (k.referenced.line(), k.referenced.column()));
    v
}

/// Every well-formed variable name `sources.yaml` gives (`secret_env`, `token_env`), with
/// its position, whatever else is wrong with the file (nothing when it does not parse).
pub fn env_refs(path: &Path, src: &str) -> Vec<EnvRef> {
    let Ok(RawFile {
        sources: Some(entries),
    }) = serde_saphyr::from_str::<RawFile>(src)
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (_, spec) in by_pos(&entries) {
        for (v, key) in [
            (&spec.value.secret_env, "secret_env"),
            (&spec.value.token_env, "token_env"),
        ] {
            if let Some(v) = v.as_ref().filter(|v| name_ok(txt(v))) {
                out.push(EnvRef::new(path, v, txt(v), key, EnvUse::Intake));
            }
        }
    }
    out
}

/// Parse and check `sources.yaml`'s text against the compiled workflows (`path` only names
/// it in messages); every problem is pushed to `diags`.
pub fn parse(path: &Path, src: &str, workflows: &[&Workflow], diags: &mut Vec<Diag>) -> Sources {
    let raw: RawFile = match serde_saphyr::from_str(src) {
        Ok(r) => r,
        Err(e) => {
            let (line, col) = e
                .location()
                .map(|l| (l.line() as u32, l.column() as u32))
                .unwrap_or((1, 1));
            let msg = e.without_snippet().to_string();
            // The library appends " at line L, column C"; we print positions first.
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
            return Sources::default();
        }
    };
    let mut cx = Cx { path, diags };
    let mut out = Sources::default();
    let Some(entries) = raw.sources else {
        return out;
    };
    for (name, spec) in by_pos(&entries) {
        if let Some(s) = compile_source(&mut cx, txt(name), name, &spec.value, workflows) {
            out.sources.insert(s.name.clone(), s);
        }
    }
    out
}

fn compile_source(
    cx: &mut Cx<'_>,
    name: &str,
    name_at: &S<Text>,
    raw: &RawSource,
    workflows: &[&Workflow],
) -> Option<SourceSpec> {
    let name_ok = check_source_name(cx, name, name_at);
    let Some(kind) = Kind::parse(txt(&raw.kind)) else {
        cx.err(
            &raw.kind,
            format!(
                "unknown source kind `{}` (expected one of: {})",
                txt(&raw.kind),
                Kind::ALL.map(Kind::as_str).join(", ")
            ),
        );
        return None;
    };
    let mut ok = name_ok;
    let (secret_env, token_env) = compile_auth(cx, raw, kind, &mut ok);
    let (workflow, targets) = source_workflows(cx, raw, workflows, &mut ok);
    let priorities = compile_priorities(cx, raw, kind, &workflow, &targets, &mut ok);
    let statuses = compile_statuses(cx, raw, kind, &mut ok);
    let categories: BTreeMap<String, String> = raw
        .categories
        .as_ref()
        .map(|t| {
            by_pos(t)
                .into_iter()
                .map(|(k, v)| (txt(k).to_lowercase(), txt(v).to_string()))
                .collect()
        })
        .unwrap_or_default();

    let types = compile_types(cx, raw, kind, &mut ok);
    let map = compile_source_map(cx, raw, kind, &mut ok);

    ok.then(|| SourceSpec {
        name: name.to_string(),
        kind,
        secret_env,
        token_env,
        id_prefix: raw
            .id_prefix
            .as_ref()
            .map(|p| p.value.0.clone())
            .unwrap_or_default(),
        workflow,
        category: raw.category.as_ref().map(|c| txt(c).to_string()),
        priorities,
        statuses,
        categories,
        types,
        map,
    })
}

/// The name is a URL path segment and a metric label: keep it plain.
fn check_source_name(cx: &mut Cx<'_>, name: &str, name_at: &S<Text>) -> bool {
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !name_ok {
        cx.err(
            name_at,
            format!("source name `{name}` must be 1-64 letters, digits, `-` or `_` (it is part of the URL /v1/sources/{{name}})"),
        );
    }
    name_ok
}

/// Secrets: only the name of an environment variable may appear here, of the kind the
/// vendor's scheme needs. Returns (secret_env, token_env).
fn compile_auth(
    cx: &mut Cx<'_>,
    raw: &RawSource,
    kind: Kind,
    ok: &mut bool,
) -> (Option<String>, Option<String>) {
    let env = |cx: &mut Cx<'_>, v: &Option<S<Text>>, ok: &mut bool| -> Option<String> {
        let v = v.as_ref()?;
        if !name_ok(txt(v)) {
            // Not echoed: a value that is not a variable name may be the secret itself.
            cx.err(
                v,
                "this is not an environment variable name (letters, digits, `_`): name the variable that holds the secret; the secret itself never goes in this file",
            );
            *ok = false;
            return None;
        }
        Some(txt(v).to_string())
    };
    let secret_env = env(cx, &raw.secret_env, ok);
    let token_env = env(cx, &raw.token_env, ok);
    let k = kind.as_str();
    match kind.auth() {
        Auth::Secret => {
            if let Some(t) = &raw.token_env {
                cx.err(t, format!("a {k} source is signed: name its signing secret with `secret_env`, not `token_env`"));
                *ok = false;
            }
            if raw.secret_env.is_none() {
                cx.err(&raw.kind, format!("missing `secret_env`: a {k} source needs the environment variable holding its signing secret"));
                *ok = false;
            }
        }
        Auth::Token => {
            if let Some(s) = &raw.secret_env {
                cx.err(
                    s,
                    format!(
                        "a {k} source sends a token: name it with `token_env`, not `secret_env`"
                    ),
                );
                *ok = false;
            }
            if raw.token_env.is_none() {
                cx.err(&raw.kind, format!("missing `token_env`: a {k} source needs the environment variable holding its shared token"));
                *ok = false;
            }
        }
        Auth::SecretOrToken => {
            if raw.secret_env.is_none() && raw.token_env.is_none() {
                cx.err(&raw.kind, format!("missing `secret_env` (webhook signing secret) or `token_env` (automation token): a {k} source needs one"));
                *ok = false;
            }
        }
    }

    (secret_env, token_env)
}

/// The workflow a source feeds (or every workflow), for checking its mappings.
fn source_workflows<'w>(
    cx: &mut Cx<'_>,
    raw: &RawSource,
    workflows: &[&'w Workflow],
    ok: &mut bool,
) -> (Option<String>, Vec<&'w Workflow>) {
    let workflow = raw.workflow.as_ref().map(|w| txt(w).to_string());
    let targets: Vec<&Workflow> = match (&raw.workflow, &workflow) {
        (Some(at), Some(w)) => match workflows.iter().find(|x| &x.name == w) {
            Some(x) => vec![*x],
            None => {
                cx.err(
                    at,
                    format!(
                        "unknown workflow `{w}` (loaded: {})",
                        workflows
                            .iter()
                            .map(|x| x.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                *ok = false;
                Vec::new()
            }
        },
        _ => workflows.to_vec(),
    };
    (workflow, targets)
}

/// Shipped defaults, then the overrides; every target must be declared.
fn compile_priorities(
    cx: &mut Cx<'_>,
    raw: &RawSource,
    kind: Kind,
    workflow: &Option<String>,
    targets: &[&Workflow],
    ok: &mut bool,
) -> BTreeMap<String, String> {
    let declared = |p: &str| targets.iter().any(|w| w.priority_rank(p).is_some());
    let where_ = match workflow {
        Some(w) => format!("workflow `{w}`"),
        None => "any workflow".to_string(),
    };
    let overrides: BTreeMap<String, &S<Text>> = raw
        .priorities
        .as_ref()
        .map(|t| {
            by_pos(t)
                .into_iter()
                .map(|(k, v)| (txt(k).to_lowercase(), v))
                .collect()
        })
        .unwrap_or_default();
    let mut priorities: BTreeMap<String, String> = default_priorities(kind)
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (k, v) in &overrides {
        priorities.insert(k.clone(), txt(v).to_string());
    }
    if !targets.is_empty() {
        for (k, v) in &priorities {
            if declared(v) {
                continue;
            }
            match overrides.get(k) {
                Some(at) => cx.err(
                    *at,
                    format!("priority `{v}` is not declared by {where_} (mapped from {k})"),
                ),
                None => cx.err(
                    &raw.kind,
                    format!(
                        "the shipped {k_} mapping {k} → `{v}` names a priority not declared by {where_}; map it under `priorities:` (e.g. `priorities: {{ {k}: ... }}`)",
                        k_ = kind.as_str()
                    ),
                ),
            }
            *ok = false;
        }
    }

    priorities
}

/// Shipped defaults, then the overrides, each one of our meanings.
fn compile_statuses(
    cx: &mut Cx<'_>,
    raw: &RawSource,
    kind: Kind,
    ok: &mut bool,
) -> BTreeMap<String, Status> {
    let mut statuses: BTreeMap<String, Status> = default_statuses(kind)
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    if let Some(t) = &raw.statuses {
        for (k, v) in by_pos(t) {
            match Status::parse(&txt(v).to_lowercase()) {
                Some(s) => {
                    statuses.insert(txt(k).to_lowercase(), s);
                }
                None => {
                    cx.err(
                        v,
                        format!(
                            "status `{}` maps to `{}`, which is not a status meaning (expected one of: {})",
                            txt(k),
                            txt(v),
                            Status::ALL.map(Status::as_str).join(", ")
                        ),
                    );
                    *ok = false;
                }
            }
        }
    }

    statuses
}

/// `types:` (generic sources only): the tool's event names → our event types.
fn compile_types(
    cx: &mut Cx<'_>,
    raw: &RawSource,
    kind: Kind,
    ok: &mut bool,
) -> BTreeMap<String, EventKind> {
    let mut types = BTreeMap::new();
    if let Some(t) = &raw.types {
        if kind != Kind::Generic {
            if let Some((k, _)) = by_pos(t).first() {
                cx.err(*k, format!("`types:` is for generic sources; a {k_} source's events are fixed by its vendor", k_ = kind.as_str()));
                *ok = false;
            }
        } else {
            for (k, v) in by_pos(t) {
                match EventKind::parse(txt(v)) {
                    Some(e) => {
                        types.insert(txt(k).to_string(), e);
                    }
                    None => {
                        cx.err(
                            v,
                            format!(
                                "unknown event type `{}` (expected one of: {})",
                                txt(v),
                                EventKind::ALL.map(EventKind::as_str).join(", ")
                            ),
                        );
                        *ok = false;
                    }
                }
            }
        }
    }

    types
}

/// `map:` (generic sources only, and required there).
fn compile_source_map(
    cx: &mut Cx<'_>,
    raw: &RawSource,
    kind: Kind,
    ok: &mut bool,
) -> Option<FieldMap> {
    match (&raw.map, kind) {
        (Some(m), Kind::Generic) => compile_map(cx, m, ok),
        (Some(m), _) => {
            cx.err(
                m,
                format!(
                    "`map:` is for generic sources; a {} source's payload is the vendor's",
                    kind.as_str()
                ),
            );
            *ok = false;
            None
        }
        (None, Kind::Generic) => {
            cx.err(
                &raw.kind,
                "missing `map:`: a generic source names where the ticket id, time and event type are (JSON Pointers such as /ticket/id)",
            );
            *ok = false;
            None
        }
        (None, _) => None,
    }
}

fn compile_map(cx: &mut Cx<'_>, m: &S<RawMap>, ok: &mut bool) -> Option<FieldMap> {
    let r = &m.value;
    let mut ptr = |cx: &mut Cx<'_>, v: &Option<S<Text>>| -> Option<String> {
        let v = v.as_ref()?;
        let p = txt(v);
        if !p.starts_with('/') {
            cx.err(
                v,
                format!("`{p}` is not a JSON Pointer (RFC 6901): write it from the body's root, such as /ticket/id"),
            );
            *ok = false;
            return None;
        }
        Some(p.to_string())
    };
    let ticket = ptr(cx, &r.ticket);
    let time = ptr(cx, &r.time);
    let fm = FieldMap {
        ticket: ticket.clone().unwrap_or_default(),
        time: time.clone().unwrap_or_default(),
        kind: ptr(cx, &r.kind),
        status: ptr(cx, &r.status),
        priority: ptr(cx, &r.priority),
        category: ptr(cx, &r.category),
        assignee: ptr(cx, &r.assignee),
        assignee_email: ptr(cx, &r.assignee_email),
        customer: ptr(cx, &r.customer),
        customer_email: ptr(cx, &r.customer_email),
        score: ptr(cx, &r.score),
        comment: ptr(cx, &r.comment),
        delivery: ptr(cx, &r.delivery),
    };
    if r.ticket.is_none() {
        cx.err(m, "missing `map.ticket`: the JSON Pointer to the ticket id");
        *ok = false;
    }
    if r.time.is_none() {
        cx.err(
            m,
            "missing `map.time`: the JSON Pointer to when it happened (RFC 3339 or Unix seconds)",
        );
        *ok = false;
    }
    if r.kind.is_none() && r.status.is_none() {
        cx.err(
            m,
            "missing `map.type` or `map.status`: one of them says what happened",
        );
        *ok = false;
    }
    Some(fm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diags(src: &str) -> (Sources, Vec<String>) {
        let mut d = Vec::new();
        let s = parse(Path::new("sources.yaml"), src, &[], &mut d);
        (s, d.iter().map(|x| x.to_string()).collect())
    }

    #[test]
    fn defaults_are_merged_with_overrides() {
        let (s, d) = diags(
            "sources:\n  jira: { kind: jira, secret_env: SLK_JIRA, priorities: { Highest: critical } }\n",
        );
        assert!(d.is_empty(), "{d:?}");
        let j = s.get("jira").expect("jira");
        assert_eq!(j.priority(Some("Highest")).as_deref(), Some("critical"));
        assert_eq!(j.priority(Some("Medium")).as_deref(), Some("normal"));
        assert_eq!(j.priority(None).as_deref(), Some("normal"));
        assert_eq!(j.priority(Some("P7")).as_deref(), Some("normal"));
        assert_eq!(j.status("Waiting for customer"), Status::Waiting);
        assert_eq!(j.status("Nonsense"), Status::Ignore);
    }

    #[test]
    fn unknown_kind_and_missing_secret_are_positioned() {
        let (_, d) = diags("sources:\n  a: { kind: zendsk }\n  b: { kind: zendesk }\n");
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(
            d[0].starts_with("sources.yaml:2:") && d[0].contains("unknown source kind `zendsk`")
        );
        assert!(d[1].starts_with("sources.yaml:3:") && d[1].contains("missing `secret_env`"));
    }

    #[test]
    fn a_secret_value_is_not_an_env_name() {
        let (_, d) = diags("sources:\n  z: { kind: zendesk, secret_env: \"s3cr3t value!\" }\n");
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].contains("not an environment variable name"), "{d:?}");
        assert!(!d[0].contains("s3cr3t"), "the value is never echoed: {d:?}");
    }
}

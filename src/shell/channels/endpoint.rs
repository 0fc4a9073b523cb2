//! Where a vendor delivery goes, resolved at send time. A delivery stores only a target
//! that names its routes.yaml entry (`role:oncall#slack/0`), never the URL: webhook URLs of
//! Slack, DingTalk, WeCom and Teams carry their token, so they live in environment variables
//! and are read here, into [`Secret`]s, for the one attempt that needs them.

use crate::core::channel::ChannelKind;
use crate::shell::secret::Secret;
use crate::workflow::{ChannelEntry, Routes};

/// One routes.yaml channel entry with its secrets read from the environment.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub url: Secret,
    pub secret: Option<Secret>,
    pub routing_key: Option<Secret>,
    /// `headers_env`: header name → value from the environment.
    pub secret_headers: Vec<(String, Secret)>,
    pub entry: ChannelEntry,
}

/// The target of entry `index` of `kind` under `role`.
pub fn target(role: &str, kind: ChannelKind, index: usize) -> String {
    format!("role:{role}#{}/{index}", kind.as_str())
}

/// `role:NAME#KIND/INDEX` → (NAME, INDEX).
pub fn parse_target(target: &str) -> Option<(&str, usize)> {
    let rest = target.strip_prefix("role:")?;
    let (role, entry) = rest.split_once('#')?;
    let (_, idx) = entry.split_once('/')?;
    Some((role, idx.parse().ok()?))
}

/// Why a vendor delivery's target cannot be resolved now. Retried by the engine: the
/// variable may be set, or the entry restored, by the next start.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("target `{0}` names no route entry")]
    Target(String),
    #[error("role `{0}` is no longer in routes.yaml")]
    Role(String),
    #[error("routes.yaml has no {kind} entry {index} for `{role}`")]
    Entry {
        kind: &'static str,
        index: usize,
        role: String,
    },
    #[error("{kind} entry of `{role}` has no URL")]
    NoUrl { kind: &'static str, role: String },
    /// The variable's name is not a secret; its value never appears in a message.
    #[error("environment variable {0} is not set")]
    Unset(String),
    #[error(transparent)]
    Env(#[from] crate::shell::env::EnvError),
}

fn env(name: &str) -> Result<Secret, EndpointError> {
    // Read at start into a snapshot (`NAME` or `NAME_FILE`); see `shell::env`.
    crate::shell::env::secret(name)?.ok_or_else(|| EndpointError::Unset(name.to_string()))
}

/// Resolve a delivery target of a vendor channel. Errors are retried by the engine: the
/// variable may be set by the next start, and a message is never dropped for it.
pub fn resolve(
    routes: &Routes,
    kind: ChannelKind,
    target: &str,
) -> Result<Endpoint, EndpointError> {
    let (role, index) =
        parse_target(target).ok_or_else(|| EndpointError::Target(target.to_string()))?;
    let route = routes
        .get(role)
        .ok_or_else(|| EndpointError::Role(role.to_string()))?;
    let entry = route
        .channels
        .iter()
        .filter(|e| e.channel == kind)
        .nth(index)
        .ok_or_else(|| EndpointError::Entry {
            kind: kind.as_str(),
            index,
            role: role.to_string(),
        })?
        .clone();
    let url = match (&entry.url_env, &entry.url) {
        (Some(name), _) => env(name)?,
        (None, Some(u)) => Secret::new(u.clone()),
        (None, None) => {
            return Err(EndpointError::NoUrl {
                kind: kind.as_str(),
                role: role.to_string(),
            });
        }
    };
    let secret = entry.secret_env.as_deref().map(env).transpose()?;
    let routing_key = entry.routing_key_env.as_deref().map(env).transpose()?;
    let mut secret_headers = Vec::new();
    for (h, name) in &entry.headers_env {
        secret_headers.push((h.clone(), env(name)?));
    }
    Ok(Endpoint {
        url,
        secret,
        routing_key,
        secret_headers,
        entry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_the_entry_not_the_url() {
        let t = target("oncall", ChannelKind::Dingtalk, 1);
        assert_eq!(t, "role:oncall#dingtalk/1");
        assert_eq!(parse_target(&t), Some(("oncall", 1)));
        assert_eq!(parse_target("role:oncall"), None);
    }
}

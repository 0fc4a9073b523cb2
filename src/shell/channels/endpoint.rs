//! Where a vendor delivery goes, resolved at send time. A delivery stores only a target
//! that names its routes.yaml entry (`role:oncall#slack/0`), never the URL: webhook URLs of
//! Slack, DingTalk, WeCom and Teams carry their token, so they live in environment variables
//! and are read here, into [`Secret`]s, for the one attempt that needs them.

use crate::shell::channels::ChannelKind;
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

fn env(name: &str) -> Result<Secret, String> {
    // Read at start into a snapshot (`NAME` or `NAME_FILE`); see `shell::env`.
    match crate::shell::env::secret(name) {
        Ok(Some(v)) => Ok(v),
        // The variable's name is not a secret; its value never appears in a message.
        Ok(None) => Err(format!("environment variable {name} is not set")),
        Err(e) => Err(e.to_string()),
    }
}

/// Resolve a delivery target of a vendor channel. Errors are retried by the engine: the
/// variable may be set by the next start, and a message is never dropped for it.
pub fn resolve(routes: &Routes, kind: ChannelKind, target: &str) -> Result<Endpoint, String> {
    let (role, index) =
        parse_target(target).ok_or_else(|| format!("target `{target}` names no route entry"))?;
    let route = routes
        .get(role)
        .ok_or_else(|| format!("role `{role}` is no longer in routes.yaml"))?;
    let entry = route
        .channels
        .iter()
        .filter(|e| e.channel == kind.as_str())
        .nth(index)
        .ok_or_else(|| {
            format!(
                "routes.yaml has no {} entry {index} for `{role}`",
                kind.as_str()
            )
        })?
        .clone();
    let url = match (&entry.url_env, &entry.url) {
        (Some(name), _) => env(name)?,
        (None, Some(u)) => Secret::new(u.clone()),
        (None, None) => return Err(format!("{} entry of `{role}` has no URL", kind.as_str())),
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

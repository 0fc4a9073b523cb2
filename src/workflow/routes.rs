//! The compiled `routes.yaml`: where each role's notifications go. Compiled by
//! [`super::compile`] (email, webhooks) and [`super::oncall`] (vendor channels, rotations);
//! read by the engine and the channels.

use std::collections::BTreeMap;

use crate::core::channel::ChannelKind;
use crate::core::rotation::Rotation;

/// Where a role's notifications go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route {
    pub email: Vec<String>,
    pub webhook: Vec<String>,
    /// Vendor channel entries (`slack:`, `dingtalk:`, `pagerduty:`, `http:` …), in file
    /// order per channel.
    pub channels: Vec<ChannelEntry>,
    /// A rotation role pages the member on duty instead (its own channels are none).
    pub rotation: Option<Rotation>,
}

/// One vendor channel entry of routes.yaml. Secrets are never here: only the names of the
/// environment variables that hold them (`url_env`, `secret_env`, `routing_key_env`,
/// `headers_env`), read at send time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelEntry {
    /// One of [`ChannelKind::VENDORS`]: the key the entry is listed under.
    pub channel: ChannelKind,
    /// A URL without a secret (PagerDuty's endpoint, an `http` URL template).
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub secret_env: Option<String>,
    pub routing_key_env: Option<String>,
    pub severity: Option<String>,
    pub at_mobiles: Vec<String>,
    pub method: Option<String>,
    pub headers: Vec<(String, String)>,
    pub headers_env: Vec<(String, String)>,
    pub body: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Routes {
    pub roles: BTreeMap<String, Route>,
}

impl ChannelEntry {
    /// An entry of `channel` with nothing set yet.
    pub fn new(channel: ChannelKind) -> ChannelEntry {
        ChannelEntry {
            channel,
            url: None,
            url_env: None,
            secret_env: None,
            routing_key_env: None,
            severity: None,
            at_mobiles: Vec::new(),
            method: None,
            headers: Vec::new(),
            headers_env: Vec::new(),
            body: None,
        }
    }
}

impl Routes {
    pub fn get(&self, role: &str) -> Option<&Route> {
        self.roles.get(role)
    }
}

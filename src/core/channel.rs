//! The kinds of channel a notification can go through: parsed from the workflow files,
//! stored as text (`sk_deliveries.channel`), used as a metric label. Here, below the shell,
//! so the workflow model and the metrics name them without reaching into the channels.

use serde::{Deserialize, Serialize};

crate::core::words::words! {
    /// The kinds of channel a delivery can use. Stored as text (`sk_deliveries.channel`), and
    /// serialized as the same text, so delivery jobs queued as `"channel": "email"` before
    /// this was an enum still decode.
    #[derive(Hash, PartialOrd, Ord, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub ChannelKind {
        Email => "email",
        Webhook => "webhook",
        Slack => "slack",
        Teams => "teams",
        Dingtalk => "dingtalk",
        Feishu => "feishu",
        Wecom => "wecom",
        Pagerduty => "pagerduty",
        Http => "http",
    }
}

impl ChannelKind {
    /// The kinds configured per routes.yaml entry (`slack: [{ url_env: … }]`), whose target
    /// names the entry (`role:NAME#KIND/INDEX`) and whose URL and secrets come from the
    /// environment at send time.
    pub const VENDORS: [ChannelKind; 7] = [
        ChannelKind::Slack,
        ChannelKind::Teams,
        ChannelKind::Dingtalk,
        ChannelKind::Feishu,
        ChannelKind::Wecom,
        ChannelKind::Pagerduty,
        ChannelKind::Http,
    ];

    pub fn is_vendor(self) -> bool {
        ChannelKind::VENDORS.contains(&self)
    }
}

/// A channel name this binary does not know (read from the database, where a newer or
/// hand-edited row may hold one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown channel kind `{0}`")]
pub struct UnknownChannel(pub String);

/// Read from a stored text column (`#[sqlx(try_from = "String")]`).
impl TryFrom<String> for ChannelKind {
    type Error = UnknownChannel;

    fn try_from(value: String) -> Result<ChannelKind, UnknownChannel> {
        ChannelKind::parse(&value).ok_or(UnknownChannel(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_text() {
        for &k in ChannelKind::ALL {
            assert_eq!(ChannelKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(ChannelKind::parse("pigeon"), None);
    }

    #[test]
    fn serde_form_is_the_stored_text() {
        for &k in ChannelKind::ALL {
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
            assert_eq!(serde_json::from_str::<ChannelKind>(&json).unwrap(), k);
        }
    }

    #[test]
    fn unknown_stored_text_is_an_error_naming_it() {
        let err = ChannelKind::try_from("pigeon".to_string()).unwrap_err();
        assert_eq!(err.to_string(), "unknown channel kind `pigeon`");
    }
}

//! The kinds of channel a notification can go through: parsed from the workflow files,
//! stored as text (`sk_deliveries.channel`), used as a metric label. Here, below the shell,
//! so the workflow model and the metrics name them without reaching into the channels.

/// The kinds of channel a delivery can use. Stored as text (`sk_deliveries.channel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChannelKind {
    Email,
    Webhook,
    Slack,
    Teams,
    Dingtalk,
    Feishu,
    Wecom,
    Pagerduty,
    Http,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 9] = [
        ChannelKind::Email,
        ChannelKind::Webhook,
        ChannelKind::Slack,
        ChannelKind::Teams,
        ChannelKind::Dingtalk,
        ChannelKind::Feishu,
        ChannelKind::Wecom,
        ChannelKind::Pagerduty,
        ChannelKind::Http,
    ];

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

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Email => "email",
            ChannelKind::Webhook => "webhook",
            ChannelKind::Slack => "slack",
            ChannelKind::Teams => "teams",
            ChannelKind::Dingtalk => "dingtalk",
            ChannelKind::Feishu => "feishu",
            ChannelKind::Wecom => "wecom",
            ChannelKind::Pagerduty => "pagerduty",
            ChannelKind::Http => "http",
        }
    }

    pub fn is_vendor(self) -> bool {
        ChannelKind::VENDORS.contains(&self)
    }

    pub fn parse(s: &str) -> Option<ChannelKind> {
        ChannelKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_text() {
        for k in ChannelKind::ALL {
            assert_eq!(ChannelKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(ChannelKind::parse("pigeon"), None);
    }
}

//! What the chat channels share: the message as a title plus Markdown (the template's
//! subject and text), cut to the vendor's limits on a character boundary, and the base64 /
//! HMAC helpers their signatures use.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::shell::channels::channel::Message;

/// At most `max` bytes of `s`, cut at a character boundary, with `…` when cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The Markdown text of a chat message: the template's text, and the acknowledge link as a
/// Markdown link when there is one.
pub fn markdown(msg: &Message<'_>, max: usize) -> String {
    let links: Vec<String> = [("Acknowledge", msg.ack_url), ("Ticket", msg.ticket_url)]
        .into_iter()
        .filter_map(|(label, u)| u.map(|u| format!("[{label}]({u})")))
        .collect();
    let ack = if links.is_empty() {
        String::new()
    } else {
        format!("\n\n{}", links.join(" · "))
    };
    let room = max.saturating_sub(ack.len());
    format!("{}{ack}", cut(msg.body.trim_end(), room))
}

/// base64(HMAC-SHA256(key, data)).
pub fn hmac_b64(key: &[u8], data: &[u8]) -> String {
    // HMAC takes keys of any length: new_from_slice cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(data);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// `url` with `extra` appended to its query.
pub fn with_query(url: &str, extra: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{extra}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_characters_whole() {
        assert_eq!(cut("abc", 10), "abc");
        let c = cut("工单超时工单超时", 10);
        assert!(c.len() <= 10, "{c}");
        assert!(c.ends_with('…'));
    }
}

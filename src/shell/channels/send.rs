//! Sending over HTTP and reading the answer, as every HTTP channel does: the request goes
//! out, the status, headers and (capped) body come back, and the common reading turns them
//! into a [`Reply`] (429 waits for `Retry-After`, other failures retry).

use crate::shell::channels::channel::{Reply, TransportError, scrub};

/// `Retry-After` (seconds, as Slack, Teams and PagerDuty send it) or `fallback`.
pub fn retry_after(headers: &reqwest::header::HeaderMap, fallback: u64) -> std::time::Duration {
    let secs = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(fallback);
    // Bounded both ways: a zero would spin, an hour would look like a lost message.
    std::time::Duration::from_secs(secs.clamp(1, 600))
}

/// The status, headers and body of a vendor's HTTP answer (the body capped: it goes into
/// error texts).
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: reqwest::StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

/// A JSON POST, the request every chat and paging robot takes.
pub fn post_json(
    http: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> reqwest::RequestBuilder {
    http.post(url)
        .header("Content-Type", "application/json")
        .body(body.to_string())
}

/// Send a prepared request and read the answer; a transport error without the URL.
pub async fn send_http(
    req: reqwest::RequestBuilder,
    what: &str,
) -> Result<HttpReply, TransportError> {
    let resp = req
        .send()
        .await
        .map_err(|e| TransportError::new(what, without_url(&e)))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.text().await.unwrap_or_default();
    Ok(HttpReply {
        status,
        headers,
        body: body.chars().take(500).collect(),
    })
}

/// The common reading of an HTTP answer: 429 waits for `Retry-After`, other failures
/// retry, and a 2xx is handed to `ok` (which checks an error reported inside a 200 body).
pub fn classify_http(
    what: &str,
    res: Result<HttpReply, TransportError>,
    ok: impl FnOnce(&HttpReply) -> Reply,
) -> Reply {
    match res {
        Err(e) => Reply::Retry(e.to_string()),
        Ok(r) if r.status.as_u16() == 429 => Reply::Later {
            after: retry_after(&r.headers, 30),
            why: format!("{what} answered 429 (rate limited)"),
        },
        Ok(r) if r.status.is_success() => ok(&r),
        Ok(r) => Reply::Retry(scrub(&format!(
            "{what} answered HTTP {}: {}",
            r.status.as_u16(),
            r.body.trim()
        ))),
    }
}

/// A transport error without the URL (webhook URLs often carry a token).
pub fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "<url>");
    }
    if e.is_timeout() {
        return "timed out".into();
    }
    if e.is_connect() {
        return format!("connection failed ({s})");
    }
    s
}

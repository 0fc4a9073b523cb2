//! Who may call what (SPEC "Access and secrets"). Three bearer tokens, each optional:
//!
//! | token | may |
//! |---|---|
//! | `SLAKEEPER_API_TOKEN` | everything |
//! | `SLAKEEPER_READ_TOKEN` | `GET`/`HEAD` on `/v1/...`; a write answers 403 |
//! | `SLAKEEPER_METRICS_TOKEN` | `/metrics` (which then needs it, or the API token) |
//!
//! Always open: `/healthz`, `/readyz` (probes carry no credentials), `/v1/ack/{token}` (the
//! signed link is the credential), `/v1/sources/{name}` (each source checks its vendor's
//! signature or token) and the staff pages `/ui/...` (they take the API or read token from
//! their own login cookie, see `shell::ui`). Every other route is closed once an API token is set, including
//! routes added later: the check is by route template, defaulting to "needs a token".
//!
//! Tokens are compared in constant time (SHA-256 of both sides, so not even the length
//! leaks). Wrong or missing: 401; counted, like every answer, in
//! `slakeeper_http_requests_total{route,status}`.
//!
//! [`check_listen`] keeps `serve` from listening beyond loopback without an API token.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::shell::secret::Secret;

pub const REQUESTS_METRIC: &str = "slakeeper_http_requests_total";

/// The configured tokens (each None when not set).
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    pub api: Option<Secret>,
    pub read: Option<Secret>,
    pub metrics: Option<Secret>,
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    Nothing,
    Metrics,
    Api,
}

fn needs(route: &str) -> Needs {
    match route {
        "/healthz" | "/readyz" | "/v1/ack/{token}" | "/v1/sources/{name}" => Needs::Nothing,
        // The staff pages check the read or API token themselves, from the session cookie
        // their login page sets (a browser sends no bearer token), and redirect to it.
        r if r == "/ui" || r.starts_with("/ui/") => Needs::Nothing,
        "/metrics" => Needs::Metrics,
        _ => Needs::Api,
    }
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token, or one that is not ours: 401.
    Unauthorized,
    /// The read token on a write: 403.
    ReadOnly,
}

/// The bearer token of a request (scheme in any case, RFC 9110 §11.1).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
}

/// Constant time over the digests: neither the bytes nor the length of a token leak.
fn same(given: Option<&str>, token: Option<&Secret>) -> bool {
    match (given, token) {
        (Some(g), Some(t)) => {
            let a = Sha256::digest(g.as_bytes());
            let b = Sha256::digest(t.expose().as_bytes());
            bool::from(a.ct_eq(&b))
        }
        _ => false,
    }
}

impl Tokens {
    /// Whether a request's bearer token may read (`GET /v1/...`): the API or read token,
    /// or any request while no API token is set.
    pub fn may_read(&self, headers: &HeaderMap) -> bool {
        self.check("/v1/tickets/{id}", &Method::GET, headers)
            .is_ok()
    }

    /// Whether a request for `route` with `method` may pass.
    pub fn check(&self, route: &str, method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
        let given = bearer(headers);
        // Compare against every token, whatever matched first: the time taken does not say
        // which one a request carries.
        let api = same(given, self.api.as_ref());
        let read = same(given, self.read.as_ref());
        let metrics = same(given, self.metrics.as_ref());
        match needs(route) {
            Needs::Nothing => Ok(()),
            Needs::Metrics if self.metrics.is_none() || api || metrics => Ok(()),
            Needs::Metrics => Err(Refusal::Unauthorized),
            // No API token: the API is open (allowed on loopback, or on purpose).
            Needs::Api if self.api.is_none() || api => Ok(()),
            Needs::Api if read && matches!(*method, Method::GET | Method::HEAD) => Ok(()),
            Needs::Api if read => Err(Refusal::ReadOnly),
            Needs::Api => Err(Refusal::Unauthorized),
        }
    }
}

fn refused(r: Refusal) -> Response {
    let (status, code, message) = match r {
        Refusal::Unauthorized => (
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong `Authorization: Bearer <token>`",
        ),
        Refusal::ReadOnly => (
            StatusCode::FORBIDDEN,
            "forbidden",
            "this token may only read (GET); writes need SLAKEEPER_API_TOKEN",
        ),
    };
    let body = json!({"error": {"code": code, "message": message, "field": null}});
    let mut res = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    res
}

fn route_of(req: &Request) -> String {
    req.extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_string()
}

async fn require(State(tokens): State<Arc<Tokens>>, req: Request, next: Next) -> Response {
    match tokens.check(&route_of(&req), req.method(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(r) => refused(r),
    }
}

/// Count every answer by route template (bounded: the router's own) and status.
async fn count(req: Request, next: Next) -> Response {
    let route = route_of(&req);
    let res = next.run(req).await;
    metrics::counter!(REQUESTS_METRIC, "route" => route, "status" => res.status().as_u16().to_string())
        .increment(1);
    res
}

/// Put the token check and the request counter on every route of `router` (route layers
/// run after routing, so they see the route template; unknown paths stay 404).
pub fn protect(router: Router, tokens: Tokens) -> Router {
    metrics::describe_counter!(
        REQUESTS_METRIC,
        "HTTP requests answered, by route template and status (401: a missing or wrong token)."
    );
    router
        .route_layer(from_fn_with_state(Arc::new(tokens), require))
        .route_layer(from_fn(count))
}

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(
        "refusing to listen on {0} without an API token: anyone who reaches it could read and change tickets. Set SLAKEEPER_API_TOKEN (or SLAKEEPER_API_TOKEN_FILE), listen on 127.0.0.1, or pass --allow-unauthenticated (SLAKEEPER_ALLOW_UNAUTHENTICATED=1) when something in front authenticates"
    )]
    Open(SocketAddr),
    #[error(
        "SLAKEEPER_READ_TOKEN is set without SLAKEEPER_API_TOKEN: writes would need no token at all; set an API token too"
    )]
    ReadWithoutApi,
}

/// Whether `serve` may answer on `addr` with these tokens. `Ok(Some(warning))`: it may,
/// but the API is open, which `serve` says once.
pub fn check_listen(
    addr: SocketAddr,
    t: &Tokens,
    allow: bool,
) -> Result<Option<&'static str>, ListenError> {
    if t.read.is_some() && t.api.is_none() {
        return Err(ListenError::ReadWithoutApi);
    }
    if t.api.is_some() {
        return Ok(None);
    }
    if addr.ip().is_loopback() {
        return Ok(Some(
            "no API token (SLAKEEPER_API_TOKEN): the API is open to every local process",
        ));
    }
    if !allow {
        return Err(ListenError::Open(addr));
    }
    Ok(Some(
        "no API token and --allow-unauthenticated: the API is open to anyone who reaches this address",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            header::HeaderValue::from_str(&format!("bearer {token}")).expect("header"),
        );
        h
    }

    #[test]
    fn each_token_opens_its_own_doors() {
        let t = Tokens {
            api: Some(Secret::new("api")),
            read: Some(Secret::new("read")),
            metrics: Some(Secret::new("met")),
        };
        let none = HeaderMap::new();
        let (get, post) = (Method::GET, Method::POST);
        assert_eq!(t.check("/v1/events", &post, &with("api")), Ok(()));
        assert_eq!(
            t.check("/v1/events", &post, &with("read")),
            Err(Refusal::ReadOnly)
        );
        assert_eq!(t.check("/v1/tickets/{id}", &get, &with("read")), Ok(()));
        assert_eq!(
            t.check("/v1/tickets/{id}", &get, &with("met")),
            Err(Refusal::Unauthorized)
        );
        assert_eq!(
            t.check("/v1/tickets/{id}", &get, &none),
            Err(Refusal::Unauthorized)
        );
        assert_eq!(t.check("/metrics", &get, &with("met")), Ok(()));
        assert_eq!(t.check("/metrics", &get, &with("api")), Ok(()));
        assert_eq!(
            t.check("/metrics", &get, &with("read")),
            Err(Refusal::Unauthorized)
        );
        for open in [
            "/healthz",
            "/readyz",
            "/v1/ack/{token}",
            "/v1/sources/{name}",
        ] {
            assert_eq!(t.check(open, &post, &none), Ok(()), "{open}");
        }
        // A route added later is closed by default.
        assert_eq!(
            t.check("/v1/new-thing", &get, &none),
            Err(Refusal::Unauthorized)
        );
    }

    #[test]
    fn without_tokens_only_the_listen_check_guards() {
        let t = Tokens::default();
        assert_eq!(
            t.check("/v1/events", &Method::POST, &HeaderMap::new()),
            Ok(())
        );
        let any: SocketAddr = "0.0.0.0:8080".parse().expect("addr");
        let lo: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        assert!(matches!(
            check_listen(any, &t, false),
            Err(ListenError::Open(_))
        ));
        assert!(check_listen(any, &t, true).is_ok_and(|w| w.is_some()));
        assert!(check_listen(lo, &t, false).is_ok_and(|w| w.is_some()));
        let closed = Tokens {
            api: Some(Secret::new("a")),
            ..Tokens::default()
        };
        assert!(check_listen(any, &closed, false).is_ok_and(|w| w.is_none()));
        let read_only = Tokens {
            read: Some(Secret::new("r")),
            ..Tokens::default()
        };
        assert!(matches!(
            check_listen(lo, &read_only, false),
            Err(ListenError::ReadWithoutApi)
        ));
    }
}

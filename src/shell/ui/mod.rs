//! The staff pages (issue 22): `/ui/` (the at-risk list) and `/ui/tickets/{id}` (a ticket's
//! clocks, timeline, notifications and acknowledge buttons). Server-rendered HTML, no
//! script: MiniJinja templates with HTML auto-escaping (every value is escaped), one
//! stylesheet, a `<meta refresh>` on the list. English or Chinese by the workflow's
//! `language` (`?lang=en|zh-CN` overrides).
//!
//! Access follows the API: with no token configured the pages are open; otherwise the API
//! token (or a read token) is entered once on `/ui/login` and kept in an HttpOnly,
//! SameSite=Strict cookie holding an HMAC of it (not the token itself). The acknowledge
//! button posts to the signed acknowledge link, which needs no token. Every page sends a
//! Content-Security-Policy without script, `X-Frame-Options: DENY` and `no-store`.
//! Customer contact data is never shown (names are).

mod strings;
mod view;

use std::sync::LazyLock;

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Router, middleware};
use hmac::{Hmac, Mac};
use minijinja::Environment;
use sha2::Sha256;

use crate::core::ids::TicketId;
use crate::shell::secret::Secret;
use crate::shell::state::AppState;

pub use crate::core::ids::percent_encode;

const COOKIE: &str = "slakeeper_ui";
const CSS: &str = include_str!("templates/ui.css");

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // Names ending in .html are auto-escaped for HTML (MiniJinja's default).
    for (name, src) in [
        ("base.html", include_str!("templates/base.html")),
        ("login.html", include_str!("templates/login.html")),
        ("list.html", include_str!("templates/list.html")),
        ("ticket.html", include_str!("templates/ticket.html")),
        ("error.html", include_str!("templates/error.html")),
    ] {
        if let Err(e) = env.add_template(name, src) {
            tracing::error!(template = name, error = %e, "a built-in page template does not parse");
        }
    }
    env
});

/// A page from its template, or a plain 500 when rendering fails (a bug, logged).
fn page(status: StatusCode, name: &str, ctx: serde_json::Value) -> Response {
    match TEMPLATES
        .get_template(name)
        .and_then(|t| t.render(minijinja::value::Serde(&ctx)))
    {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "page rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "page rendering failed").into_response()
        }
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(list_page))
        .route("/ui/tickets/{id}", get(ticket_page))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/ui.css", get(css))
        .layer(middleware::map_response(security_headers))
}

/// No script, no framing, nothing cached, no referrer (URLs hold ticket ids).
async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    res
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

// ------------------------------------------------------------------ access

/// The tokens that open the pages: the API token and the read token.
fn tokens(st: &AppState) -> Vec<&Secret> {
    st.tokens.api.iter().chain(&st.tokens.read).collect()
}

/// The cookie value for a token: an HMAC of it, so the cookie is not the API token.
fn session_value(token: &Secret) -> String {
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(token.expose().as_bytes()) else {
        return String::new();
    };
    m.update(b"slakeeper ui session");
    hex::encode(m.finalize().into_bytes())
}

fn equal(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// Whether the request may see the pages: no token configured, the session cookie, or a
/// bearer token the API would take.
fn allowed(st: &AppState, headers: &HeaderMap) -> bool {
    let tokens = tokens(st);
    if tokens.is_empty() {
        return true;
    }
    if let Some(c) = cookie(headers)
        && tokens.iter().any(|t| equal(&c, &session_value(t)))
    {
        return true;
    }
    st.tokens.may_read(headers)
}

fn to_login(next: &str) -> Response {
    Redirect::to(&format!("/ui/login?next={}", percent_encode(next))).into_response()
}

#[derive(serde::Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
    next: Option<String>,
}

/// Only our own pages: an open redirect would let a link log staff in and send them away.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/ui/") && !n.starts_with("//") && !n.contains('\\') => {
            n.to_string()
        }
        _ => "/ui/".to_string(),
    }
}

async fn login_page(State(st): State<AppState>, Query(q): Query<LoginQuery>) -> Response {
    if tokens(&st).is_empty() {
        return Redirect::to("/ui/").into_response();
    }
    let next = safe_next(q.next.as_deref());
    page(StatusCode::OK, "login.html", view::login(&st, &next, None))
}

async fn login(State(st): State<AppState>, Form(f): Form<LoginForm>) -> Response {
    let next = safe_next(f.next.as_deref());
    let given = f.token.trim();
    let Some(ok) = tokens(&st)
        .into_iter()
        .find(|t| !given.is_empty() && equal(given, t.expose()))
    else {
        let ctx = view::login(&st, &next, Some(()));
        return page(StatusCode::UNAUTHORIZED, "login.html", ctx);
    };
    let set = format!(
        "{COOKIE}={}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=2592000",
        session_value(ok)
    );
    let mut res = Redirect::to(&next).into_response();
    if let Ok(v) = HeaderValue::from_str(&set) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

async fn logout() -> Response {
    let mut res = Redirect::to("/ui/login").into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("slakeeper_ui=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    res
}

// ------------------------------------------------------------------ pages

async fn list_page(
    State(st): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let pairs: Vec<(String, String)> = query.map(|Query(p)| p).unwrap_or_default();
    if !allowed(&st, &headers) {
        let q = serde_urlencoded_pairs(&pairs);
        return to_login(&format!("/ui/{q}"));
    }
    // An empty select means "all": leave it out.
    let pairs: Vec<(String, String)> = pairs.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    let (status, ctx) = view::list(&st, &pairs).await;
    page(status, "list.html", ctx)
}

/// `?a=b&c=d` from pairs, encoded, for the login page's way back.
fn serde_urlencoded_pairs(pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    format!("?{}", parts.join("&"))
}

async fn ticket_page(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<TicketId>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    if !allowed(&st, &headers) {
        return to_login(&format!("/ui/tickets/{}", percent_encode(id.as_str())));
    }
    let (status, name, ctx) = view::ticket(&st, &id, &q).await;
    page(status, name, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_ids_are_encoded_in_links_and_next_stays_on_our_pages() {
        assert_eq!(percent_encode("CS 1/2?x=<y>"), "CS%201%2F2%3Fx%3D%3Cy%3E");
        assert_eq!(percent_encode("工单"), "%E5%B7%A5%E5%8D%95");
        assert_eq!(percent_encode("a+b/c=="), "a%2Bb%2Fc%3D%3D");
        assert_eq!(safe_next(Some("/ui/tickets/A")), "/ui/tickets/A");
        assert_eq!(safe_next(Some("https://evil.example/")), "/ui/");
        assert_eq!(safe_next(Some("//evil.example/ui/")), "/ui/");
        assert_eq!(safe_next(None), "/ui/");
    }

    #[test]
    fn every_page_template_parses() {
        for name in [
            "base.html",
            "login.html",
            "list.html",
            "ticket.html",
            "error.html",
        ] {
            assert!(TEMPLATES.get_template(name).is_ok(), "{name}");
        }
    }
}

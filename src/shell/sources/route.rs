//! `POST /v1/sources/{name}`: a vendor webhook in, 202 out — within 2 s whatever happens,
//! because vendors time out, retry and eventually disable slow endpoints.
//!
//! | outcome | answer | stored |
//! |---|---|---|
//! | unknown source | 404 `not_found` | nothing |
//! | missing/wrong signature or token, stale timestamp | 401 `bad_signature` | nothing |
//! | unreadable payload | 400 `invalid_payload`, `field` = the JSON path | nothing |
//! | nothing for any clock | 202 `{"accepted":0,"duplicates":0,"ignored":1}` | nothing |
//! | new delivery | 202 `{"accepted":1,…,"events":N}` | N events |
//! | repeat of a delivery | 202 `{"duplicates":1,…}` | nothing new |
//!
//! Counts are per delivery (one request = one delivery, whatever number of events it
//! means), matching `slakeeper_source_requests_total{source,outcome}`. Error bodies have the
//! event API's shape `{"error":{"code","message","field"}}`; they never echo secrets or
//! payload values.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use super::{Delivery, Refused, Registry, Request};
use crate::shell::engine::{Engine, IngestError};
use crate::shell::metrics::{self, SourceOutcome};

/// Largest accepted webhook body (Zammad's default payload embeds users, groups and the
/// article's HTML).
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// The vendor gets an answer before this, stored or not (SPEC: within 2 s).
pub const DEADLINE: Duration = Duration::from_millis(1800);

#[derive(Clone)]
pub struct SourcesState {
    pub engine: Arc<Engine>,
    pub registry: Arc<Registry>,
}

/// The route, with its own state: merge it into the main router with
/// `.merge(sources::route::router(engine, registry))`.
pub fn router(engine: Arc<Engine>, registry: Arc<Registry>) -> Router {
    // Every (source, outcome) at 0 from the start, so rates work from the first request.
    metrics::describe_sources(registry.names());
    Router::new()
        .route("/v1/sources/{name}", post(post_source))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        // A sender that stalls mid-body must not hold the request past the vendor's patience.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(DEADLINE))
        .with_state(SourcesState { engine, registry })
}

fn error(status: StatusCode, code: &str, message: String, field: Option<String>) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message, "field": field}})),
    )
        .into_response()
}

async fn post_source(
    State(st): State<SourcesState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = std::time::Instant::now();
    let now = st.engine.now();
    let req = Request {
        headers: &headers,
        query: query.as_deref(),
        body: &body,
    };
    let delivery = match st.registry.handle(&name, &req, now) {
        Ok(d) => d,
        Err(why) => return refused(&name, why),
    };
    if delivery.events.is_empty() {
        metrics::source_request(&name, SourceOutcome::Ignored);
        return (
            StatusCode::ACCEPTED,
            Json(json!({"accepted": 0, "duplicates": 0, "ignored": 1})),
        )
            .into_response();
    }
    let left = DEADLINE.saturating_sub(started.elapsed());
    store(&st.engine, &name, &delivery, left).await
}

/// The answer to a request refused before anything is stored.
fn refused(name: &str, why: Refused) -> Response {
    match why {
        Refused::NotFound => {
            // Not counted: the name comes from the URL, so it would be an unbounded label.
            error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such source; sources are named in sources.yaml".into(),
                None,
            )
        }
        Refused::BadSignature(why) => {
            metrics::source_request(name, SourceOutcome::BadSignature);
            tracing::warn!(source = %name, reason = %why, "source request refused");
            error(
                StatusCode::UNAUTHORIZED,
                "bad_signature",
                why.to_string(),
                None,
            )
        }
        Refused::Unreadable(e) => {
            metrics::source_request(name, SourceOutcome::Invalid);
            // The path is logged, never the payload: it holds customer data.
            tracing::info!(source = %name, path = %e.path, "unreadable source payload");
            let field = (!e.path.is_empty()).then(|| e.path.clone());
            let msg = if e.path.is_empty() {
                e.message
            } else {
                format!("{}: {}", e.path, e.message)
            };
            error(StatusCode::BAD_REQUEST, "invalid_payload", msg, field)
        }
    }
}

/// Ingest the delivery's events within `left`, and answer with what came of it.
async fn store(engine: &Engine, name: &str, delivery: &Delivery, left: Duration) -> Response {
    let n = delivery.events.len();
    // Past the deadline the transaction is dropped (rolled back, or committed just before):
    // either way the vendor's retry is safe, because the ids make it a duplicate.
    match tokio::time::timeout(left, engine.ingest(&delivery.events, true)).await {
        Ok(Ok(r)) => {
            let dup = r.accepted == 0 && r.duplicates > 0;
            let outcome = if dup {
                SourceOutcome::Duplicate
            } else {
                SourceOutcome::Accepted
            };
            metrics::source_request(name, outcome);
            tracing::debug!(source = %name, delivery = %delivery.delivery, events = n, duplicate = dup, "source delivery");
            stored(n, dup, &delivery.delivery)
        }
        Ok(Err(IngestError::Conflict(_))) => {
            // The ids come from the delivery id, so this is a redelivery whose events differ
            // only where the vendor gave no time and the arrival stood in: still a repeat.
            metrics::source_request(name, SourceOutcome::Duplicate);
            stored(n, true, &delivery.delivery)
        }
        Ok(Err(IngestError::Bad(e))) => {
            metrics::source_request(name, SourceOutcome::Invalid);
            // Typically a mapped priority the ticket's workflow does not declare.
            error(StatusCode::BAD_REQUEST, e.code, e.message, e.field)
        }
        Ok(Err(IngestError::Db(e))) => {
            tracing::error!(source = %name, error = %e, "storing a source delivery failed");
            unavailable()
        }
        Err(_) => {
            tracing::warn!(source = %name, "source delivery not stored within the deadline");
            unavailable()
        }
    }
}

/// 202 for a stored delivery: new (`accepted`) or a repeat (`duplicates`).
fn stored(events: usize, dup: bool, delivery: &str) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(json!({
            "accepted": usize::from(!dup),
            "duplicates": usize::from(dup),
            "ignored": 0,
            "events": events,
            "delivery": delivery,
        })),
    )
        .into_response()
}

fn unavailable() -> Response {
    let mut r = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "not stored; retry later".into(),
        None,
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    r
}

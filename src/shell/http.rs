//! The HTTP API (SPEC "Event API"): `POST /v1/events`, `GET /v1/tickets/{id}`, `/healthz`,
//! `/readyz`, `/metrics`. One error shape for every 4xx (`{"error": {code, message, field}}`),
//! an opaque 5xx otherwise. Nothing is written unless the whole request is valid.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, State};
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Value, json};

use crate::core::event::{EventError, EventKind, parse_event};
use crate::shell::engine::{Engine, IngestError};
use crate::shell::metrics::{self, Metric};
use crate::shell::secret::Secret;
use crate::shell::{queue, show, store};

/// Largest accepted request body and batch.
pub const MAX_BODY: usize = 4 * 1024 * 1024;
pub const MAX_BATCH: usize = 1000;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub token: Option<Secret>,
    pub metrics: Option<PrometheusHandle>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/events", post(post_events))
        .route("/v1/tickets/{id}", get(get_ticket))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(state)
}

/// One span per request: the route template (never the raw path, which holds ticket ids
/// chosen by clients) and a request id to tie its log lines together.
fn request_span<B>(req: &Request<B>) -> tracing::Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    tracing::info_span!("http", method = %req.method(), route, request = %ulid::Ulid::new())
}

pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
}

impl ApiError {
    fn bad(e: EventError) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: e.code,
            message: e.message,
            field: e.field,
        }
    }
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({"error": {"code": self.code, "message": self.message, "field": self.field}});
        (self.status, Json(body)).into_response()
    }
}

fn authorize(st: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &st.token else {
        return Ok(());
    };
    let token = token.expose();
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Compare in constant time: the token is a secret.
    let ok = given.is_some_and(|g| {
        g.len() == token.len()
            && g.bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong `Authorization: Bearer <token>`",
        ))
    }
}

fn rejected(kind: Option<&Value>) {
    let kind = kind
        .and_then(Value::as_str)
        .and_then(EventKind::parse)
        .map(EventKind::as_str)
        .unwrap_or("invalid");
    metrics::record(&Metric::Event {
        kind,
        outcome: "rejected",
    });
}

async fn post_events(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    authorize(&st, &headers)?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| {
        rejected(None);
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("body is not valid JSON: {e}"),
        )
    })?;
    let now = st.engine.now();
    // Every shape error of a batch names the `events` field.
    let batch_error = |status, code, message: String| {
        rejected(None);
        ApiError {
            field: Some("events".into()),
            ..ApiError::new(status, code, message)
        }
    };
    let (items, batch): (Vec<Value>, bool) = match v {
        Value::Object(ref o) if o.contains_key("events") => match o.get("events") {
            Some(Value::Array(a)) if o.len() == 1 => (a.clone(), true),
            Some(Value::Array(_)) => {
                return Err(batch_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_batch",
                    "a batch is {\"events\": [...]} with no other fields".into(),
                ));
            }
            _ => {
                return Err(batch_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_batch",
                    "`events` must be an array".into(),
                ));
            }
        },
        other => (vec![other], false),
    };
    if items.is_empty() {
        return Err(batch_error(
            StatusCode::BAD_REQUEST,
            "empty_batch",
            "`events` is empty".into(),
        ));
    }
    if items.len() > MAX_BATCH {
        return Err(batch_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!("at most {MAX_BATCH} events per request"),
        ));
    }
    let mut events = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match parse_event(item, now) {
            Ok(e) => events.push(e),
            Err(e) => {
                for it in &items {
                    rejected(it.get("type"));
                }
                return Err(ApiError::bad(if batch { e.in_batch(i) } else { e }));
            }
        }
    }
    // Within one request an id may appear once: a repeat is a client bug, not a retry.
    let mut seen = std::collections::HashSet::new();
    for (i, e) in events.iter().enumerate() {
        if !seen.insert(e.id.as_str()) {
            for it in &items {
                rejected(it.get("type"));
            }
            let err = EventError::new(
                "duplicate_in_batch",
                Some("id"),
                format!("event id `{}` appears twice in this batch", e.id),
            );
            return Err(ApiError::bad(err.in_batch(i)));
        }
    }
    match st.engine.ingest(&events, batch).await {
        Ok(r) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({"accepted": r.accepted, "duplicates": r.duplicates})),
        )),
        Err(IngestError::Bad(e)) => {
            for ev in &events {
                metrics::record(&Metric::Event {
                    kind: ev.kind.as_str(),
                    outcome: "rejected",
                });
            }
            Err(ApiError::bad(e))
        }
        Err(IngestError::Db(e)) => {
            tracing::error!(error = %e, "ingest failed");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the events were not stored; retry later",
            ))
        }
    }
}

async fn get_ticket(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&st, &headers)?;
    match show::load(&st.engine, &id).await {
        Ok(Some(view)) => Ok(Json(show::to_json(&view))),
        Ok(None) => Err(ApiError {
            field: Some("id".into()),
            ..ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no ticket `{id}`"),
            )
        }),
        Err(e) => {
            tracing::error!(error = %e, "ticket show failed");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "database unavailable",
            ))
        }
    }
}

async fn readyz(State(st): State<AppState>) -> Response {
    let db = &st.engine.db;
    let expected = queue::expected_migrations(db) as i64;
    match store::applied_migrations(db).await {
        Ok(n) if n >= expected => (StatusCode::OK, "ready\n").into_response(),
        Ok(_) => (StatusCode::SERVICE_UNAVAILABLE, "migrations not applied\n").into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n").into_response(),
    }
}

async fn metrics_text(State(st): State<AppState>) -> Response {
    let (idle, in_use, max) = st.engine.db.pool_stats();
    metrics::pool(idle, in_use, max);
    match &st.metrics {
        Some(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics disabled\n").into_response(),
    }
}

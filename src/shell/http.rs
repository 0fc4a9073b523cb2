//! The HTTP API (SPEC "Event API"): `POST /v1/events`, `GET /v1/tickets/{id}`, `/healthz`,
//! `/readyz`, `/metrics`. One error shape for every 4xx (`{"error": {code, message, field}}`),
//! an opaque 5xx otherwise. Nothing is written unless the whole request is valid.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, State};
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::core::event::{EventError, EventKind, parse_event};
use crate::core::ids::TicketId;
use crate::shell::engine::IngestError;
use crate::shell::metrics::{self, EventOutcome, Metric};
use crate::shell::{auth, json_input, queue, show};

/// Largest accepted request body and batch.
pub const MAX_BODY: usize = 4 * 1024 * 1024;
pub const MAX_BATCH: usize = 1000;
/// How long a client may take to send its body (the header timeout is a setting).
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub use crate::shell::state::AppState;

pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// [`router`] plus routes that carry their own state (`/v1/sources/{name}`), merged before
/// the layers so they get the same JSON errors, fallback, timeouts and request spans.
pub fn router_with(state: AppState, extra: Router) -> Router {
    let tokens = state.tokens.clone();
    let routes = Router::new()
        .route("/v1/events", post(post_events))
        .route("/v1/tickets/{id}", get(get_ticket))
        .merge(probe_routes())
        .merge(crate::shell::ack::routes())
        .route("/v1/at-risk", get(get_at_risk))
        .route("/v1/erasures", post(post_erasure))
        .merge(crate::shell::ui::routes())
        .with_state(state)
        .merge(extra);
    layers(auth::protect(routes, tokens))
}

/// What a `--role worker` process answers: liveness, readiness and its own metrics (the
/// timers it fires, the deliveries it sends, and the database-wide gauges when it holds
/// their lease), with the same tokens, layers and error shape as the API.
pub fn probes_router(state: AppState) -> Router {
    let tokens = state.tokens.clone();
    layers(auth::protect(probe_routes().with_state(state), tokens))
}

fn probe_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
}

fn layers(routes: Router) -> Router {
    routes
        .layer(DefaultBodyLimit::max(MAX_BODY))
        // A client that stops sending its body mid-way holds a connection: cut it off.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            BODY_TIMEOUT,
        ))
        .layer(axum::middleware::from_fn(json_errors))
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(request_span))
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

/// Longest field name, and longest attribute value (as JSON), an event may carry.
pub const MAX_KEY: usize = 64;
pub const MAX_ATTRIBUTE: usize = 4096;

/// Bounds the event parser does not know about: a field name is echoed in error messages,
/// so a megabyte-long one is refused before it can be; an attribute value is stored with the
/// event and copied into the ticket, so its size is capped.
fn precheck(item: &Value) -> Result<(), EventError> {
    let Some(obj) = item.as_object() else {
        return Ok(());
    };
    if obj.contains_key("received_at") {
        return Err(EventError::new(
            "unknown_field",
            Some("received_at"),
            "`received_at` is set by slakeeper when it accepts an event; leave it out",
        ));
    }
    for k in obj.keys() {
        if k.chars().count() > MAX_KEY {
            return Err(EventError::new(
                "unknown_field",
                Some(&json_input::shown(k)),
                format!("field names are at most {MAX_KEY} characters"),
            ));
        }
    }
    if let Some(Value::Object(attrs)) = obj.get("attributes") {
        for (k, v) in attrs {
            let field = format!("attributes.{}", json_input::shown(k));
            if k.chars().count() > MAX_KEY {
                return Err(EventError::new(
                    "invalid_attribute",
                    Some(&field),
                    format!("attribute names are at most {MAX_KEY} characters"),
                ));
            }
            if v.to_string().len() > MAX_ATTRIBUTE {
                return Err(EventError::new(
                    "attribute_too_large",
                    Some(&field),
                    format!("`{field}` is larger than {MAX_ATTRIBUTE} bytes as JSON"),
                ));
            }
        }
    }
    Ok(())
}

/// Only `application/json` bodies: a browser page on the same host can post `text/plain`
/// across origins without a preflight, so accepting it would let any page inject events.
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        rejected(None);
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as `Content-Type: application/json`",
        ))
    }
}

/// Every error answer is JSON, including the ones axum makes itself (unknown route, wrong
/// method, body too large, timeouts), so clients parse one shape.
async fn json_errors(req: Request<axum::body::Body>, next: axum::middleware::Next) -> Response {
    // The staff pages answer errors as pages.
    let page = req.uri().path().starts_with("/ui/");
    let res = next.run(req).await;
    if page {
        return res;
    }
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res;
    }
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such endpoint".to_string()),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this endpoint does not take that method".to_string(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "body_too_large",
            format!("the body is larger than {MAX_BODY} bytes"),
        ),
        StatusCode::REQUEST_TIMEOUT => (
            "timeout",
            "the request was not received in time".to_string(),
        ),
        s if s.is_server_error() => ("unavailable", "try again later".to_string()),
        _ => ("bad_request", "the request was refused".to_string()),
    };
    let mut out = ApiError::new(status, code, message).into_response();
    // Keep headers such as `Allow` on 405.
    for (k, v) in res.headers() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

fn rejected(kind: Option<&Value>) {
    let kind = kind
        .and_then(Value::as_str)
        .and_then(EventKind::parse)
        .map(EventKind::as_str)
        .unwrap_or("invalid");
    metrics::record(&Metric::Event {
        kind,
        outcome: EventOutcome::Rejected,
    });
}

/// The events of a body: one object, or `{"events": [...]}` (1 to MAX_BATCH of them).
/// Every shape error of a batch names the `events` field.
fn batch_items(v: Value) -> Result<(Vec<Value>, bool), ApiError> {
    let batch_error = |status, code, message: String| {
        rejected(None);
        ApiError {
            field: Some("events".into()),
            ..ApiError::new(status, code, message)
        }
    };
    let (items, batch): (Vec<Value>, bool) = match v {
        Value::Object(mut o) if o.contains_key("events") => match o.remove("events") {
            Some(Value::Array(a)) if o.is_empty() => (a, true),
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
    Ok((items, batch))
}

/// The answer to an ingest: 202 with the counts, or the error in the API's shape.
fn ingest_answer(
    r: Result<crate::shell::engine::Ingested, IngestError>,
    events: &[crate::core::event::Event],
) -> Result<(StatusCode, Json<Value>), ApiError> {
    match r {
        Ok(r) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({"accepted": r.accepted, "duplicates": r.duplicates})),
        )),
        Err(IngestError::Bad(e)) => {
            for ev in events {
                metrics::record(&Metric::Event {
                    kind: ev.kind.as_str(),
                    outcome: EventOutcome::Rejected,
                });
            }
            Err(ApiError::bad(e))
        }
        Err(IngestError::Conflict(e)) => {
            for ev in events {
                metrics::record(&Metric::Event {
                    kind: ev.kind.as_str(),
                    outcome: EventOutcome::Rejected,
                });
            }
            Err(ApiError {
                status: StatusCode::CONFLICT,
                ..ApiError::bad(e)
            })
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

async fn post_events(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    require_json(&headers)?;
    let v = json_input::parse_strict(&body).map_err(|e| {
        rejected(None);
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: e.code,
            message: e.message,
            field: e.field,
        }
    })?;
    let now = st.engine.now();
    let (items, batch) = batch_items(v)?;
    let mut events = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match precheck(item).and_then(|()| parse_event(item, now)) {
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
    ingest_answer(st.engine.ingest(&events, batch).await, &events)
}

async fn get_ticket(
    State(st): State<AppState>,
    Path(id): Path<TicketId>,
) -> Result<Json<Value>, ApiError> {
    if id.as_str().contains('\0') || id.as_str().len() > 200 {
        return Err(ApiError {
            field: Some("id".into()),
            ..ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_id",
                "a ticket id is at most 200 characters, with no NUL",
            )
        });
    }
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

/// `GET /v1/at-risk` (issue 22): the running clock runs due within `within` or breached.
async fn get_at_risk(
    State(st): State<AppState>,
    query: Result<
        axum::extract::Query<Vec<(String, String)>>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<Json<Value>, ApiError> {
    use crate::shell::at_risk;
    let bad = |field: String, message: String| ApiError {
        field: Some(field),
        ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message)
    };
    let axum::extract::Query(pairs) =
        query.map_err(|e| bad("query".into(), format!("unreadable query string: {e}")))?;
    let q = at_risk::Query::parse(&pairs, &at_risk::Catalog::of(&st.engine.cfg.catalog))
        .map_err(|e| bad(e.field, e.message))?;
    match at_risk::list(&st.engine, &q).await {
        Ok(l) => Ok(Json(at_risk::to_json(&l))),
        Err(e) => {
            tracing::error!(error = %e, "at-risk list failed");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "database unavailable",
            ))
        }
    }
}

async fn readyz(State(st): State<AppState>) -> Response {
    let r = crate::shell::ready::check(&st.engine).await;
    let status = if r == crate::shell::ready::Readiness::Ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, r.text()).into_response()
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

/// Serve `app` on `listener` until `stop`. Our own accept loop instead of `axum::serve`,
/// because it sets a header-read timeout: a client that never finishes its headers is
/// dropped after `header_timeout` instead of holding a connection for good.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    stop: tokio::sync::watch::Receiver<bool>,
    header_timeout: std::time::Duration,
) {
    serve_with(listener, app, stop, header_timeout, None).await
}

/// [`serve`], over TLS when `tls` is given (`--tls-cert`/`--tls-key`, see `shell::tls`).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    app: Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
    header_timeout: std::time::Duration,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    use hyper_util::service::TowerToHyperService;
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = queue::stopped(&mut stop) => return,
        };
        let svc = TowerToHyperService::new(app.clone());
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => connection(stream, svc, header_timeout).await,
                // The handshake counts against the header timeout: a client that never
                // finishes it must not hold the connection either.
                Some(a) => match tokio::time::timeout(header_timeout, a.accept(stream)).await {
                    Ok(Ok(s)) => connection(s, svc, header_timeout).await,
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                },
            }
        });
    }
}

/// One connection, HTTP/1.1 or HTTP/2, until the client or the server closes it.
async fn connection<S>(
    stream: S,
    svc: hyper_util::service::TowerToHyperService<Router>,
    header_timeout: std::time::Duration,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    let mut b = Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let _ = b
        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
        .await;
}

/// `POST /v1/erasures` (issue 21): erase a customer's personal data, as `slakeeper erase`
/// does. Full access only: it is a write, so the read token gets 403 (`auth`).
async fn post_erasure(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    use crate::shell::erase;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case("application/json")
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as `Content-Type: application/json`",
        ));
    }
    let v = json_input::parse_strict(&body).map_err(|e| ApiError {
        status: StatusCode::BAD_REQUEST,
        code: e.code,
        message: e.message,
        field: e.field,
    })?;
    let (subject, dry_run) = erase::parse_request(&v).map_err(ApiError::bad)?;
    // No VACUUM FULL from the API: it would lock the tables ingest writes to.
    match erase::erase(&st.engine, &subject, dry_run, false).await {
        Ok(e) => Ok(Json(json!(e))),
        Err(e @ (erase::EraseError::NoTicket(_) | erase::EraseError::NoCustomer)) => Err(
            ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
        ),
        Err(erase::EraseError::Db(e)) => {
            tracing::error!(error = %e, "erasure failed");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "database unavailable; nothing or only whole tickets were erased: retry",
            ))
        }
    }
}

//! The acknowledge link's answer: `GET /v1/ack/{token}` shows a confirmation page (mail
//! scanners and chat link previews fetch links; they must acknowledge nothing); its button
//! `POST`s to the same URL, which records an `escalation.acknowledged` event. A tampered or
//! expired token answers 4xx and changes nothing. The tokens are made and checked in
//! `shell::links`.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use sha2::Digest;

use crate::shell::links::{TokenError, check};
use crate::shell::state::AppState;

/// `GET` (confirmation page) and `POST` (acknowledge) on `/v1/ack/{token}`. No bearer
/// token: the signed link is the authorisation, as staff open it from a chat or a mail.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/ack/{token}", get(confirm_page).post(acknowledge))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn refused(e: TokenError) -> Response {
    let status = match e {
        TokenError::Expired => StatusCode::GONE,
        TokenError::Invalid => StatusCode::FORBIDDEN,
        TokenError::NotConfigured => StatusCode::NOT_FOUND,
    };
    (
        status,
        Html(format!(
            "<!doctype html><title>slakeeper</title><p>{e}.</p>"
        )),
    )
        .into_response()
}

/// Shows what would be acknowledged and a button; acknowledges nothing, because link
/// previews and mail scanners fetch links.
async fn confirm_page(State(st): State<AppState>, Path(token): Path<String>) -> Response {
    match check(&token, st.engine.now()) {
        Err(e) => refused(e),
        Ok(a) => Html(format!(
            "<!doctype html><meta charset=utf-8><title>Acknowledge escalation</title>\
             <h1>Acknowledge the {clock} escalation of ticket {ticket}?</h1>\
             <p>Repeats and later escalation levels of this clock stop.</p>\
             <form method=post><button type=submit>Acknowledge</button></form>",
            clock = escape(&a.clock),
            ticket = escape(a.ticket.as_str()),
        ))
        .into_response(),
    }
}

/// Records `escalation.acknowledged` for the link's clock. The event id is derived from the
/// token, so pressing the button twice is a duplicate, applied once.
async fn acknowledge(State(st): State<AppState>, Path(token): Path<String>) -> Response {
    let now = st.engine.now();
    let a = match check(&token, now) {
        Ok(a) => a,
        Err(e) => return refused(e),
    };
    let id = format!(
        "ack-{}",
        &hex::encode(sha2::Sha256::digest(token.as_bytes()))[..24]
    );
    let v = serde_json::json!({
        "id": id, "ticket": a.ticket, "type": "escalation.acknowledged",
        "at": now.to_rfc3339(), "clock": a.clock,
    });
    let ev = match crate::core::event::parse_event(&v, now) {
        Ok(ev) => ev,
        Err(e) => return (StatusCode::BAD_REQUEST, e.message).into_response(),
    };
    match st.engine.ingest(&[ev], false).await {
        Ok(_) => Html(format!(
            "<!doctype html><meta charset=utf-8><title>Acknowledged</title>\
             <h1>Acknowledged: the {} escalation of ticket {}.</h1>\
             <p><a href=\"/ui/tickets/{}\">Back to the ticket</a></p>",
            escape(&a.clock),
            escape(a.ticket.as_str()),
            crate::core::ids::percent_encode(a.ticket.as_str())
        ))
        .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "acknowledgement not stored");
            (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response()
        }
    }
}

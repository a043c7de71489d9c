//! The baseline gateway's HTTP edge: `GET /api/page` with the session ID in
//! the `x-session-id` header, answered with the real gateway's page JSON and
//! errors (401 `invalid_session`, 503 `not_ready`, 504 `deadline_exceeded`).
//! How the parts are fetched is the design's ([`Source`]).

use std::time::{Duration, Instant};

use axum::{
    extract::State,
    http::HeaderMap,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use gateway::{cookies::COOKIE_NAME, error::ApiError, page::PageResponse};
use storefront_runtime::{health, Readiness, Telemetry};
use storefront_schemas::{now_ms, PageCompleted, PageStatus, SessionId};
use tracing::Instrument;

use crate::{http::Peers, parts::PageJoin, queues::Poller};

/// The request header that names the session. The baseline gateways check
/// no cookie signature: the session ID is what the real gateway's signed
/// cookie carries before its `.` (see [`session_id_from_cookie`]).
pub const SESSION_HEADER: &str = "x-session-id";

/// The session ID in a real gateway's session cookie: from a `Cookie` or
/// `Set-Cookie` header value (`sf_session=<id>.<signature>; ...`) or from
/// the cookie value alone. The signature is not checked.
pub fn session_id_from_cookie(cookie: &str) -> Option<SessionId> {
    cookie
        .split(';')
        .map(str::trim)
        .find_map(|pair| match pair.split_once('=') {
            Some((name, value)) if name == COOKIE_NAME => Some(value),
            Some(_) => None,
            None => Some(pair),
        })
        .and_then(|value| SessionId::parse(value.split('.').next()?).ok())
}

/// Where the parts of a page come from.
#[derive(Clone)]
pub(crate) enum Source {
    Http(Peers),
    Redis(Poller),
}

#[derive(Clone)]
struct Edge {
    source: Source,
    deadline: Duration,
    telemetry: Telemetry,
}

/// `/api/page`, `/healthz` and `/readyz`.
pub(crate) fn router(
    source: Source,
    deadline: Duration,
    telemetry: Telemetry,
    readiness: Readiness,
) -> Router {
    let edge = Edge {
        source,
        deadline,
        telemetry,
    };
    Router::new()
        .route("/api/page", get(page))
        .with_state(edge)
        .merge(health::router(readiness))
}

async fn page(State(edge): State<Edge>, headers: HeaderMap) -> Response {
    let Some(session) = headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| SessionId::parse(v.trim()).ok())
    else {
        return ApiError::InvalidSession.into_response();
    };
    let join = PageJoin::new(&session, edge.deadline.as_millis() as u64);
    let requested_at_ms = now_ms();
    let span =
        tracing::info_span!("request", request_id = %join.request_id(), session_id = %session);
    // Every wait inside ends at this instant: the page is never later than
    // the deadline plus the time to write it out.
    let deadline = Instant::now() + edge.deadline;
    let answer = match &edge.source {
        Source::Http(peers) => peers.page(join, deadline.into()).instrument(span).await,
        Source::Redis(poller) => poller.page(join, deadline.into()).instrument(span).await,
    };
    let outcome = match &answer {
        Ok(page) => gateway::status_name(page.status),
        Err(ApiError::DeadlineExceeded) => "timeout",
        Err(_) => "unavailable",
    };
    edge.telemetry
        .metrics()
        .page_latency
        .with_label_values(&[outcome])
        .observe((now_ms() - requested_at_ms).max(0) as f64 / 1000.0);
    match answer {
        Ok(page) => answer_with(page),
        Err(error) => error.into_response(),
    }
}

/// The real gateway's answer to a finished page.
fn answer_with(page: PageCompleted) -> Response {
    tracing::debug!(status = ?page.status, missing = ?page.missing, "answered");
    match page.status {
        PageStatus::Complete | PageStatus::Partial => {
            Json(PageResponse::from_completed(page)).into_response()
        }
        PageStatus::Rejected => ApiError::InvalidSession.into_response(),
        PageStatus::Unavailable => ApiError::DeadlineExceeded.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_id_is_read_from_a_cookie_without_checking_its_signature() {
        let session = SessionId::new();
        let set_cookie = format!("{COOKIE_NAME}={session}.c2lnbmF0dXJl; Path=/; HttpOnly");
        assert_eq!(session_id_from_cookie(&set_cookie), Some(session));
        assert_eq!(
            session_id_from_cookie(&format!("other=1; {COOKIE_NAME}={session}.x")),
            Some(session)
        );
        assert_eq!(session_id_from_cookie(&session.to_string()), Some(session));
        assert_eq!(session_id_from_cookie("sf_session=garbage.x"), None);
    }
}

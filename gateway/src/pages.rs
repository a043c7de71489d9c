//! The asynchronous request-reply API: `POST /api/pages` starts a page
//! request and waits up to the sync budget; past it (or at once with
//! `Prefer: respond-async`) it answers `202 Accepted` with a status URL.
//! Status, result and the event stream are served by any gateway: they are
//! read back from the topics (see `progress`), not from the memory of the
//! gateway that started the request.

use std::{convert::Infallible, time::Duration};

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Extension, Path, State},
    http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode},
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
    Json,
};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use storefront_runtime::http::is_body_timeout;
use storefront_schemas::{now_ms, PageStatus, RequestContext, RequestId, SessionId};
use utoipa::ToSchema;

use crate::{
    cookies::session_from,
    error::{self, ApiError},
    lifecycle::{Answer, AsyncOptions, Submission},
    page::{result_of, PageResponse},
    progress::{CallbackState, PartName, Progress},
    routes::RequestTrace,
    state::AppState,
};

/// How long a status stream stays open past the request's deadline
/// without a result (then it says so; the client may reconnect).
const STREAM_PATIENCE_MS: i64 = 120_000;
const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The page of the session in the cookie, waited for synchronously (504 past the deadline).
#[utoipa::path(
    get, path = "/api/page", tag = "pages",
    responses(
        (status = 200, description = "The page", body = PageResponse),
        (status = 401, description = "No valid session", body = error::ErrorBody),
        (status = 429, description = "Shed; see `Retry-After`", body = error::ErrorBody),
        (status = 503, description = "Not ready, or no broker", body = error::ErrorBody),
        (status = 504, description = "No page by the deadline and its grace", body = error::ErrorBody),
    )
)]
pub(crate) async fn page(
    State(state): State<AppState>,
    Extension(RequestTrace(trace)): Extension<RequestTrace>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let session =
        session_from(&headers, &state.inner.settings.cookie_key).ok_or(ApiError::InvalidSession)?;
    let page = state.request_page_sync(session, false, &trace).await?;
    match page.status {
        PageStatus::Complete | PageStatus::Partial => {
            Ok(Json(PageResponse::from_completed(page)).into_response())
        }
        PageStatus::Rejected => Ok(state.clear_session(ApiError::InvalidSession.into_response())),
        PageStatus::Unavailable => Err(ApiError::DeadlineExceeded),
    }
}

/// A page request that runs on: where to follow it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub request_id: String,
    #[schema(example = "running")]
    pub status: &'static str,
    /// `GET` it for the status (also in `Location`).
    pub status_url: String,
    pub result_url: String,
    /// Server-Sent Events: one per part received, then the result.
    pub events_url: String,
}

impl Accepted {
    /// `202 Accepted`, `Location` the status URL, `Retry-After: 1`.
    pub fn response(context: &RequestContext, replayed: Option<bool>) -> Response {
        let id = &context.request_id;
        let status_url = format!("/api/pages/{id}");
        let body = Accepted {
            request_id: id.to_string(),
            status: "running",
            result_url: format!("{status_url}/result"),
            events_url: format!("{status_url}/events"),
            status_url: status_url.clone(),
        };
        let mut response = (
            StatusCode::ACCEPTED,
            [
                (header::LOCATION, header_value(&status_url)),
                (header::RETRY_AFTER, HeaderValue::from_static("1")),
            ],
            Json(body),
        )
            .into_response();
        mark_replayed(&mut response, replayed);
        response
    }
}

/// Where a request stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusView {
    pub request_id: String,
    /// `running`, or `done` (then the response is a 303 to the result).
    #[schema(example = "running")]
    pub status: &'static str,
    pub parts_received: usize,
    /// The parts received, in the order they arrived.
    pub parts: Vec<PartName>,
    pub requested_at_ms: i64,
    pub deadline_ms: i64,
    /// How it ended, once done: complete, partial, rejected or unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback: Option<CallbackState>,
}

impl StatusView {
    fn of(progress: &Progress) -> Self {
        Self {
            request_id: progress.context.request_id.to_string(),
            status: if progress.page.is_some() {
                "done"
            } else {
                "running"
            },
            parts_received: progress.parts.len(),
            parts: progress.parts.clone(),
            requested_at_ms: progress.context.requested_at_ms,
            deadline_ms: progress.context.deadline_ms,
            outcome: progress
                .page
                .as_ref()
                .map(|p| crate::lifecycle::status_name(p.status)),
            callback: progress.callback.clone(),
        }
    }
}

/// One Server-Sent Event of a request's stream.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamEvent {
    /// `part`, `result`, or `timeout` (no result two minutes past the deadline).
    #[schema(example = "part")]
    pub event: String,
    /// The events sent so far, for `Last-Event-ID` (none on `timeout`).
    #[schema(example = "user,history")]
    pub id: Option<String>,
    /// JSON: `{request_id, part, parts_received}`, the result with its
    /// `http_status`, or `{request_id, error}`.
    pub data: String,
}

/// The optional body of `POST /api/pages`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePage {
    /// Where to POST the result (Standard Webhooks), if anywhere: an
    /// `https` URL on a host the gateway allows, at most 2048 bytes as
    /// sent and once percent-encoded (else 403).
    #[serde(default)]
    #[schema(format = "uri", max_length = 2048)]
    pub callback_url: Option<String>,
}

/// Start a page request for the session in the cookie.
#[utoipa::path(
    post, path = "/api/pages", tag = "pages",
    request_body(content = Option<CreatePage>, description = "Optional; empty body for none"),
    params(
        ("Prefer" = Option<String>, Header, description = "`respond-async` answers 202 at once; `wait=N` waits at most N seconds"),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "A repeat with the same key (same session, within the result TTL) returns the first request's result and starts nothing; 1 to 255 visible ASCII characters"),
    ),
    responses(
        (status = 200, description = "The page, within the sync budget", body = PageResponse),
        (status = 202, description = "Running: follow `Location`", body = Accepted),
        (status = 400, description = "Malformed body, bad header or a callback URL that is not one", body = error::ErrorBody),
        (status = 401, description = "No valid session", body = error::ErrorBody),
        (status = 403, description = "The callback URL is not one this gateway may call", body = error::ErrorBody),
        (status = 408, description = "The body did not arrive in time", body = error::ErrorBody),
        (status = 413, description = "Body too large", body = error::ErrorBody),
        (status = 415, description = "Body not JSON", body = error::ErrorBody),
        (status = 429, description = "Shed; see `Retry-After`", body = error::ErrorBody),
        (status = 503, description = "Not ready, or no broker", body = error::ErrorBody),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(RequestTrace(trace)): Extension<RequestTrace>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let session =
        session_from(&headers, &state.inner.settings.cookie_key).ok_or(ApiError::InvalidSession)?;
    let options = AsyncOptions::from_headers(&headers)?;
    let request = optional_json::<CreatePage>(&headers, body, state.inner.settings.max_body_bytes)?;
    let callback_url = state.checked_callback(request.callback_url)?;
    let budget = options.budget(state.sync_budget());
    if let Some(key) = &options.idempotency_key {
        if let Some(context) = state.idempotent_request(session, key).await? {
            tracing::info!(request_id = %context.request_id, "idempotent repeat: no new request");
            return state.replay(context, budget).await;
        }
    }
    let submission = Submission {
        session,
        login: None,
        logout: false,
        callback_url,
        idempotency_key: options.idempotency_key,
    };
    match state.request_page(submission, budget, &trace).await? {
        Answer::Page(page) => Ok(state.result_response(&Progress::from_page(*page, None), None)),
        Answer::Pending(context) => Ok(Accepted::response(&context, None)),
    }
}

/// The status of a request of this session.
#[utoipa::path(
    get, path = "/api/pages/{id}", tag = "pages",
    params(("id" = String, Path, description = "The request id (from `Location`)")),
    responses(
        (status = 200, description = "Running", body = StatusView),
        (status = 303, description = "Done: `Location` is the result", body = StatusView),
        (status = 401, description = "No valid session", body = error::ErrorBody),
        (status = 404, description = "No such request of this session", body = error::ErrorBody),
        (status = 410, description = "Older than the result TTL", body = error::ErrorBody),
        (status = 503, description = "The topics cannot be read now", body = error::ErrorBody),
    )
)]
pub(crate) async fn status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let progress = state.progress_for(&headers, &id).await?;
    let view = Json(StatusView::of(&progress));
    Ok(if progress.page.is_some() {
        let result = format!("/api/pages/{}/result", progress.context.request_id);
        (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, header_value(&result))],
            view,
        )
            .into_response()
    } else {
        ([(header::RETRY_AFTER, HeaderValue::from_static("1"))], view).into_response()
    })
}

/// The result of a finished request: the page, or the error it ended in.
#[utoipa::path(
    get, path = "/api/pages/{id}/result", tag = "pages",
    params(("id" = String, Path, description = "The request id")),
    responses(
        (status = 200, description = "The page", body = PageResponse),
        (status = 202, description = "Not done yet: `Location` is the status", body = Accepted),
        (status = 401, description = "No valid session, or the login or session was rejected", body = error::ErrorBody),
        (status = 404, description = "No such request of this session", body = error::ErrorBody),
        (status = 410, description = "Older than the result TTL", body = error::ErrorBody),
        (status = 504, description = "The user could not be resolved by the deadline", body = error::ErrorBody),
    )
)]
pub(crate) async fn result(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let progress = state.progress_for(&headers, &id).await?;
    if progress.page.is_none() {
        return Ok(Accepted::response(&progress.context, None));
    }
    Ok(state.result_response(&progress, None))
}

/// Server-Sent Events of a request: `part` for each part received (its id
/// lists every part so far), then `result` with the result JSON. A client
/// that reconnects with `Last-Event-ID` is sent only what that id lacks.
#[utoipa::path(
    get, path = "/api/pages/{id}/events", tag = "pages",
    params(
        ("id" = String, Path, description = "The request id"),
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received, to resume after it"),
    ),
    responses(
        (status = 200, description = "`text/event-stream`: `part` events `{request_id, part, parts_received}`, then one `result` event with the result JSON and its `http_status`", content_type = "text/event-stream", body = StreamEvent),
        (status = 401, description = "No valid session", body = error::ErrorBody),
        (status = 404, description = "No such request of this session", body = error::ErrorBody),
        (status = 410, description = "Older than the result TTL", body = error::ErrorBody),
        (status = 429, description = "As many streams open as this session, or this gateway, may hold; see `Retry-After`", body = error::ErrorBody),
        (status = 503, description = "The topics cannot be read now", body = error::ErrorBody),
    )
)]
pub(crate) async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let (session, request_id, created_ms) = state.request_named(&headers, &id)?;
    let mut slot = state.inner.streams.open(session)?;
    let log = &state.inner.log;
    // Watch first, then look up: a record is in one or the other.
    slot.watch(request_id, log.stream_partitions(session).await?)
        .await?;
    let mut first = state
        .progress_by(session, request_id, created_ms)
        .await?
        .ok_or(ApiError::NotFound)?;
    if first.page.is_none() {
        if let Some(reply) = log.reply_partition(&first.context) {
            slot.watch(request_id, vec![reply]).await?;
            // A page written before that watch began is on the topics.
            if let Some(again) = state.progress_by(session, request_id, created_ms).await? {
                first = again;
            }
        }
    }
    let mut sent: Vec<String> = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(events_already_sent)
        .unwrap_or_default();
    let mut records = slot.events();
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(8);
    tokio::spawn(async move {
        let _open = slot;
        let mut current = first;
        loop {
            for part in &current.parts {
                let name = part.as_str();
                if sent.iter().any(|s| s == name) {
                    continue;
                }
                sent.push(name.to_owned());
                let received = sent.iter().filter(|s| *s != "result").count();
                let data = serde_json::json!({
                    "request_id": request_id, "part": name, "parts_received": received,
                });
                let event = Event::default().event("part").id(sent.join(","));
                if tx.send(with_json(event, &data)).await.is_err() {
                    return;
                }
            }
            if let Some(page) = &current.page {
                if !sent.iter().any(|s| s == "result") {
                    let (status, mut body) = result_of(page, current.callback.as_ref());
                    body["http_status"] = status.as_u16().into();
                    sent.push("result".to_owned());
                    let event = Event::default().event("result").id(sent.join(","));
                    let _ = tx.send(with_json(event, &body)).await;
                }
                return;
            }
            let patience = current.context.deadline_ms + STREAM_PATIENCE_MS - now_ms();
            let record = tokio::select! {
                _ = tx.closed() => return,
                _ = tokio::time::sleep(Duration::from_millis(patience.max(0) as u64)) => None,
                record = records.recv() => record,
            };
            match record {
                Some(record) => current.apply(record),
                None => {
                    let data = serde_json::json!({
                        "request_id": request_id,
                        "error": {"code": "still_running", "message": "no result yet; reconnect or poll the status"},
                    });
                    let _ = tx
                        .send(with_json(Event::default().event("timeout"), &data))
                        .await;
                    return;
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok(event), rx))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

impl AppState {
    /// The request `id` of the session in the cookie: 401 without a
    /// session, 404 if the session has no such request, 410 once expired.
    async fn progress_for(&self, headers: &HeaderMap, id: &str) -> Result<Progress, ApiError> {
        let (session, request_id, created_ms) = self.request_named(headers, id)?;
        self.progress_by(session, request_id, created_ms)
            .await?
            .ok_or(ApiError::NotFound)
    }

    /// The session in the cookie, and the request id `id` with its time,
    /// checked without reading anything: 401, 404 for an id that is not
    /// one, 410 past the result lifetime.
    fn request_named(
        &self,
        headers: &HeaderMap,
        id: &str,
    ) -> Result<(SessionId, RequestId, i64), ApiError> {
        let session = session_from(headers, &self.inner.settings.cookie_key)
            .ok_or(ApiError::InvalidSession)?;
        let request_id = RequestId::parse(id).map_err(|_| ApiError::NotFound)?;
        let created_ms = request_id.created_at_ms().ok_or(ApiError::NotFound)?;
        if created_ms + self.inner.settings.result_ttl_ms() < now_ms() {
            return Err(ApiError::Expired);
        }
        Ok((session, request_id, created_ms))
    }

    /// A request of `session`: from what this gateway remembers if nothing
    /// can change any more, else read back from the topics.
    async fn progress_by(
        &self,
        session: SessionId,
        request_id: RequestId,
        created_ms: i64,
    ) -> Result<Option<Progress>, ApiError> {
        let inner = &self.inner;
        if let Some(known) = inner.results.get(&request_id, now_ms()) {
            if known.context.session_id != session {
                return Ok(None);
            }
            if known.is_final() {
                return Ok(Some(known));
            }
        }
        let found = inner.log.find(session, request_id, created_ms).await?;
        if let Some(progress) = found.as_ref().filter(|p| p.is_final()) {
            inner.results.insert(request_id, progress.clone(), now_ms());
        }
        Ok(found)
    }

    /// The request `session` already started with `key`, if any.
    async fn idempotent_request(
        &self,
        session: SessionId,
        key: &str,
    ) -> Result<Option<RequestContext>, ApiError> {
        let inner = &self.inner;
        let entry = (session, key.to_owned());
        if let Some(context) = inner.idempotency.get(&entry, now_ms()) {
            return Ok(Some(context));
        }
        let since = now_ms() - inner.settings.result_ttl_ms();
        let found = inner.log.find_idempotent(session, key, since).await?;
        if let Some(context) = &found {
            inner.idempotency.insert(entry, context.clone(), now_ms());
        }
        Ok(found)
    }

    /// Answers a repeated request with the first one's result, waiting up
    /// to `budget` for it like the first did; else 202.
    async fn replay(
        &self,
        context: RequestContext,
        budget: Duration,
    ) -> Result<Response, ApiError> {
        let waiting = &self.inner.waiting;
        let reply = waiting.register(context.request_id);
        let known = self
            .progress_by(
                context.session_id,
                context.request_id,
                created_at_ms(&context),
            )
            .await;
        let progress = match known {
            Ok(Some(progress)) if progress.page.is_some() => Some(progress),
            _ => match tokio::time::timeout(budget, reply).await {
                Ok(Ok(page)) => Some(Progress::from_page(page, None)),
                _ => None,
            },
        };
        waiting.forget(context.request_id);
        Ok(match progress {
            Some(progress) => self.result_response(&progress, Some(true)),
            None => Accepted::response(&context, Some(true)),
        })
    }

    /// The response to a finished request. A rejected one also clears the
    /// session cookie: that session is closed, or was never opened.
    fn result_response(&self, progress: &Progress, replayed: Option<bool>) -> Response {
        let page = progress.page.as_ref().expect("a finished request");
        let (status, body) = result_of(page, progress.callback.as_ref());
        let mut response = (status, Json(body)).into_response();
        if page.status == PageStatus::Rejected {
            response = self.clear_session(response);
        }
        mark_replayed(&mut response, replayed);
        response
    }
}

/// The events a `Last-Event-ID` says the client has: the part names and
/// `result` it lists, once each; anything else in it is ignored.
pub fn events_already_sent(last_event_id: &str) -> Vec<String> {
    let mut sent: Vec<String> = Vec::new();
    for name in last_event_id.split(',').map(str::trim) {
        let known = PartName::parse(name).is_some() || name == "result";
        if known && !sent.iter().any(|s| s == name) {
            sent.push(name.to_owned());
        }
    }
    sent
}

/// When a request was made: its id's timestamp, else what the request says.
fn created_at_ms(context: &RequestContext) -> i64 {
    context
        .request_id
        .created_at_ms()
        .unwrap_or(context.requested_at_ms)
}

fn with_json(event: Event, data: &serde_json::Value) -> Event {
    event.data(data.to_string())
}

/// Turns a body that may be empty into `T` (its default when empty).
fn optional_json<T: Default + serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<T, ApiError> {
    let body = body.map_err(|rejection| match rejection.status() {
        _ if is_body_timeout(&rejection) => ApiError::BodyTimeout,
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(limit),
        _ => ApiError::InvalidRequest(rejection.body_text()),
    })?;
    if body.is_empty() {
        return Ok(T::default());
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiError::UnsupportedMediaType);
    }
    // `null` says "no options", as an empty body does.
    serde_json::from_slice::<Option<T>>(&body)
        .map(Option::unwrap_or_default)
        .map_err(|e| {
            if e.is_data() {
                ApiError::InvalidRequest(e.to_string())
            } else {
                ApiError::MalformedJson(e.to_string())
            }
        })
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).expect("request ids are ASCII")
}

fn mark_replayed(response: &mut Response, replayed: Option<bool>) {
    if replayed == Some(true) {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_event_id_keeps_known_names_once_and_ignores_the_rest() {
        assert_eq!(
            events_already_sent(" user,ads ,nonsense,user,,result"),
            ["user", "ads", "result"]
        );
        assert!(events_already_sent("").is_empty());
    }
}

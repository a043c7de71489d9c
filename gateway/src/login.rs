//! `POST /api/login` and `POST /api/logout`: a session begins with a
//! sealed password and ends in user-svc and in the browser.

use std::net::SocketAddr;

use axum::{
    extract::{rejection::JsonRejection, ConnectInfo, Extension, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Deserialize;
use storefront_schemas::{LoginAttempt, PageStatus, SessionId};
use utoipa::ToSchema;

use crate::{
    cookies::session_from,
    error::{self, ApiError},
    lifecycle::{Answer, AsyncOptions, Submission},
    page::PageResponse,
    pages::Accepted,
    routes::RequestTrace,
    state::AppState,
};

/// A login.
#[derive(Deserialize, ToSchema)]
pub(crate) struct LoginRequest {
    /// 1 to 64 characters, not all of them spaces (they are trimmed).
    #[schema(min_length = 1, max_length = 64, pattern = "\\S")]
    username: String,
    #[schema(min_length = 1, max_length = 256)]
    password: String,
    /// Where to POST the result (Standard Webhooks), if anywhere: an
    /// `https` URL on a host the gateway allows, at most 2048 bytes as
    /// sent and once percent-encoded (else 403).
    #[serde(default)]
    #[schema(format = "uri", max_length = 2048)]
    callback_url: Option<String>,
}

/// Log in: authenticates and answers with the first page and a session cookie.
#[utoipa::path(
    post, path = "/api/login", tag = "pages",
    request_body = LoginRequest,
    params(
        ("Prefer" = Option<String>, Header, description = "`respond-async` answers 202 at once; `wait=N` waits at most N seconds"),
    ),
    responses(
        (status = 200, description = "Logged in: the page, and a session cookie", body = PageResponse),
        (status = 202, description = "Still running past the sync budget (or `Prefer: respond-async`): the session cookie, and the status URL in `Location`", body = Accepted),
        (status = 400, description = "Malformed JSON, bad fields or a callback URL that is not one", body = error::ErrorBody),
        (status = 401, description = "Wrong username or password", body = error::ErrorBody),
        (status = 403, description = "The callback URL is not one this gateway may call", body = error::ErrorBody),
        (status = 408, description = "The body did not arrive in time", body = error::ErrorBody),
        (status = 413, description = "Body too large", body = error::ErrorBody),
        (status = 415, description = "Not JSON", body = error::ErrorBody),
        (status = 429, description = "Too many attempts or requests; see `Retry-After`", body = error::ErrorBody),
        (status = 503, description = "Not ready, or no broker", body = error::ErrorBody),
    )
)]
pub(crate) async fn login(
    State(state): State<AppState>,
    Extension(RequestTrace(trace)): Extension<RequestTrace>,
    client: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Json<LoginRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) =
        body.map_err(|r| ApiError::from_json_rejection(r, state.inner.settings.max_body_bytes))?;
    let options = AsyncOptions::from_headers(&headers)?;
    if options.idempotency_key.is_some() {
        return Err(ApiError::InvalidRequest(
            "Idempotency-Key is not taken on login: a replayed login would hand out a session without the password; retrying a login is safe".into(),
        ));
    }
    let username = request.username.trim();
    if username.is_empty() || username.chars().count() > 64 {
        return Err(ApiError::InvalidRequest(
            "username must be 1 to 64 characters".into(),
        ));
    }
    if request.password.is_empty() || request.password.chars().count() > 256 {
        return Err(ApiError::InvalidRequest(
            "password must be 1 to 256 characters".into(),
        ));
    }
    let callback_url = state.checked_callback(request.callback_url)?;
    let address = client.map(|Extension(ConnectInfo(addr))| addr.ip());
    state
        .inner
        .login_limits
        .check(username, address)
        .map_err(ApiError::TooManyAttempts)?;
    let session = SessionId::new();
    let login = LoginAttempt {
        username: username.to_owned(),
        sealed_password: state
            .inner
            .settings
            .user_svc_public_key
            .seal(request.password.as_bytes()),
    };
    let submission = Submission {
        session,
        login: Some(login),
        logout: false,
        callback_url,
        idempotency_key: None,
    };
    let cookie = state.session_cookie(
        &state.inner.settings.cookie_key.sign(&session),
        state.inner.settings.session_ttl_secs,
    );
    let answer = state
        .request_page(submission, options.budget(state.sync_budget()), &trace)
        .await?;
    let page = match answer {
        Answer::Page(page) => *page,
        // The cookie comes now, so the client can follow the status URL;
        // it opens nothing until user-svc accepts the password.
        Answer::Pending(context) => {
            let mut response = Accepted::response(&context, None);
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            return Ok(response);
        }
    };
    match page.status {
        PageStatus::Complete | PageStatus::Partial => Ok((
            [(header::SET_COOKIE, cookie)],
            Json(PageResponse::from_completed(page)),
        )
            .into_response()),
        PageStatus::Rejected => Err(ApiError::InvalidCredentials),
        PageStatus::Unavailable => Err(ApiError::DeadlineExceeded),
    }
}

/// Closes the session in user-svc (so every copy of the cookie stops
/// working) and forgets it in this browser, even if closing failed.
#[utoipa::path(
    post, path = "/api/logout", tag = "pages",
    responses(
        (status = 204, description = "Logged out; the cookie is cleared"),
        (status = 503, description = "Not ready, or no broker (the cookie is cleared all the same)", body = error::ErrorBody),
        (status = 504, description = "user-svc did not confirm in time (the cookie is cleared all the same)", body = error::ErrorBody),
    )
)]
pub(crate) async fn logout(
    State(state): State<AppState>,
    Extension(RequestTrace(trace)): Extension<RequestTrace>,
    headers: HeaderMap,
) -> Response {
    let closed = match session_from(&headers, &state.inner.settings.cookie_key) {
        Some(session) => state
            .request_page_sync(session, true, &trace)
            .await
            .map(drop),
        None => Ok(()),
    };
    let response = match closed {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => error.into_response(),
    };
    state.clear_session(response)
}

//! Every HTTP error as one enum: a status, a stable code, a message for the
//! client. Internal detail is logged once, never sent.

use axum::{
    extract::rejection::JsonRejection,
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;
use serde_json::json;
use storefront_runtime::http::is_body_timeout;
use utoipa::ToSchema;

/// Every error body: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs: e.g. `invalid_request`, `not_found`.
    #[schema(example = "invalid_request")]
    pub code: String,
    /// For people.
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("wrong username or password")]
    InvalidCredentials,
    #[error("no valid session; log in again")]
    InvalidSession,
    #[error("too many requests in flight; retry shortly")]
    Overloaded,
    #[error("as many event streams are open as may be; close one or retry later")]
    TooManyStreams,
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    #[error("too many login attempts; retry later")]
    TooManyAttempts(std::time::Duration),
    #[error("the storefront is starting or unavailable; retry shortly")]
    NotReady,
    #[error("the event broker cannot be reached; retry shortly")]
    BrokerUnavailable,
    #[error("the page was not ready in time")]
    DeadlineExceeded,
    #[error("{0}")]
    CallbackRefused(String),
    #[error("no such resource")]
    NotFound,
    #[error("the request is older than the result lifetime; its result is gone")]
    Expired,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_) | Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::CallbackRefused(_) => StatusCode::FORBIDDEN,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::InvalidCredentials | Self::InvalidSession => StatusCode::UNAUTHORIZED,
            Self::Overloaded | Self::TooManyAttempts(_) | Self::TooManyStreams => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::NotReady | Self::BrokerUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Expired => StatusCode::GONE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed_json",
            Self::InvalidRequest(_) => "invalid_request",
            Self::TooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::InvalidCredentials => "invalid_credentials",
            Self::InvalidSession => "invalid_session",
            Self::Overloaded => "overloaded",
            Self::TooManyAttempts(_) => "too_many_attempts",
            Self::TooManyStreams => "too_many_streams",
            Self::BodyTimeout => "request_timeout",
            Self::NotReady => "not_ready",
            Self::BrokerUnavailable => "broker_unavailable",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::CallbackRefused(_) => "callback_refused",
            Self::NotFound => "not_found",
            Self::Expired => "result_expired",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Internal(_) => "internal",
        }
    }

    /// Maps axum's JSON extractor failures onto the contract, with the body limit in the message.
    pub fn from_json_rejection(rejection: JsonRejection, limit: usize) -> Self {
        if is_body_timeout(&rejection) {
            return Self::BodyTimeout;
        }
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => Self::TooLarge(limit),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType,
            StatusCode::UNPROCESSABLE_ENTITY => Self::InvalidRequest(rejection.body_text()),
            _ => match rejection {
                JsonRejection::JsonSyntaxError(e) => Self::MalformedJson(e.body_text()),
                other => Self::MalformedJson(other.body_text()),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = match &self {
            Self::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let mut response = (
            self.status(),
            Json(json!({"error": {"code": self.code(), "message": message}})),
        )
            .into_response();
        if matches!(
            self,
            Self::Overloaded | Self::NotReady | Self::BrokerUnavailable
        ) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if matches!(self, Self::TooManyStreams) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if let Self::TooManyAttempts(wait) = self {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        if matches!(self, Self::TooLarge(_) | Self::BodyTimeout) {
            // The rest of the body was never read, so this connection cannot
            // carry another request: say so, or a client reusing it fails.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

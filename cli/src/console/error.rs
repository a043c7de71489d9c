//! The console's errors, as the JSON every client reads:
//! `{"error": {"code", "message"}}` with a 4xx or 5xx status.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No token, or not the console's.
    #[error("{0}")]
    Unauthorized(String),
    /// The request is malformed or asks for something refused; `code` names what.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    /// Refused because of what is running now (a replay).
    #[error("{0}")]
    Conflict(String),
    /// The broker could not be read or written.
    #[error("Kafka: {0}")]
    Kafka(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            code,
            message: message.into(),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Invalid { code, .. } => (StatusCode::BAD_REQUEST, code),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::Kafka(_) => (StatusCode::SERVICE_UNAVAILABLE, "kafka_unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let Self::Internal(detail) | Self::Kafka(detail) = &self {
            tracing::warn!(%detail, code, "console request failed");
        }
        let mut response = (
            status,
            Json(serde_json::json!({"error": {"code": code, "message": self.to_string()}})),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"storefront-console\""),
            );
        }
        response
    }
}

/// A JSON body that could not be read is a 400 in the console's form.
pub(super) fn bad_body(rejection: axum::extract::rejection::JsonRejection) -> ApiError {
    ApiError::invalid("malformed_body", rejection.body_text())
}

/// A query string that could not be read is a 400 in the console's form.
pub(super) fn bad_query(rejection: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::invalid("malformed_query", rejection.body_text())
}

//! The operator token: every `/api/` request carries it as
//! `Authorization: Bearer <token>`, or gets 401.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::header,
    middleware::Next,
    response::Response,
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::keys::{ConsoleToken, CONSOLE_TOKEN_VAR};

pub(super) async fn require_token(
    State(token): State<Arc<ConsoleToken>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let sent = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    match sent {
        None => Err(ApiError::Unauthorized(format!(
            "send the operator token as Authorization: Bearer <token> ({CONSOLE_TOKEN_VAR} in .storefront/keys.env)"
        ))),
        Some(sent) if matches(sent.trim(), &token) => Ok(next.run(request).await),
        Some(_) => Err(ApiError::Unauthorized(format!(
            "the token was refused: it is not the console's {CONSOLE_TOKEN_VAR} (expired if keys.env was regenerated)"
        ))),
    }
}

/// Compares digests in constant time, so the time taken says nothing about
/// how much of the token was right.
fn matches(sent: &str, token: &ConsoleToken) -> bool {
    let (a, b) = (
        Sha256::digest(sent.as_bytes()),
        Sha256::digest(token.expose().as_bytes()),
    );
    a.ct_eq(&b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_token_matches() {
        let token = ConsoleToken::parse("0123456789abcdef").unwrap();
        assert!(matches("0123456789abcdef", &token));
        assert!(!matches("0123456789abcdeF", &token));
        assert!(!matches("", &token));
    }
}

//! The session cookie: the session id and an HMAC-SHA256 over it. The id
//! alone (the key on every topic) is not a credential; the signature is, and
//! it never leaves the gateway and the browser.

use std::fmt;

use axum::{
    http::{header, HeaderMap, HeaderValue},
    response::Response,
};
use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    Engine,
};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use storefront_schemas::SessionId;

pub const COOKIE_NAME: &str = "sf_session";

/// The key that signs session cookies. Never printed.
#[derive(Clone)]
pub struct CookieKey(Vec<u8>);

/// A cookie key that did not parse.
#[derive(Debug, thiserror::Error)]
#[error("the cookie key must be at least 32 bytes in base64 (run `storefront keygen`)")]
pub struct CookieKeyError;

impl CookieKey {
    pub fn generate() -> Self {
        use rand::RngCore;
        let mut key = vec![0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self(key)
    }

    pub fn parse(base64: &str) -> Result<Self, CookieKeyError> {
        let key = STANDARD.decode(base64.trim()).map_err(|_| CookieKeyError)?;
        if key.len() < 32 {
            return Err(CookieKeyError);
        }
        Ok(Self(key))
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(&self.0)
    }

    fn mac(&self, session: &SessionId) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"storefront-session:");
        mac.update(session.to_string().as_bytes());
        mac
    }

    /// The cookie value for `session`.
    pub fn sign(&self, session: &SessionId) -> String {
        let tag = self.mac(session).finalize().into_bytes();
        format!("{session}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// The session a cookie value names, if its signature is ours.
    pub fn verify(&self, value: &str) -> Option<SessionId> {
        let (id, tag) = value.split_once('.')?;
        let session = SessionId::parse(id).ok()?;
        // The tag is over the id as `sign` writes it; the parser also takes
        // other spellings of the same UUID (upper case, braces, `urn:uuid:`,
        // no hyphens), which were never signed.
        if id != session.to_string() {
            return None;
        }
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.mac(&session).verify_slice(&tag).ok()?;
        Some(session)
    }
}

impl fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CookieKey([redacted])")
    }
}

/// The session of the cookie a request carries, if it is signed by `key`.
pub fn session_from(headers: &HeaderMap, key: &CookieKey) -> Option<SessionId> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == COOKIE_NAME)
        .find_map(|(_, value)| key.verify(value))
}

impl crate::state::AppState {
    pub(crate) fn session_cookie(&self, value: &str, max_age_secs: u64) -> HeaderValue {
        let secure = if self.inner.settings.cookie_secure {
            "; Secure"
        } else {
            ""
        };
        HeaderValue::from_str(&format!(
            "{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}"
        ))
        .expect("cookie values are ASCII")
    }

    /// `response` with a header that makes the browser forget its session.
    pub(crate) fn clear_session(&self, mut response: Response) -> Response {
        response
            .headers_mut()
            .insert(header::SET_COOKIE, self.session_cookie("", 0));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_verifies_only_with_its_key_and_untouched() {
        let key = CookieKey::generate();
        let session = SessionId::new();
        let cookie = key.sign(&session);
        assert_eq!(key.verify(&cookie), Some(session));
        assert_eq!(CookieKey::generate().verify(&cookie), None);
        let other = SessionId::new();
        let forged = format!("{other}.{}", cookie.split_once('.').unwrap().1);
        assert_eq!(key.verify(&forged), None);
        assert_eq!(key.verify(&session.to_string()), None);
        assert_eq!(key.verify("garbage"), None);
        assert!(CookieKey::parse("c2hvcnQ=").is_err());
    }

    /// Found by the `session_cookie` fuzz target: `0190a6C4-...` verified
    /// with the signature of `0190a6c4-...`.
    #[test]
    fn a_cookie_with_its_session_id_spelled_another_way_does_not_verify() {
        let key = CookieKey::generate();
        let session = SessionId::parse("0190a6c4-0000-7000-8000-00000000000a").unwrap();
        let cookie = key.sign(&session);
        let (id, tag) = cookie.split_once('.').unwrap();
        assert_eq!(key.verify(&cookie), Some(session));
        for other in [
            id.to_uppercase(),
            format!("{{{id}}}"),
            format!("urn:uuid:{id}"),
            id.replace('-', ""),
        ] {
            assert_eq!(SessionId::parse(&other).unwrap(), session, "{other}");
            assert_eq!(key.verify(&format!("{other}.{tag}")), None, "{other}");
        }
    }
}

//! The session cookie: `CookieKey::verify` on the input as a cookie value,
//! and `session_from` on the input as `Cookie` headers (one per line, each
//! through `HeaderValue::from_bytes`), with a fixed key so the seeds carry a
//! real signature to mutate. Properties: no panic; the known session's
//! signed value verifies; nothing else verifies unless it is, byte for byte,
//! the signed value of the session it names (`key.sign(&session)`).
#![no_main]

use std::sync::LazyLock;

use axum::http::{header, HeaderMap, HeaderValue};
use gateway::cookies::{session_from, CookieKey, COOKIE_NAME};
use libfuzzer_sys::fuzz_target;
use storefront_fuzz::{COOKIE_KEY_BASE64, SESSION_ID};
use storefront_schemas::SessionId;

static KEY: LazyLock<CookieKey> = LazyLock::new(|| {
    let key = CookieKey::parse(COOKIE_KEY_BASE64).unwrap();
    let session = SessionId::parse(SESSION_ID).unwrap();
    assert_eq!(key.verify(&key.sign(&session)), Some(session));
    key
});

fuzz_target!(|data: &[u8]| {
    let key = &*KEY;
    if let Ok(value) = std::str::from_utf8(data) {
        if let Some(session) = key.verify(value) {
            assert_eq!(
                value,
                key.sign(&session),
                "a cookie value verified unsigned"
            );
        }
    }

    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(header::COOKIE, value);
        }
    }
    if let Some(session) = session_from(&headers, key) {
        let signed = key.sign(&session);
        let sent = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(name, value)| name == COOKIE_NAME && value == signed);
        assert!(
            sent,
            "{session} taken from a Cookie header without its signed value: {headers:?}"
        );
    }
});

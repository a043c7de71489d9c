//! The request headers the gateway parses, from a header block (`name:
//! value` lines): `AsyncOptions::from_headers` (`Prefer`, `Idempotency-Key`)
//! on every line that is a valid header, and `pages::events_already_sent` on
//! each `Last-Event-ID` line. Properties: no panic; an accepted
//! Idempotency-Key is the header's value, 1 to 255 visible ASCII characters,
//! and a key that is not is refused; `budget(sync)` never exceeds `sync`
//! (zero with `respond-async`); the events already sent are only `user`,
//! `history`, `ads` and `result`, each at most once.
#![no_main]

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use gateway::{pages::events_already_sent, AsyncOptions};
use libfuzzer_sys::fuzz_target;
use storefront_fuzz::{header_lines, MAX_IDEMPOTENCY_KEY};

const SYNC_BUDGETS: [Duration; 4] = [
    Duration::ZERO,
    Duration::from_millis(250),
    Duration::from_secs(2),
    Duration::MAX,
];

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for (name, value) in header_lines(data) {
        if name.eq_ignore_ascii_case(b"last-event-id") {
            check_last_event_id(&String::from_utf8_lossy(value));
        }
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    for value in headers.get_all("last-event-id") {
        if let Ok(value) = value.to_str() {
            check_last_event_id(value);
        }
    }

    let key = headers.get("idempotency-key");
    let valid_key = key.and_then(|k| k.to_str().ok()).filter(|k| {
        (1..=MAX_IDEMPOTENCY_KEY).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic())
    });
    match AsyncOptions::from_headers(&headers) {
        Ok(options) => {
            assert_eq!(options.idempotency_key.as_deref(), valid_key, "{headers:?}");
            for sync in SYNC_BUDGETS {
                let budget = options.budget(sync);
                assert!(
                    budget <= sync,
                    "budget {budget:?} over {sync:?}: {options:?}"
                );
                if options.respond_async {
                    assert_eq!(budget, Duration::ZERO);
                }
            }
        }
        Err(error) => assert!(
            key.is_some() && valid_key.is_none(),
            "refused without a bad Idempotency-Key: {error}"
        ),
    }
});

fn check_last_event_id(value: &str) {
    let sent = events_already_sent(value);
    for (i, name) in sent.iter().enumerate() {
        assert!(
            matches!(name.as_str(), "user" | "history" | "ads" | "result"),
            "{value:?} gave {sent:?}"
        );
        assert!(!sent[..i].contains(name), "{value:?} gave {name} twice");
    }
}

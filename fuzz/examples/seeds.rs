//! Writes the seed corpora, `fuzz/corpus/<target>/`, from real records and
//! requests: records encoded by the project's own codec from realistic
//! events, for the current and every released older schema version; the
//! README's requests; a cookie signed with the cookie target's key.
//! Regenerate (it replaces those files and leaves others alone) with:
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example seeds

use std::{fs, path::Path};

use apache_avro::{rabin::Rabin, writer::datum::GenericDatumWriter, Schema};
use gateway::cookies::CookieKey;
use serde::Serialize;
use storefront_fuzz::*;
use storefront_schemas::{contracts, encode, SessionId, SINGLE_OBJECT_MAGIC};

fn main() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = corpus.join(target);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(name), bytes).unwrap();
    };

    // decode_record: every contract, current schema.
    let current: Vec<(&str, Vec<u8>)> = vec![
        ("page_requested-login", encode(&page_requested_login())),
        ("page_requested-page", encode(&page_requested_page())),
        ("user_resolved", encode(&user_resolved())),
        ("user_resolved-rejected", encode(&user_rejected())),
        ("history_fetched", encode(&history_fetched())),
        ("ads_selected", encode(&ads_selected())),
        ("page_completed", encode(&page_completed())),
        ("callback_reported", encode(&callback_reported())),
        ("customer", encode(&customer())),
        ("credential", encode(&credential())),
        ("product", encode(&product())),
        ("order", encode(&order())),
        ("session", encode(&session())),
    ];
    for (name, record) in &current {
        write("decode_record", name, record);
    }
    // Every released older version, written as a producer holding it does.
    for contract in contracts() {
        for (file, json) in contract
            .previous_files
            .iter()
            .zip(contract.previous_schema_json)
        {
            let schema = Schema::parse_str(json).unwrap();
            let record = match contract.event_type {
                "page.requested" => written_with(&schema, &page_requested_login()),
                "page.completed" => written_with(&schema, &page_completed()),
                other => panic!("no seed event for {other}: add one for {file}"),
            };
            write("decode_record", file.trim_end_matches(".avsc"), &record);
        }
    }

    // session_cookie: a real signed value, as a value and in Cookie headers.
    let key = CookieKey::parse(COOKIE_KEY_BASE64).unwrap();
    let signed = key.sign(&SessionId::parse(SESSION_ID).unwrap());
    write("session_cookie", "signed-value", signed.as_bytes());
    write(
        "session_cookie",
        "cookie-header",
        format!("theme=dark; sf_session={signed}; lang=fr").as_bytes(),
    );
    write(
        "session_cookie",
        "two-cookie-headers",
        format!("sf_session=stale.AAAA\nsf_session={signed}").as_bytes(),
    );

    // request_headers: what the README's clients send.
    let headers: [(&str, &str); 4] = [
        ("prefer-async-wait", "prefer: respond-async, wait=1\n"),
        ("prefer-wait-key", "Prefer: wait=10\nIdempotency-Key: order-7-page\n"),
        ("last-event-id", "last-event-id: user,history\n"),
        (
            "all",
            "prefer: respond-async; foo=bar, wait=2\nidempotency-key: 0190a6c4-key\nlast-event-id: user,ads,result\n",
        ),
    ];
    for (name, block) in headers {
        write("request_headers", name, block.as_bytes());
    }

    // json_bodies: the README's bodies.
    let json = Some("application/json");
    let bodies: [(&str, Route, Option<&str>, &str); 6] = [
        (
            "login",
            Route::Login,
            json,
            r#"{"username":"demo","password":"demo-password"}"#,
        ),
        (
            "login-callback",
            Route::Login,
            Some("application/json; charset=utf-8"),
            r#"{"username":"user17","password":"user17-password","callback_url":"https://hooks.example.com/storefront"}"#,
        ),
        (
            "pages-callback",
            Route::Pages,
            json,
            r#"{"callback_url":"https://shop.example.org/hooks/pages"}"#,
        ),
        ("pages-empty", Route::Pages, None, ""),
        ("pages-text", Route::Pages, Some("text/plain"), "{}"),
        (
            "login-odd-type",
            Route::Login,
            Some("Application/JSON ;q=1"),
            r#"{"username":"demo"}"#,
        ),
    ];
    for (name, route, content_type, body) in bodies {
        write(
            "json_bodies",
            name,
            &BodyInput::to_bytes(route, content_type, body.as_bytes()),
        );
    }

    // callback_url: allowed hosts as configured, and URLs clients send.
    let hosts = "hooks.example.com,*.example.org";
    let urls: [(&str, bool, &str); 4] = [
        ("https", false, "https://hooks.example.com/storefront"),
        (
            "http-allowed",
            true,
            "http://hooks.example.com:8080/storefront?order=7",
        ),
        ("subdomain", false, "https://shop.example.org/hooks/pages"),
        ("refused", false, "https://user:pw@evil.example.net/#frag"),
    ];
    for (name, allow_http, url) in urls {
        let input = CallbackInput {
            allow_http,
            allowed_hosts: hosts.into(),
            url: url.into(),
        };
        write("callback_url", name, &input.to_bytes());
    }
}

/// A single-object record of `event` as a producer holding `schema` writes
/// it: the fields `schema` lacks are not written (as schemas/tests/evolution.rs).
fn written_with(schema: &Schema, event: &impl Serialize) -> Vec<u8> {
    let value = apache_avro::to_value(event)
        .unwrap()
        .resolve(schema)
        .unwrap();
    let mut bytes = SINGLE_OBJECT_MAGIC.to_vec();
    bytes.extend_from_slice(&schema.fingerprint::<Rabin>().bytes);
    let writer = GenericDatumWriter::builder(schema).build().unwrap();
    bytes.extend(writer.write_value_to_vec(value).unwrap());
    bytes
}

//! The JSON bodies, through the real router: `POST /api/login` and `POST
//! /api/pages` (with a valid session cookie signed by the router's key) with
//! the input's body and a content type picked from a few or arbitrary ASCII
//! (layout: `storefront_fuzz::BodyInput`). The gateway's Kafka side is never
//! ready and its producer points at 127.0.0.1:9, so no broker is contacted,
//! as in gateway/src/routes.rs's tests; callbacks are on, so the URL check is
//! reached. Properties: no panic; every answer is a 4xx or a 503 with a JSON
//! body `{"error": {"code": <string>, ...}}`.
#![no_main]

use std::{net::SocketAddr, sync::LazyLock};

use axum::{
    body::Body,
    http::{header, Request},
    Router,
};
use gateway::{cookies::CookieKey, replies::OwnedPartitions, webhooks::WebhookSecret, Settings};
use libfuzzer_sys::fuzz_target;
use storefront_fuzz::{BodyInput, Route, COOKIE_KEY_BASE64, SESSION_ID};
use storefront_runtime::{
    service::PRODUCER_WARM, EventProducer, KafkaSettings, Readiness, Telemetry,
};
use storefront_schemas::{SessionId, UnsealKey};
use tokio::runtime::Runtime;
use tower::ServiceExt;

static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
});

/// The router, and the cookie of a session it signed.
static GATEWAY: LazyLock<(Router, String)> = LazyLock::new(|| {
    let _runtime = RUNTIME.enter();
    let kafka = KafkaSettings::new("127.0.0.1:9");
    let cookie_key = CookieKey::parse(COOKIE_KEY_BASE64).unwrap();
    let cookie = format!(
        "sf_session={}",
        cookie_key.sign(&SessionId::parse(SESSION_ID).unwrap())
    );
    let mut settings = Settings::new(kafka.clone(), UnsealKey::generate().seal_key(), cookie_key);
    settings.http_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    settings.max_body_bytes = 1024;
    settings.callbacks.webhook_secret = Some(WebhookSecret::generate());
    settings.callbacks.webhook_allowed_hosts = "hooks.example.com,*.example.org".into();
    let producer = EventProducer::new(&kafka, &Telemetry::local("gateway-fuzz")).unwrap();
    // The readiness conditions of the gateway, none ever met.
    let readiness = Readiness::new(&[PRODUCER_WARM, gateway::replies::REPLY_PARTITIONS]);
    let state = gateway::AppState::new(settings, producer, OwnedPartitions::default(), readiness);
    (gateway::router(state), cookie)
});

fuzz_target!(init: { LazyLock::force(&GATEWAY); }, |data: &[u8]| {
    let Some(input) = BodyInput::parse(data) else {
        return;
    };
    let (router, cookie) = &*GATEWAY;
    let mut request = Request::post(match input.route {
        Route::Login => "/api/login",
        Route::Pages => "/api/pages",
    });
    if let Some(content_type) = &input.content_type {
        request = request.header(header::CONTENT_TYPE, content_type.as_ref());
    }
    if input.route == Route::Pages {
        request = request.header(header::COOKIE, cookie);
    }
    let request = request.body(Body::from(input.body.to_vec())).unwrap();
    let (status, body) = RUNTIME.block_on(async {
        let response = router.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        (parts.status, axum::body::to_bytes(body, 1 << 20).await.unwrap())
    });
    assert!(
        status.is_client_error() || status == 503,
        "{status} for {input:?}: {}",
        String::from_utf8_lossy(&body)
    );
    let json: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{status}: the body is not JSON ({e}): {body:?}"));
    assert!(json["error"]["code"].is_string(), "{status}: {json}");
});

//! The console's API without a broker: the token, and bad input refused
//! with a clear error before anything reads or writes a topic.

use axum::{
    body::Body,
    http::{Request, StatusCode},
};
use tower::ServiceExt;

use super::*;

const TOKEN: &str = "console-test-token-0123456789";

fn app() -> Router {
    // Nothing here may reach a broker: none listens there.
    let state = AppState {
        kafka: KafkaSettings::new("127.0.0.1:1"),
        trace_url: None,
        page_deadline_ms: 250,
        feed: feed::Feed::new(0),
        replays: replays::Replays::new(None),
    };
    router(state, Arc::new(ConsoleToken::parse(TOKEN).unwrap()))
}

async fn call(
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, serde_json::Value, axum::http::HeaderMap) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request
        .body(Body::from(body.unwrap_or_default().to_owned()))
        .unwrap();
    let response = app().oneshot(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or_default(),
        headers,
    )
}

fn code(body: &serde_json::Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn the_api_refuses_a_missing_or_wrong_token_and_takes_the_right_one() {
    let (status, body, headers) = call("GET", "/api/config", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(code(&body), "unauthorized");
    assert!(headers.contains_key("www-authenticate"));

    let (status, body, _) =
        call("GET", "/api/config", Some("an-old-token-from-before"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("refused"));

    let (status, body, _) = call("GET", "/api/config", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !body.to_string().contains(TOKEN),
        "the token is never echoed"
    );
    assert_eq!(body["page_deadline_ms"], 250);
}

#[tokio::test]
async fn the_page_and_its_assets_need_no_token_and_come_from_the_console_itself() {
    for path in ["/", "/console.js", "/console.css"] {
        let response = app()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let csp = response.headers()["content-security-policy"]
            .to_str()
            .unwrap();
        assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
    }
    let html = axum::body::to_bytes(
        app()
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap()
            .into_body(),
        1 << 20,
    )
    .await
    .unwrap();
    let html = String::from_utf8_lossy(&html);
    assert!(
        !html.contains("https://") && !html.contains("http://"),
        "no outside URL in the page"
    );
}

#[tokio::test]
async fn malformed_filters_ids_and_ranges_get_a_clear_400() {
    let cases = [
        ("GET", "/api/requests?status=lost", None, "bad_status"),
        ("GET", "/api/requests?since=last-tuesday", None, "bad_time"),
        (
            "GET",
            "/api/requests?session=not-a-session",
            None,
            "bad_session",
        ),
        ("GET", "/api/requests/live?until=soon", None, "bad_time"),
        ("GET", "/api/requests/not-an-id/timeline", None, "bad_id"),
        // A UUID, but not a v7: it carries no time to look from.
        (
            "GET",
            "/api/requests/6b1e8f3a-2f1c-4d7e-9a55-3c1b2a0d9e11/timeline",
            None,
            "bad_id",
        ),
        ("GET", "/api/replays/abc", None, "bad_id"),
        (
            "GET",
            "/api/topics/no.such.topic/records",
            None,
            "unknown_topic",
        ),
        (
            "GET",
            "/api/topics/page.requested/records?since=then",
            None,
            "bad_time",
        ),
        (
            "POST",
            "/api/replays/plan",
            Some(r#"{"from": "15m", "into": ""}"#),
            "replay_refused",
        ),
        (
            "POST",
            "/api/replays/plan",
            Some(r#"{"from": "15m", "to": "1h", "into": "replay-1."}"#),
            "replay_refused",
        ),
        (
            "POST",
            "/api/replays/plan",
            Some(r#"{"from": "whenever", "into": "replay-1."}"#),
            "bad_time",
        ),
        (
            "POST",
            "/api/replays/plan",
            Some(r#"{"into": "replay-1."}"#),
            "malformed_body",
        ),
        (
            "POST",
            "/api/replays",
            Some(r#"{"from": "15m", "into": "replay-1."}"#),
            "confirm",
        ),
        (
            "POST",
            "/api/dead-letters/republish",
            Some(r#"{"positions": ["0:1"]}"#),
            "confirm",
        ),
        (
            "POST",
            "/api/dead-letters/republish",
            Some(r#"{"positions": ["zero"], "confirm": true}"#),
            "bad_position",
        ),
        (
            "POST",
            "/api/dead-letters/republish",
            Some(r#"{"positions": [], "confirm": true}"#),
            "no_positions",
        ),
    ];
    for (method, path, body, expected) in cases {
        let (status, reply, _) = call(method, path, Some(TOKEN), body).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{method} {path} {body:?}: {reply}"
        );
        assert_eq!(code(&reply), expected, "{method} {path} {body:?}: {reply}");
        assert!(!reply["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .is_empty());
    }
}

#[tokio::test]
async fn a_replay_into_the_live_namespace_is_refused_by_name() {
    let (status, reply, _) = call(
        "POST",
        "/api/replays/plan",
        Some(TOKEN),
        Some(r#"{"from": "15m", "into": ""}"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(reply["error"]["message"]
        .as_str()
        .unwrap()
        .contains("never the production one"));
}

#[tokio::test]
async fn an_unknown_route_under_the_api_is_a_json_404() {
    let (status, reply, _) = call("GET", "/api/nothing/here", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(code(&reply), "not_found");
}

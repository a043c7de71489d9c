//! The routes: the storefront page, the documented API with its OpenAPI
//! description, health, and the server span around every API request.

use std::sync::Arc;

use axum::{
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    middleware::{self, Next},
    response::{Html, Response},
    routing::get,
    Json, Router,
};
use opentelemetry::{trace::TraceContextExt, Context, KeyValue};
use storefront_runtime::{health, trace};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{error::ApiError, login, openapi, pages, state::AppState};

/// The server span of one API request: the root of the request's trace.
#[derive(Clone)]
pub(crate) struct RequestTrace(pub(crate) Context);

/// The gateway's routes, separate from serving so tests can call it directly.
pub fn router(state: AppState) -> Router {
    let limit = state.inner.settings.max_body_bytes;
    let (api, mut openapi) = api_routes().split_for_parts();
    openapi::finish(&mut openapi);
    let openapi = Arc::new(openapi);
    let api = api
        .route(
            "/api/openapi.json",
            get(move || {
                let openapi = openapi.clone();
                async move { Json(openapi.as_ref().clone()) }
            }),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), trace_request));
    Router::new()
        .route("/", get(|| async { Html(INDEX_HTML) }))
        .merge(api)
        .with_state(state.clone())
        .merge(health::router(state.inner.readiness.clone()))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(limit))
}

/// Every documented route, with its OpenAPI description.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::document())
        .routes(routes!(login::login))
        .routes(routes!(pages::page))
        .routes(routes!(login::logout))
        .routes(routes!(pages::create))
        .routes(routes!(pages::status))
        .routes(routes!(pages::result))
        .routes(routes!(pages::events))
}

const INDEX_HTML: &str = include_str!("../static/index.html");

/// Opens the request's server span, lends it to the handler, and closes it
/// with the response status.
async fn trace_request(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or_else(
        || request.uri().path().to_owned(),
        |p| p.as_str().to_owned(),
    );
    let cx = state
        .telemetry()
        .http_span(request.method().as_str(), &route);
    request.extensions_mut().insert(RequestTrace(cx.clone()));
    let response = next.run(request).await;
    let status = response.status();
    cx.span().set_attribute(KeyValue::new(
        "http.response.status_code",
        i64::from(status.as_u16()),
    ));
    trace::end(
        &cx,
        status
            .is_server_error()
            .then(|| status.to_string())
            .as_deref(),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::{
        body::Body,
        http::{header, HeaderMap, Request, StatusCode},
    };
    use storefront_runtime::{
        service::PRODUCER_WARM, EventProducer, KafkaSettings, Readiness, Telemetry,
    };
    use tower::ServiceExt;

    use super::*;
    use crate::{
        cookies::CookieKey,
        replies::{OwnedPartitions, REPLY_PARTITIONS},
        Settings,
    };

    /// A gateway whose Kafka side never became ready: no broker is
    /// contacted. Built once: making its producer is the slow part.
    fn not_ready_router() -> Router {
        static ROUTER: std::sync::LazyLock<Router> =
            std::sync::LazyLock::new(build_not_ready_router);
        ROUTER.clone()
    }

    fn build_not_ready_router() -> Router {
        let kafka = KafkaSettings::new("127.0.0.1:9");
        let mut settings = Settings::new(
            kafka.clone(),
            storefront_schemas::UnsealKey::generate().seal_key(),
            CookieKey::generate(),
        );
        settings.http_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        settings.max_body_bytes = 1024;
        settings.max_waiting = 10;
        settings.session_ttl_secs = 60;
        let producer = EventProducer::new(&kafka, &Telemetry::local("gateway-test")).unwrap();
        let readiness = Readiness::new(&[PRODUCER_WARM, REPLY_PARTITIONS]);
        router(AppState::new(
            settings,
            producer,
            OwnedPartitions::default(),
            readiness,
        ))
    }

    async fn call(request: Request<Body>) -> (StatusCode, HeaderMap, serde_json::Value) {
        let response = not_ready_router().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        (
            parts.status,
            parts.headers,
            serde_json::from_slice(&bytes).unwrap_or_default(),
        )
    }

    fn login(body: &str) -> Request<Body> {
        Request::post("/api/login")
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap()
    }

    #[tokio::test]
    async fn a_valid_login_before_kafka_is_ready_gets_503_with_retry_after() {
        let (status, headers, body) = call(login(r#"{"username":"demo","password":"pw"}"#)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "not_ready");
        assert_eq!(headers[header::RETRY_AFTER], "1");
    }

    #[tokio::test]
    async fn bad_bodies_are_refused_before_anything_reaches_kafka() {
        let (status, _, body) = call(login(r#"{"username":"demo""#)).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("malformed_json"))
        );
        let too_big = format!(r#"{{"username":"demo","password":"{}"}}"#, "x".repeat(2048));
        let (status, headers, _) = call(login(&too_big)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(headers[header::CONNECTION], "close");
    }

    #[tokio::test]
    async fn the_readiness_probe_says_what_it_waits_for() {
        let (status, _, body) = call(Request::get("/readyz").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("producer warm") && message.contains("reply partitions"),
            "{message}"
        );
    }

    /// A request to the not-ready router, answered on a throwaway runtime.
    fn answer(request: Request<Body>) -> (StatusCode, serde_json::Value) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (status, _, body) = runtime.block_on(call(request));
        (status, body)
    }

    mod hostile {
        use proptest::prelude::*;

        use super::*;

        fn content_type() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("application/json".to_owned()),
                Just("application/json; charset=utf-8".to_owned()),
                Just("text/plain".to_owned()),
                "[ -~]{0,40}",
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn any_bytes_posted_to_login_get_a_json_4xx(
                body in proptest::collection::vec(any::<u8>(), 0..2048),
                content_type in content_type(),
            ) {
                let request = Request::post("/api/login")
                    .header("content-type", content_type)
                    .body(Body::from(body))
                    .unwrap();
                let (status, body) = answer(request);
                prop_assert!(status.is_client_error() || status == StatusCode::SERVICE_UNAVAILABLE, "{status}");
                prop_assert!(body["error"]["code"].is_string(), "{body}");
            }

            #[test]
            fn any_json_login_is_refused_or_reaches_the_readiness_check(
                username in "\\PC{0,80}",
                password in "\\PC{0,300}",
                extra in proptest::option::of("\\PC{0,20}"),
            ) {
                let mut login = serde_json::json!({"username": username, "password": password});
                if let Some(extra) = extra {
                    login[extra] = serde_json::json!([1, {"nested": null}]);
                }
                let request = Request::post("/api/login")
                    .header("content-type", "application/json")
                    .body(Body::from(login.to_string()))
                    .unwrap();
                let (status, body) = answer(request);
                let code = body["error"]["code"].as_str().unwrap_or_default().to_owned();
                prop_assert!(
                    matches!(code.as_str(), "invalid_request" | "not_ready" | "payload_too_large" | "too_many_attempts"),
                    "{status} {body}"
                );
            }

            #[test]
            fn any_cookie_asking_for_a_page_gets_401(cookie in "[ -~]{0,300}") {
                let request = Request::get("/api/page")
                    .header("cookie", cookie)
                    .body(Body::empty())
                    .unwrap();
                let (status, body) = answer(request);
                prop_assert_eq!(status, StatusCode::UNAUTHORIZED);
                prop_assert_eq!(body["error"]["code"].as_str(), Some("invalid_session"));
            }
        }
    }
}

//! gateway: the storefront's HTTP edge. A login or page request becomes a
//! `page.requested` event carrying this gateway's return address (one of the
//! `page.completed` partitions it owns); the HTTP request waits for the
//! aggregator's answer on that partition, and gets a page, a 401, or a 504
//! when nothing came by the deadline.

pub mod cookies;
pub mod error;
pub mod limits;
pub mod page;
pub mod replies;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    extract::{
        rejection::JsonRejection, ConnectInfo, DefaultBodyLimit, Extension, MatchedPath, Request,
        State,
    },
    http::{header, HeaderMap, HeaderValue, StatusCode},
    middleware::{self, Next},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use opentelemetry::{trace::TraceContextExt, Context, KeyValue};
use serde::Deserialize;
use storefront_runtime::{
    health,
    service::{self, PRODUCER_WARM},
    topics, trace, DeadLetters, EventProducer, KafkaSettings, Outbound, Readiness, RunningService,
    Telemetry, TelemetrySettings,
};
use storefront_schemas::{
    now_ms, LoginAttempt, Milestone, PageCompleted, PageRequested, PageStatus, RequestContext,
    RequestId, SessionId,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use user_svc::SealKey;

use crate::{
    cookies::{CookieKey, COOKIE_NAME},
    error::ApiError,
    limits::LoginLimits,
    page::PageResponse,
    replies::{OwnedPartitions, Waiting, REPLY_PARTITIONS},
};

#[derive(Debug, Clone, clap::Parser)]
#[command(name = "gateway", about = "The storefront's HTTP edge")]
pub struct Settings {
    #[command(flatten)]
    pub kafka: KafkaSettings,
    #[command(flatten)]
    pub telemetry: TelemetrySettings,
    /// Address the storefront is served on.
    #[arg(long, env = "STOREFRONT_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// user-svc's X25519 public key (base64): passwords are sealed to it before they touch a topic.
    #[arg(long, env = "STOREFRONT_USER_SVC_PUBLIC_KEY", value_parser = SealKey::parse)]
    pub user_svc_public_key: SealKey,
    /// Key (base64, 32+ bytes) that signs session cookies.
    #[arg(long, env = "STOREFRONT_COOKIE_KEY", value_parser = CookieKey::parse, hide_env_values = true)]
    pub cookie_key: CookieKey,
    /// The page's wall-clock budget: by then the aggregator sends it, complete or partial.
    #[arg(long, env = "STOREFRONT_PAGE_DEADLINE_MS", default_value_t = 250)]
    pub page_deadline_ms: u64,
    /// How long past the deadline to wait for the partial page before answering 504.
    #[arg(long, env = "STOREFRONT_REPLY_GRACE_MS", default_value_t = 1000)]
    pub reply_grace_ms: u64,
    /// Largest accepted request body.
    #[arg(long, env = "STOREFRONT_MAX_BODY_BYTES", default_value_t = 16 * 1024)]
    pub max_body_bytes: usize,
    /// Requests waiting at once before new ones are shed with 429.
    #[arg(long, env = "STOREFRONT_MAX_WAITING", default_value_t = 10_000)]
    pub max_waiting: usize,
    /// Session cookie lifetime (match user-svc's STOREFRONT_SESSION_TTL_SECS).
    #[arg(long, env = "STOREFRONT_SESSION_TTL_SECS", default_value_t = 86_400)]
    pub session_ttl_secs: u64,
    /// Mark the cookie Secure (serve over HTTPS).
    #[arg(long, env = "STOREFRONT_COOKIE_SECURE", default_value_t = false)]
    pub cookie_secure: bool,
    /// Login attempts per minute for one username (then 429).
    #[arg(long, env = "STOREFRONT_LOGIN_ATTEMPTS_PER_USER", default_value_t = 10)]
    pub login_attempts_per_user: u32,
    /// Login attempts per minute from one client address (then 429).
    #[arg(
        long,
        env = "STOREFRONT_LOGIN_ATTEMPTS_PER_ADDRESS",
        default_value_t = 120
    )]
    pub login_attempts_per_address: u32,
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    page_requested: String,
    reply_topic: String,
    producer: EventProducer,
    owned: OwnedPartitions,
    waiting: Waiting,
    readiness: Readiness,
    login_limits: LoginLimits,
}

/// The server span of one API request: the root of the request's trace.
#[derive(Clone)]
struct RequestTrace(Context);

#[derive(Deserialize)]
struct LoginRequest {
    username: String,
    password: String,
}

/// The gateway's routes, separate from serving so tests can call it directly.
pub fn router(state: AppState) -> Router {
    let limit = state.inner.settings.max_body_bytes;
    let api = Router::new()
        .route("/api/login", post(login))
        .route("/api/page", get(page))
        .route("/api/logout", post(logout))
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

async fn login(
    State(state): State<AppState>,
    Extension(RequestTrace(trace)): Extension<RequestTrace>,
    client: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Result<Json<LoginRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) =
        body.map_err(|r| ApiError::from_json_rejection(r, state.inner.settings.max_body_bytes))?;
    let username = request.username.trim();
    if username.is_empty() || username.chars().count() > 64 {
        return Err(ApiError::InvalidRequest(
            "username must be 1 to 64 characters".into(),
        ));
    }
    if request.password.is_empty() || request.password.len() > 256 {
        return Err(ApiError::InvalidRequest(
            "password must be 1 to 256 bytes".into(),
        ));
    }
    let address = client.map(|Extension(ConnectInfo(addr))| addr.ip());
    state
        .inner
        .login_limits
        .check(username, address)
        .map_err(ApiError::TooManyAttempts)?;
    let session = SessionId::new();
    let login = LoginAttempt {
        username: username.to_owned(),
        sealed_password: state
            .inner
            .settings
            .user_svc_public_key
            .seal(request.password.as_bytes()),
    };
    let page = state
        .request_page(session, Some(login), false, &trace)
        .await?;
    match page.status {
        PageStatus::Complete | PageStatus::Partial => {
            let cookie = state.session_cookie(
                &state.inner.settings.cookie_key.sign(&session),
                state.inner.settings.session_ttl_secs,
            );
            Ok((
                [(header::SET_COOKIE, cookie)],
                Json(PageResponse::from_completed(page)),
            )
                .into_response())
        }
        PageStatus::Rejected => Err(ApiError::InvalidCredentials),
        PageStatus::Unavailable => Err(ApiError::DeadlineExceeded),
    }
}

async fn page(
    State(state): State<AppState>,
    Extension(RequestTrace(trace)): Extension<RequestTrace>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let session =
        session_from(&headers, &state.inner.settings.cookie_key).ok_or(ApiError::InvalidSession)?;
    let page = state.request_page(session, None, false, &trace).await?;
    match page.status {
        PageStatus::Complete | PageStatus::Partial => {
            Ok(Json(PageResponse::from_completed(page)).into_response())
        }
        PageStatus::Rejected => {
            let mut response = ApiError::InvalidSession.into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, state.session_cookie("", 0));
            Ok(response)
        }
        PageStatus::Unavailable => Err(ApiError::DeadlineExceeded),
    }
}

/// Closes the session in user-svc (so every copy of the cookie stops
/// working) and forgets it in this browser, even if closing failed.
async fn logout(
    State(state): State<AppState>,
    Extension(RequestTrace(trace)): Extension<RequestTrace>,
    headers: HeaderMap,
) -> Response {
    let clear = state.session_cookie("", 0);
    let closed = match session_from(&headers, &state.inner.settings.cookie_key) {
        Some(session) => state
            .request_page(session, None, true, &trace)
            .await
            .map(drop),
        None => Ok(()),
    };
    let mut response = match closed {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => error.into_response(),
    };
    response.headers_mut().insert(header::SET_COOKIE, clear);
    response
}

fn session_from(headers: &HeaderMap, key: &CookieKey) -> Option<SessionId> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == COOKIE_NAME)
        .find_map(|(_, value)| key.verify(value))
}

impl AppState {
    fn telemetry(&self) -> &Telemetry {
        self.inner.producer.telemetry()
    }

    fn session_cookie(&self, value: &str, max_age_secs: u64) -> HeaderValue {
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

    /// Sends `page.requested` with this gateway's return address and waits
    /// for the aggregator's answer. The page comes back with every
    /// milestone of the request, also added to `trace` as span events.
    async fn request_page(
        &self,
        session: SessionId,
        login: Option<LoginAttempt>,
        logout: bool,
        trace: &Context,
    ) -> Result<PageCompleted, ApiError> {
        let inner = &self.inner;
        if !inner.readiness.is_ready() {
            return Err(ApiError::NotReady);
        }
        if !inner.producer.broker_reachable() {
            return Err(ApiError::BrokerUnavailable);
        }
        if inner.waiting.len() >= inner.settings.max_waiting {
            self.telemetry().metrics().shed.inc();
            return Err(ApiError::Overloaded);
        }
        let reply_partition = inner.owned.pick().ok_or(ApiError::NotReady)?;
        let request_id = RequestId::new().to_string();
        let requested_at_ms = now_ms();
        let context = RequestContext {
            request_id: request_id.clone(),
            session_id: session.to_string(),
            requested_at_ms,
            deadline_ms: requested_at_ms + inner.settings.page_deadline_ms as i64,
            reply_topic: inner.reply_topic.clone(),
            reply_partition,
        };
        trace
            .span()
            .set_attribute(KeyValue::new("storefront.request_id", request_id.clone()));
        let log = tracing::info_span!(
            "request",
            %request_id,
            session_id = %context.session_id,
            trace_id = %trace::trace_id(trace),
        );
        let event = PageRequested {
            context,
            login,
            logout,
        };
        let record = Outbound::event(
            &inner.page_requested,
            &event.context.session_id,
            &request_id,
            trace,
            &event,
        );
        let reply = inner.waiting.register(&request_id);
        let give_up =
            Duration::from_millis(inner.settings.page_deadline_ms + inner.settings.reply_grace_ms);
        let mut enqueued_at_ms = None;
        let answer = tokio::time::timeout(give_up, async {
            inner
                .producer
                .send(&record)
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            enqueued_at_ms = Some(now_ms());
            reply
                .await
                .map_err(|_| ApiError::Internal("reply channel closed".into()))
        })
        .instrument(log.clone())
        .await;
        inner.waiting.forget(&request_id);
        let _entered = log.enter();
        let outcome = match &answer {
            Ok(Ok(page)) => status_name(page.status),
            Ok(Err(_)) => "failed",
            Err(_) => "timeout",
        };
        self.telemetry()
            .metrics()
            .page_latency
            .with_label_values(&[outcome])
            .observe((now_ms() - requested_at_ms).max(0) as f64 / 1000.0);
        let gateway_milestone = |stage: &str, at_ms| Milestone {
            stage: stage.into(),
            service: "gateway".into(),
            at_ms,
        };
        let mut milestones = vec![gateway_milestone("initiated", requested_at_ms)];
        milestones.extend(enqueued_at_ms.map(|at| gateway_milestone("enqueued", at)));
        let result = match answer {
            Ok(Ok(mut page)) => {
                milestones.append(&mut page.milestones);
                milestones.push(gateway_milestone("delivered", now_ms()));
                page.milestones = milestones.clone();
                tracing::info!(status = ?page.status, missing = ?page.missing, "answered");
                Ok(page)
            }
            Ok(Err(error)) => Err(error),
            Err(_) => {
                tracing::warn!("no page by the deadline");
                Err(ApiError::DeadlineExceeded)
            }
        };
        for milestone in milestones {
            trace.span().add_event_with_timestamp(
                milestone.stage,
                std::time::UNIX_EPOCH + Duration::from_millis(milestone.at_ms.max(0) as u64),
                vec![KeyValue::new("service", milestone.service)],
            );
        }
        result
    }
}

/// How a page request ended, as a metric label.
fn status_name(status: PageStatus) -> &'static str {
    match status {
        PageStatus::Complete => "complete",
        PageStatus::Partial => "partial",
        PageStatus::Rejected => "rejected",
        PageStatus::Unavailable => "unavailable",
    }
}

/// Starts the gateway; it serves until `shutdown` is cancelled.
pub async fn start(
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningService> {
    topics::ensure_topics(&settings.kafka).await?;
    let topics = settings.kafka.topics();
    let readiness = Readiness::new(&[PRODUCER_WARM, REPLY_PARTITIONS]);
    let telemetry = Telemetry::new("gateway", &settings.telemetry)?;
    let producer = EventProducer::new(&settings.kafka, &telemetry)?;
    let owned = OwnedPartitions::default();
    let waiting = Waiting::default();
    let consumer = replies::subscribe(
        &settings.kafka,
        owned.clone(),
        readiness.clone(),
        telemetry.metrics().clone(),
    )?;

    let mut tasks = JoinSet::new();
    tasks.spawn(service::warm_up(producer.clone(), readiness.clone()));
    let dead_letters = DeadLetters::new(producer.clone(), topics.dead_letters.clone());
    tasks.spawn(replies::deliver_replies(
        consumer,
        waiting.clone(),
        dead_letters,
        shutdown.clone(),
    ));

    let http_addr = settings.http_addr;
    let state = AppState::new(settings, producer, owned, waiting, readiness.clone());
    let http_addr = service::serve_http(
        &mut tasks,
        http_addr,
        router(state),
        &telemetry,
        shutdown.clone(),
    )
    .await?;
    tracing::info!(service = "gateway", %http_addr, "started");
    Ok(RunningService::new(
        telemetry, http_addr, readiness, shutdown, tasks,
    ))
}

impl AppState {
    /// The state the handlers share; `start` builds it from live Kafka clients.
    pub fn new(
        settings: Settings,
        producer: EventProducer,
        owned: OwnedPartitions,
        waiting: Waiting,
        readiness: Readiness,
    ) -> Self {
        let topics = settings.kafka.topics();
        let login_limits = LoginLimits::new(
            settings.login_attempts_per_user,
            settings.login_attempts_per_address,
        );
        Self {
            inner: Arc::new(Inner {
                login_limits,
                page_requested: topics.page_requested,
                reply_topic: topics.page_completed,
                settings,
                producer,
                owned,
                waiting,
                readiness,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, http::Request};
    use tower::ServiceExt;

    use super::*;

    /// A gateway whose Kafka side never became ready: no broker is
    /// contacted. Built once: making its producer is the slow part.
    fn not_ready_router() -> Router {
        static ROUTER: std::sync::LazyLock<Router> =
            std::sync::LazyLock::new(build_not_ready_router);
        ROUTER.clone()
    }

    fn build_not_ready_router() -> Router {
        let kafka = KafkaSettings::new("127.0.0.1:9");
        let settings = Settings {
            kafka: kafka.clone(),
            telemetry: TelemetrySettings::default(),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            user_svc_public_key: user_svc::UnsealKey::generate().seal_key(),
            cookie_key: CookieKey::generate(),
            page_deadline_ms: 250,
            reply_grace_ms: 1000,
            max_body_bytes: 1024,
            max_waiting: 10,
            session_ttl_secs: 60,
            cookie_secure: false,
            login_attempts_per_user: 10,
            login_attempts_per_address: 120,
        };
        let producer = EventProducer::new(&kafka, &Telemetry::local("gateway-test")).unwrap();
        let readiness = Readiness::new(&[PRODUCER_WARM, REPLY_PARTITIONS]);
        router(AppState::new(
            settings,
            producer,
            OwnedPartitions::default(),
            Waiting::default(),
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

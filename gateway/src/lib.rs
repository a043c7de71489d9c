//! gateway: the storefront's HTTP edge. A login or page request becomes a
//! `page.requested` event carrying this gateway's return address (one of the
//! `page.completed` partitions it owns); the HTTP request waits for the
//! aggregator's answer on that partition up to a budget, then answers
//! `202 Accepted` with a status URL that any gateway can serve.

pub mod cookies;
pub mod error;
pub mod expiring;
pub mod limits;
pub mod openapi;
pub mod page;
pub mod pages;
pub mod progress;
pub mod replies;
pub mod webhooks;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    extract::{
        rejection::JsonRejection, ConnectInfo, DefaultBodyLimit, Extension, MatchedPath, Request,
        State,
    },
    http::{header, HeaderMap, HeaderValue, StatusCode},
    middleware::{self, Next},
    response::{Html, IntoResponse, Response},
    routing::get,
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
    RequestId, SealKey, SessionId,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    cookies::{CookieKey, COOKIE_NAME},
    error::ApiError,
    expiring::ExpiringMap,
    limits::LoginLimits,
    page::PageResponse,
    pages::{Accepted, AsyncOptions},
    progress::RequestLog,
    replies::{OwnedPartitions, ReplyHandling, Results, Waiting, REPLY_PARTITIONS},
    webhooks::{CallbackSettings, Webhooks},
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
    /// How long past the deadline `GET /api/page` waits for the partial page before answering 504.
    #[arg(long, env = "STOREFRONT_REPLY_GRACE_MS", default_value_t = 1000)]
    pub reply_grace_ms: u64,
    /// How long login and `POST /api/pages` wait for the page before answering 202 Accepted.
    #[arg(long, env = "STOREFRONT_SYNC_BUDGET_MS", default_value_t = 2000)]
    pub sync_budget_ms: u64,
    /// How long a request's status and result can be fetched (then 410 Gone).
    #[arg(long, env = "STOREFRONT_RESULT_TTL_SECS", default_value_t = 600)]
    pub result_ttl_secs: u64,
    #[command(flatten)]
    pub callbacks: CallbackSettings,
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

impl Settings {
    /// Settings with the defaults of every option but the keys and the broker.
    pub fn new(kafka: KafkaSettings, user_svc_public_key: SealKey, cookie_key: CookieKey) -> Self {
        Self {
            kafka,
            telemetry: TelemetrySettings::default(),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            user_svc_public_key,
            cookie_key,
            page_deadline_ms: 250,
            reply_grace_ms: 1000,
            sync_budget_ms: 2000,
            result_ttl_secs: 600,
            callbacks: CallbackSettings::default(),
            max_body_bytes: 16 * 1024,
            max_waiting: 10_000,
            session_ttl_secs: 86_400,
            cookie_secure: false,
            login_attempts_per_user: 10,
            login_attempts_per_address: 120,
        }
    }

    fn result_ttl_ms(&self) -> i64 {
        self.result_ttl_secs as i64 * 1000
    }
}

/// Results and idempotency keys each gateway remembers (beyond them, the topics are read).
const REMEMBERED_REQUESTS: usize = 10_000;

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
    log: RequestLog,
    results: Results,
    /// (session, Idempotency-Key) -> the request it started.
    idempotency: ExpiringMap<(String, String), RequestContext>,
    webhooks: Webhooks,
}

/// The server span of one API request: the root of the request's trace.
#[derive(Clone)]
struct RequestTrace(Context);

/// A login.
#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    username: String,
    password: String,
    /// Where to POST the result (Standard Webhooks), if anywhere.
    #[serde(default)]
    callback_url: Option<String>,
}

/// The gateway's routes, separate from serving so tests can call it directly.
pub fn router(state: AppState) -> Router {
    let limit = state.inner.settings.max_body_bytes;
    let (api, openapi) = api_routes().split_for_parts();
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
        .routes(routes!(login))
        .routes(routes!(page))
        .routes(routes!(logout))
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

/// Log in: authenticates and answers with the first page and a session cookie.
#[utoipa::path(
    post, path = "/api/login", tag = "pages",
    request_body = LoginRequest,
    params(
        ("Prefer" = Option<String>, Header, description = "`respond-async` answers 202 at once; `wait=N` waits at most N seconds"),
    ),
    responses(
        (status = 200, description = "Logged in: the page, and a session cookie", body = PageResponse),
        (status = 202, description = "Still running past the sync budget (or `Prefer: respond-async`): the session cookie, and the status URL in `Location`", body = Accepted),
        (status = 400, description = "Malformed JSON, bad fields or a refused callback URL", body = error::ErrorBody),
        (status = 401, description = "Wrong username or password", body = error::ErrorBody),
        (status = 413, description = "Body too large", body = error::ErrorBody),
        (status = 415, description = "Not JSON", body = error::ErrorBody),
        (status = 429, description = "Too many attempts or requests; see `Retry-After`", body = error::ErrorBody),
        (status = 503, description = "Not ready, or no broker", body = error::ErrorBody),
    )
)]
async fn login(
    State(state): State<AppState>,
    Extension(RequestTrace(trace)): Extension<RequestTrace>,
    client: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Json<LoginRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) =
        body.map_err(|r| ApiError::from_json_rejection(r, state.inner.settings.max_body_bytes))?;
    let options = AsyncOptions::from_headers(&headers)?;
    if options.idempotency_key.is_some() {
        return Err(ApiError::InvalidRequest(
            "Idempotency-Key is not taken on login: a replayed login would hand out a session without the password; retrying a login is safe".into(),
        ));
    }
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
    let callback_url = state.checked_callback(request.callback_url)?;
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
    let submission = Submission {
        session,
        login: Some(login),
        logout: false,
        callback_url,
        idempotency_key: None,
    };
    let cookie = state.session_cookie(
        &state.inner.settings.cookie_key.sign(&session),
        state.inner.settings.session_ttl_secs,
    );
    let answer = state
        .request_page(submission, options.budget(state.sync_budget()), &trace)
        .await?;
    let page = match answer {
        Answer::Page(page) => *page,
        // The cookie comes now, so the client can follow the status URL;
        // it opens nothing until user-svc accepts the password.
        Answer::Pending(context) => {
            let mut response = Accepted::response(&context, None);
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            return Ok(response);
        }
    };
    match page.status {
        PageStatus::Complete | PageStatus::Partial => Ok((
            [(header::SET_COOKIE, cookie)],
            Json(PageResponse::from_completed(page)),
        )
            .into_response()),
        PageStatus::Rejected => Err(ApiError::InvalidCredentials),
        PageStatus::Unavailable => Err(ApiError::DeadlineExceeded),
    }
}

/// The page of the session in the cookie, waited for synchronously (504 past the deadline).
#[utoipa::path(
    get, path = "/api/page", tag = "pages",
    responses(
        (status = 200, description = "The page", body = PageResponse),
        (status = 401, description = "No valid session", body = error::ErrorBody),
        (status = 429, description = "Shed; see `Retry-After`", body = error::ErrorBody),
        (status = 503, description = "Not ready, or no broker", body = error::ErrorBody),
        (status = 504, description = "No page by the deadline and its grace", body = error::ErrorBody),
    )
)]
async fn page(
    State(state): State<AppState>,
    Extension(RequestTrace(trace)): Extension<RequestTrace>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let session =
        session_from(&headers, &state.inner.settings.cookie_key).ok_or(ApiError::InvalidSession)?;
    let page = state.request_page_sync(session, false, &trace).await?;
    match page.status {
        PageStatus::Complete | PageStatus::Partial => {
            Ok(Json(PageResponse::from_completed(page)).into_response())
        }
        PageStatus::Rejected => Ok(state.clear_session(ApiError::InvalidSession.into_response())),
        PageStatus::Unavailable => Err(ApiError::DeadlineExceeded),
    }
}

/// Closes the session in user-svc (so every copy of the cookie stops
/// working) and forgets it in this browser, even if closing failed.
#[utoipa::path(
    post, path = "/api/logout", tag = "pages",
    responses(
        (status = 204, description = "Logged out; the cookie is cleared"),
        (status = 503, description = "Not ready, or no broker (the cookie is cleared all the same)", body = error::ErrorBody),
        (status = 504, description = "user-svc did not confirm in time (the cookie is cleared all the same)", body = error::ErrorBody),
    )
)]
async fn logout(
    State(state): State<AppState>,
    Extension(RequestTrace(trace)): Extension<RequestTrace>,
    headers: HeaderMap,
) -> Response {
    let closed = match session_from(&headers, &state.inner.settings.cookie_key) {
        Some(session) => state
            .request_page_sync(session, true, &trace)
            .await
            .map(drop),
        None => Ok(()),
    };
    let response = match closed {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => error.into_response(),
    };
    state.clear_session(response)
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

/// One page request as the gateway makes it.
struct Submission {
    session: SessionId,
    login: Option<LoginAttempt>,
    logout: bool,
    callback_url: Option<String>,
    idempotency_key: Option<String>,
}

/// How waiting for a page ended.
enum Answer {
    /// The aggregator's answer came within the budget.
    Page(Box<PageCompleted>),
    /// It did not (yet): the request runs on, and its status URL will have it.
    Pending(RequestContext),
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

    /// `response` with a header that makes the browser forget its session.
    fn clear_session(&self, mut response: Response) -> Response {
        response
            .headers_mut()
            .insert(header::SET_COOKIE, self.session_cookie("", 0));
        response
    }

    /// The callback URL, if the request named one and it may be called.
    fn checked_callback(&self, url: Option<String>) -> Result<Option<String>, ApiError> {
        url.map(|url| {
            self.inner
                .webhooks
                .check(&url)
                .map(String::from)
                .map_err(ApiError::CallbackRefused)
        })
        .transpose()
    }

    /// How long an async-capable request may wait for its page, at most.
    fn sync_budget(&self) -> Duration {
        Duration::from_millis(self.inner.settings.sync_budget_ms)
    }

    /// The synchronous flow (`GET /api/page`, logout): the deadline and
    /// its grace, then 504.
    async fn request_page_sync(
        &self,
        session: SessionId,
        logout: bool,
        trace: &Context,
    ) -> Result<PageCompleted, ApiError> {
        let settings = &self.inner.settings;
        let budget = Duration::from_millis(settings.page_deadline_ms + settings.reply_grace_ms);
        let submission = Submission {
            session,
            login: None,
            logout,
            callback_url: None,
            idempotency_key: None,
        };
        match self.request_page(submission, budget, trace).await? {
            Answer::Page(page) => Ok(*page),
            Answer::Pending(_) => Err(ApiError::DeadlineExceeded),
        }
    }

    /// Sends `page.requested` with this gateway's return address and waits
    /// up to `budget` for the aggregator's answer. The page comes back with
    /// every milestone of the request, also added to `trace` as span events.
    async fn request_page(
        &self,
        submission: Submission,
        budget: Duration,
        trace: &Context,
    ) -> Result<Answer, ApiError> {
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
            session_id: submission.session.to_string(),
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
        if let Some(key) = &submission.idempotency_key {
            inner.idempotency.insert(
                (context.session_id.clone(), key.clone()),
                context.clone(),
                requested_at_ms,
            );
        }
        let event = PageRequested {
            context: context.clone(),
            login: submission.login,
            logout: submission.logout,
            callback_url: submission.callback_url,
            idempotency_key: submission.idempotency_key,
        };
        let record = Outbound::event(
            &inner.page_requested,
            &event.context.session_id,
            &request_id,
            trace,
            &event,
        );
        let reply = inner.waiting.register(&request_id);
        let sent = inner
            .producer
            .send(&record)
            .instrument(log.clone())
            .await
            .map_err(|e| ApiError::Internal(e.to_string()));
        if let Err(error) = sent {
            inner.waiting.forget(&request_id);
            // The request was not recorded: a retry with this key must start it, not find it.
            if let Some(key) = &event.idempotency_key {
                inner
                    .idempotency
                    .remove(&(event.context.session_id.clone(), key.clone()));
            }
            return Err(error);
        }
        let enqueued_at_ms = now_ms();
        let answer = tokio::time::timeout(budget, reply).await;
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
        let mut milestones = vec![
            gateway_milestone("initiated", requested_at_ms),
            gateway_milestone("enqueued", enqueued_at_ms),
        ];
        let result = match answer {
            Ok(Ok(mut page)) => {
                milestones.append(&mut page.milestones);
                milestones.push(gateway_milestone("delivered", now_ms()));
                // A timeline: a service can pick the request up before the
                // broker's acknowledgement (`enqueued`) is back at the gateway.
                milestones.sort_by_key(|m| m.at_ms);
                page.milestones = milestones.clone();
                tracing::info!(status = ?page.status, missing = ?page.missing, "answered");
                Ok(Answer::Page(Box::new(page)))
            }
            Ok(Err(_)) => Err(ApiError::Internal("reply channel closed".into())),
            Err(_) => {
                tracing::info!(
                    budget_ms = budget.as_millis() as u64,
                    "no page within the budget; the request runs on"
                );
                Ok(Answer::Pending(context))
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
pub fn status_name(status: PageStatus) -> &'static str {
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
    let replies = replies::reply_driver(
        &settings.kafka,
        &telemetry,
        owned.clone(),
        readiness.clone(),
    )?;

    let http_addr = settings.http_addr;
    let state = AppState::new(settings, producer.clone(), owned, readiness.clone());
    let mut tasks = JoinSet::new();
    tasks.spawn(service::warm_up(producer.clone(), readiness.clone()));
    let handling = ReplyHandling {
        waiting: state.inner.waiting.clone(),
        results: state.inner.results.clone(),
        webhooks: state.inner.webhooks.clone(),
    };
    let dead_letters = DeadLetters::new(producer.clone(), topics.dead_letters.clone());
    tasks.spawn(replies.run(Arc::new(handling), producer, dead_letters, shutdown.clone()));
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
        readiness: Readiness,
    ) -> Self {
        let topics = settings.kafka.topics();
        let login_limits = LoginLimits::new(
            settings.login_attempts_per_user,
            settings.login_attempts_per_address,
        );
        let webhooks = Webhooks::new(
            &settings.callbacks,
            producer.clone(),
            topics.callback_reported.clone(),
        );
        let ttl_ms = settings.result_ttl_ms();
        Self {
            inner: Arc::new(Inner {
                login_limits,
                page_requested: topics.page_requested,
                reply_topic: topics.page_completed,
                log: RequestLog::new(&settings.kafka),
                results: Arc::new(ExpiringMap::new(REMEMBERED_REQUESTS, ttl_ms)),
                idempotency: ExpiringMap::new(REMEMBERED_REQUESTS, ttl_ms),
                webhooks,
                settings,
                producer,
                owned,
                waiting: Waiting::default(),
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

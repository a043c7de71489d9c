//! The operator console: a page and a JSON API on their own listener for
//! the engineers who debug a workflow. It follows `page.completed` live,
//! draws one request's records on every topic (the locator `storefront
//! trace` uses), shows the consumer groups' lag and the dead letters, and
//! runs replays with the CLI's safeguards. Every `/api/` route needs the
//! operator token; no secret leaves it (see `redact`).

mod auth;
mod dead_letters;
mod error;
mod feed;
mod groups;
mod redact;
mod replays;
mod timeline;
mod topics;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::State,
    http::header,
    response::IntoResponse,
    routing::{get, post},
    Json, Router,
};
use serde::Serialize;
use storefront_runtime::{HttpLimits, KafkaSettings, Readiness, RunningService, Telemetry};
use storefront_schemas::UnsealKey;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::keys::ConsoleToken;

pub use error::ApiError;
pub use feed::{Summary, SummaryStatus};

/// Where the console listens and what it links to.
#[derive(Debug, Clone, clap::Args)]
pub struct ConsoleSettings {
    /// The console's address; keep it on loopback or behind a proxy that
    /// terminates TLS (the token travels in a header).
    #[arg(
        long,
        env = "STOREFRONT_CONSOLE_ADDR",
        default_value = "127.0.0.1:8090"
    )]
    pub console_addr: SocketAddr,
    /// The link to a trace in an outside tracing UI, `{trace_id}` replaced
    /// by the request's trace ID (Jaeger: `http://127.0.0.1:16686/trace/{trace_id}`).
    #[arg(long, env = "STOREFRONT_CONSOLE_TRACE_URL")]
    pub trace_url: Option<String>,
}

/// What the console needs besides its settings.
pub struct Console {
    pub kafka: KafkaSettings,
    pub settings: ConsoleSettings,
    pub token: ConsoleToken,
    /// user-svc's key, which opens recorded logins' passwords for a replay;
    /// without it a range holding logins cannot be replayed.
    pub unseal_key: Option<UnsealKey>,
    /// The deadline the gateway gives pages, drawn when a request lacks one.
    pub page_deadline_ms: u64,
}

/// What every handler shares.
#[derive(Clone)]
struct AppState {
    kafka: KafkaSettings,
    trace_url: Option<String>,
    page_deadline_ms: u64,
    feed: feed::Feed,
    replays: replays::Replays,
}

/// Readiness condition met once the live feed has read the last 15 minutes.
const FEED_CAUGHT_UP: &str = "feed caught up";

/// Starts the console: the feed's follower and the listener.
pub async fn start(
    console: Console,
    shutdown: CancellationToken,
) -> storefront_runtime::Result<RunningService> {
    let telemetry = Telemetry::local("storefront-console");
    let readiness = Readiness::new(&[FEED_CAUGHT_UP]);
    let mut tasks = JoinSet::new();
    let feed = feed::Feed::start(
        &console.kafka,
        &mut tasks,
        readiness.clone(),
        FEED_CAUGHT_UP,
        shutdown.clone(),
    );
    let state = AppState {
        kafka: console.kafka,
        trace_url: console.settings.trace_url,
        page_deadline_ms: console.page_deadline_ms,
        feed,
        replays: replays::Replays::new(console.unseal_key),
    };
    let router = router(state, Arc::new(console.token))
        .merge(storefront_runtime::health::router(readiness.clone()));
    let addr = storefront_runtime::service::serve_http(
        &mut tasks,
        console.settings.console_addr,
        router,
        &HttpLimits::default(),
        &telemetry,
        shutdown.clone(),
    )
    .await?;
    Ok(RunningService::new(
        telemetry, addr, readiness, shutdown, tasks,
    ))
}

/// The page, its assets, and the API behind the token.
fn router(state: AppState, token: Arc<ConsoleToken>) -> Router {
    let api = Router::new()
        .route("/config", get(config))
        .route("/requests", get(feed::list))
        .route("/requests/live", get(feed::live))
        .route("/requests/{id}/timeline", get(timeline::show))
        .route("/stats", get(feed::stats))
        .route("/topics", get(topics::list))
        .route("/topics/{name}/records", get(topics::records))
        .route("/groups", get(groups::show))
        .route("/dead-letters", get(dead_letters::show))
        .route("/dead-letters/republish", post(dead_letters::republish))
        .route("/replays/plan", post(replays::plan))
        .route("/replays", post(replays::start))
        .route("/replays/{id}", get(replays::show))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(axum::middleware::from_fn_with_state(
            token,
            auth::require_token,
        ))
        .with_state(state);
    Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", INDEX_HTML)))
        .route(
            "/console.js",
            get(|| asset("text/javascript; charset=utf-8", CONSOLE_JS)),
        )
        .route(
            "/console.css",
            get(|| asset("text/css; charset=utf-8", CONSOLE_CSS)),
        )
        .nest("/api", api)
}

const INDEX_HTML: &str = include_str!("assets/index.html");
const CONSOLE_JS: &str = include_str!("assets/console.js");
const CONSOLE_CSS: &str = include_str!("assets/console.css");

async fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            // Everything comes from the console itself; nothing may frame it.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}

#[derive(Serialize)]
struct Config {
    namespace: String,
    bootstrap_servers: String,
    trace_url: Option<String>,
    page_deadline_ms: u64,
    replay_opens_logins: bool,
}

async fn config(State(state): State<AppState>) -> Json<Config> {
    Json(Config {
        namespace: state.kafka.topic_prefix.clone(),
        bootstrap_servers: state.kafka.bootstrap_servers.clone(),
        trace_url: state.trace_url.clone(),
        page_deadline_ms: state.page_deadline_ms,
        replay_opens_logins: state.replays.opens_logins(),
    })
}

/// A time range a query gives (`since`, `until`), each as `storefront trace
/// --since` takes it; an empty one is absent. 400 `bad_time` if either is no
/// time or the range ends before it begins.
fn time_range(
    since: Option<String>,
    until: Option<String>,
) -> Result<(Option<i64>, Option<i64>), ApiError> {
    let time = |name: &str, text: Option<String>| {
        text.filter(|t| !t.trim().is_empty())
            .map(|t| {
                crate::when::parse_time(&t)
                    .map_err(|e| ApiError::invalid("bad_time", format!("{name}: {e}")))
            })
            .transpose()
    };
    let (since, until) = (time("since", since)?, time("until", until)?);
    if let (Some(since), Some(until)) = (since, until) {
        if until < since {
            return Err(ApiError::invalid("bad_time", "until is before since"));
        }
    }
    Ok((since, until))
}

/// Runs blocking Kafka reads off the runtime; a failure is the broker's.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Kafka(format!("{e:#}")))
}

#[cfg(test)]
mod tests;

//! gateway: the storefront's HTTP edge. A login or page request becomes a
//! `page.requested` event carrying this gateway's return address (one of the
//! `page.completed` partitions it owns); the HTTP request waits for the
//! aggregator's answer on that partition up to a budget, then answers
//! `202 Accepted` with a status URL that any gateway can serve.
//!
//! Where things are: `settings.rs` (flags), `state.rs` (what handlers
//! share), `routes.rs` (every route, the OpenAPI document, the server span:
//! a new endpoint is a handler in the file of its family plus one line
//! there), `login.rs` (login, logout), `pages.rs` (the page and the
//! asynchronous API), `lifecycle.rs` (one request sent and waited for, by
//! one waiting rule), `cookies.rs` (the session cookie), `replies.rs` (the
//! reply partitions), `callbacks.rs` (callbacks, on a path of their own),
//! `progress.rs` (status read back from the topics), `streams.rs` (event
//! streams: their limits and the follower behind them).

pub mod callbacks;
pub mod cookies;
pub mod error;
pub mod expiring;
mod lifecycle;
pub mod limits;
mod login;
pub mod openapi;
pub mod page;
pub mod pages;
pub mod progress;
pub mod replies;
mod routes;
mod settings;
mod state;
pub mod streams;
pub mod webhooks;

use std::sync::Arc;

use storefront_runtime::{
    service::{self, PRODUCER_WARM},
    topics, DeadLetters, EventProducer, Readiness, RunningService, Telemetry,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{
    callbacks::{CallbackHandling, CALLBACK_GROUP},
    replies::{OwnedPartitions, ReplyHandling, REPLY_PARTITIONS},
};

pub use lifecycle::{status_name, AsyncOptions};
pub use routes::router;
pub use settings::Settings;
pub use state::AppState;

/// Starts the gateway; it serves until `shutdown` is cancelled.
pub async fn start(
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningService> {
    topics::ensure_topics(&settings.kafka).await?;
    let topics = settings.kafka.topics();
    let readiness = Readiness::new(&[PRODUCER_WARM, REPLY_PARTITIONS, CALLBACK_GROUP]);
    let telemetry = Telemetry::new("gateway", &settings.telemetry)?;
    let producer = EventProducer::new(&settings.kafka, &telemetry)?;
    let owned = OwnedPartitions::default();
    let replies = replies::reply_driver(
        &settings.kafka,
        &telemetry,
        owned.clone(),
        readiness.clone(),
    )?;
    let callbacks = callbacks::callback_driver(&settings.kafka, &telemetry, readiness.clone())?;

    let http_addr = settings.http_addr;
    let http_limits = settings.http.clone();
    let state = AppState::new(settings, producer.clone(), owned, readiness.clone());
    let mut tasks = JoinSet::new();
    let shutdown_callbacks = shutdown.clone();
    tasks.spawn(service::warm_up(producer.clone(), readiness.clone()));
    let handling = ReplyHandling {
        waiting: state.inner.waiting.clone(),
        results: state.inner.results.clone(),
    };
    let callback_handling = CallbackHandling {
        webhooks: state.inner.webhooks.clone(),
        results: state.inner.results.clone(),
    };
    tasks.spawn(async move {
        callbacks
            .run(Arc::new(callback_handling), shutdown_callbacks)
            .await;
        Ok(())
    });
    let dead_letters = DeadLetters::new(producer.clone(), topics.dead_letters.clone());
    tasks.spawn(replies.run(Arc::new(handling), producer, dead_letters, shutdown.clone()));
    let http_addr = service::serve_http(
        &mut tasks,
        http_addr,
        router(state),
        &http_limits,
        &telemetry,
        shutdown.clone(),
    )
    .await?;
    tracing::info!(service = "gateway", %http_addr, "started");
    Ok(RunningService::new(
        telemetry, http_addr, readiness, shutdown, tasks,
    ))
}

//! What every handler shares: the settings, the Kafka clients, the
//! requests waiting for their page, the results and idempotency keys kept.

use std::sync::Arc;

use storefront_runtime::{EventProducer, Readiness, Telemetry};
use storefront_schemas::{RequestContext, SessionId};

use crate::{
    error::ApiError,
    expiring::ExpiringMap,
    limits::LoginLimits,
    progress::RequestLog,
    replies::{OwnedPartitions, Results, Waiting},
    settings::Settings,
    streams::Streams,
    webhooks::Webhooks,
};

/// Results and idempotency keys each gateway remembers (beyond them, the topics are read).
const REMEMBERED_REQUESTS: usize = 10_000;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) settings: Settings,
    pub(crate) page_requested: String,
    pub(crate) reply_topic: String,
    pub(crate) producer: EventProducer,
    pub(crate) owned: OwnedPartitions,
    pub(crate) waiting: Waiting,
    pub(crate) readiness: Readiness,
    pub(crate) login_limits: LoginLimits,
    pub(crate) log: RequestLog,
    pub(crate) results: Results,
    /// (session, Idempotency-Key) -> the request it started.
    pub(crate) idempotency: ExpiringMap<(SessionId, String), RequestContext>,
    pub(crate) webhooks: Webhooks,
    pub(crate) streams: Streams,
}

impl AppState {
    pub(crate) fn telemetry(&self) -> &Telemetry {
        self.inner.producer.telemetry()
    }

    /// The callback URL, if the request named one and it may be called:
    /// 400 if it is not a URL, 403 if it is one this gateway may not call.
    pub(crate) fn checked_callback(&self, url: Option<String>) -> Result<Option<String>, ApiError> {
        url.map(|url| {
            crate::webhooks::well_formed(&url).map_err(ApiError::InvalidRequest)?;
            self.inner
                .webhooks
                .check(&url)
                .map(String::from)
                .map_err(ApiError::CallbackRefused)
        })
        .transpose()
    }
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
        let streams = Streams::new(
            settings.streams.clone(),
            &settings.kafka,
            producer.telemetry().metrics().clone(),
        );
        Self {
            inner: Arc::new(Inner {
                login_limits,
                page_requested: topics.page_requested,
                reply_topic: topics.page_completed,
                log: RequestLog::new(&settings.kafka),
                results: Arc::new(ExpiringMap::new(REMEMBERED_REQUESTS, ttl_ms)),
                idempotency: ExpiringMap::new(REMEMBERED_REQUESTS, ttl_ms),
                webhooks,
                streams,
                settings,
                producer,
                owned,
                waiting: Waiting::default(),
                readiness,
            }),
        }
    }
}

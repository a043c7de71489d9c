//! Where a request stands, for any gateway: read back from the topics of
//! the request path, not from the memory of the gateway that started it.
//!
//! Every event of a request is keyed by its session, so the session (from
//! the cookie) names one partition of each topic, and the request id
//! (UUIDv7) says from when to read. A lookup reads that partition of
//! `page.requested`, the three part topics and `callback.reported` from the
//! request's time, then the one `page.completed` partition named in the
//! request's return address. No gateway reads every reply.

use std::{
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use serde::Serialize;
use storefront_runtime::{
    locator::Locator,
    snapshot::{PartitionReader, Since, TopicPartition},
    KafkaSettings, Topics,
};
use storefront_schemas::{
    CallbackOutcome, CallbackReported, PageCompleted, PageStatus, RequestContext, RequestEvent,
    RequestId, SessionId,
};
use utoipa::ToSchema;

use crate::error::ApiError;

/// How long one lookup may take before the gateway gives up with 503.
const LOOKUP_DEADLINE: Duration = Duration::from_secs(10);
/// Readers kept between lookups.
const IDLE_READERS: usize = 4;

/// A part of a page, as the status and the event stream name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PartName {
    User,
    History,
    Ads,
}

impl PartName {
    pub const ALL: [PartName; 3] = [Self::User, Self::History, Self::Ads];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::History => "history",
            Self::Ads => "ads",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// The part an event of the request path delivers, if it is one.
    pub fn of(event: &RequestEvent) -> Option<Self> {
        match event {
            RequestEvent::UserResolved(_) => Some(Self::User),
            RequestEvent::HistoryFetched(_) => Some(Self::History),
            RequestEvent::AdsSelected(_) => Some(Self::Ads),
            _ => None,
        }
    }
}

/// Where the delivery of the result to the request's callback URL stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CallbackState {
    pub url: String,
    /// `pending` until the page is out and delivered or given up;
    /// `delivered`; or `failed` after the last retry.
    pub state: CallbackStage,
    /// Attempts made, once the delivery ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i32>,
    /// Why the last attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallbackStage {
    Pending,
    Delivered,
    Failed,
}

impl CallbackState {
    /// The state of a callback to `url`, given the report (if any) of how it ended.
    pub fn of(url: String, report: Option<&CallbackReported>) -> Self {
        match report {
            None => Self {
                url,
                state: CallbackStage::Pending,
                attempts: None,
                last_error: None,
            },
            Some(report) => Self {
                url,
                state: match report.outcome {
                    CallbackOutcome::Delivered => CallbackStage::Delivered,
                    CallbackOutcome::Failed => CallbackStage::Failed,
                },
                attempts: Some(report.attempts),
                last_error: report.last_error.clone(),
            },
        }
    }
}

/// What is known of one request.
#[derive(Debug, Clone)]
pub struct Progress {
    pub context: RequestContext,
    /// The parts the aggregator has been sent, in the order they arrived.
    pub parts: Vec<PartName>,
    /// The answer, once the aggregator sent it.
    pub page: Option<PageCompleted>,
    pub callback: Option<CallbackState>,
}

impl Progress {
    /// A request known only from its answer: the parts are what the page holds.
    pub fn from_page(page: PageCompleted, report: Option<&CallbackReported>) -> Self {
        let parts = match page.status {
            PageStatus::Rejected => vec![PartName::User],
            _ => PartName::ALL
                .into_iter()
                .filter(|p| !page.missing.iter().any(|m| m == p.as_str()))
                .collect(),
        };
        Self {
            context: page.context.clone(),
            parts,
            callback: page
                .callback_url
                .clone()
                .map(|url| CallbackState::of(url, report)),
            page: Some(page),
        }
    }

    /// Takes in one more record of the request, as it arrives.
    pub fn apply(&mut self, event: RequestEvent) {
        match event {
            RequestEvent::PageCompleted(page) => self.page = Some(page),
            RequestEvent::CallbackReported(report) => {
                if let Some(callback) = &mut self.callback {
                    *callback = CallbackState::of(callback.url.clone(), Some(&report));
                }
            }
            other => {
                if let Some(part) = PartName::of(&other).filter(|p| !self.parts.contains(p)) {
                    self.parts.push(part);
                }
            }
        }
    }

    /// Nothing about it can change any more: the page is out and its
    /// callback, if any, delivered or given up.
    pub fn is_final(&self) -> bool {
        self.page.is_some()
            && self
                .callback
                .as_ref()
                .is_none_or(|c| c.state != CallbackStage::Pending)
    }
}

/// Looks requests up on the topics, with a few readers kept warm.
#[derive(Clone)]
pub struct RequestLog {
    settings: KafkaSettings,
    topics: Topics,
    readers: Arc<Mutex<Vec<PartitionReader>>>,
    locator: Arc<OnceLock<Locator>>,
}

impl RequestLog {
    pub fn new(settings: &KafkaSettings) -> Self {
        Self {
            topics: settings.topics(),
            settings: settings.clone(),
            readers: Arc::default(),
            locator: Arc::default(),
        }
    }

    /// Finds request `request_id` of `session_id`, made at `created_ms`:
    /// `None` if no such request of this session is on the topics.
    pub async fn find(
        &self,
        session_id: SessionId,
        request_id: RequestId,
        created_ms: i64,
    ) -> Result<Option<Progress>, ApiError> {
        self.with_reader(move |log, reader| {
            log.find_blocking(reader, session_id, request_id, created_ms)
        })
        .await
    }

    /// The latest request of `session_id` that carried `idempotency_key`,
    /// made since `since_ms`.
    pub async fn find_idempotent(
        &self,
        session_id: SessionId,
        idempotency_key: &str,
        since_ms: i64,
    ) -> Result<Option<RequestContext>, ApiError> {
        let key = idempotency_key.to_owned();
        self.with_reader(move |log, reader| {
            let requests = log
                .locator(reader)?
                .session_partitions(session_id, [&log.topics.page_requested]);
            let mut found = None;
            reader
                .read(
                    &requests,
                    Since::Timestamp(since_ms),
                    None,
                    LOOKUP_DEADLINE,
                    |record| {
                        if let Ok(RequestEvent::PageRequested(request)) = record.event(&log.topics)
                        {
                            if request.context.session_id == session_id
                                && request.idempotency_key.as_deref() == Some(key.as_str())
                            {
                                found = Some(request.context);
                            }
                        }
                    },
                )
                .map_err(unavailable)?;
            Ok(found)
        })
        .await
    }

    /// The partitions an event stream of a request of `session` watches
    /// before its page is due: the three parts and `callback.reported`.
    pub async fn stream_partitions(
        &self,
        session_id: SessionId,
    ) -> Result<Vec<TopicPartition>, ApiError> {
        self.with_reader(move |log, reader| {
            let t = &log.topics;
            Ok(log.locator(reader)?.session_partitions(
                session_id,
                [
                    &t.user_resolved,
                    &t.history_fetched,
                    &t.ads_selected,
                    &t.callback_reported,
                ],
            ))
        })
        .await
    }

    /// The partition a request's page is written to, if it is on these topics.
    pub fn reply_partition(&self, context: &RequestContext) -> Option<TopicPartition> {
        (context.reply_topic == self.topics.page_completed)
            .then(|| TopicPartition::new(&self.topics.page_completed, context.reply_partition))
    }

    /// Runs `work` off the async threads with a pooled reader.
    async fn with_reader<T: Send + 'static>(
        &self,
        work: impl FnOnce(&RequestLog, &PartitionReader) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let log = self.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = log.readers.lock().expect("readers lock").pop();
            let reader = match pooled {
                Some(reader) => reader,
                None => {
                    PartitionReader::new(&log.settings, "gateway-lookup").map_err(unavailable)?
                }
            };
            let outcome = work(&log, &reader);
            let mut idle = log.readers.lock().expect("readers lock");
            if idle.len() < IDLE_READERS {
                idle.push(reader);
            }
            outcome
        })
        .await
        .map_err(|e| ApiError::Internal(format!("lookup task failed: {e}")))?
    }

    /// Where a session's records are; the partition count is read once:
    /// the topics are co-partitioned and a change of count would remap
    /// every session anyway.
    fn locator(&self, reader: &PartitionReader) -> Result<&Locator, ApiError> {
        if let Some(locator) = self.locator.get() {
            return Ok(locator);
        }
        let found = Locator::discover(reader, self.topics.clone()).map_err(unavailable)?;
        Ok(self.locator.get_or_init(|| found))
    }

    fn find_blocking(
        &self,
        reader: &PartitionReader,
        session_id: SessionId,
        request_id: RequestId,
        created_ms: i64,
    ) -> Result<Option<Progress>, ApiError> {
        let locator = self.locator(reader)?;
        let t = &self.topics;
        let session_topics = locator.request_records(session_id);
        let since = Locator::since_created(created_ms);
        let mut request = None;
        let mut parts: Vec<(i64, PartName)> = Vec::new();
        let mut report = None;
        let ours = |context: &RequestContext| {
            context.request_id == request_id && context.session_id == session_id
        };
        reader
            .read(&session_topics, since, None, LOOKUP_DEADLINE, |record| {
                let at = record.timestamp_ms.unwrap_or_default();
                let Some(event) = record
                    .event::<RequestEvent>(t)
                    .ok()
                    .filter(|e| ours(e.context()))
                else {
                    return;
                };
                let part = match event {
                    RequestEvent::PageRequested(r) => return request = Some(r),
                    RequestEvent::CallbackReported(r) => return report = Some(r),
                    other => match PartName::of(&other) {
                        Some(part) => part,
                        None => return,
                    },
                };
                if !parts.iter().any(|(_, p)| *p == part) {
                    parts.push((at, part));
                }
            })
            .map_err(unavailable)?;
        let Some(request) = request else {
            return Ok(None);
        };
        let context = request.context;
        let mut page = None;
        if context.reply_topic == t.page_completed {
            let reply = locator.replies([context.reply_partition]);
            reader
                .read(&reply, since, None, LOOKUP_DEADLINE, |record| {
                    if let Ok(RequestEvent::PageCompleted(p)) = record.event(t) {
                        if ours(&p.context) {
                            page = Some(p);
                        }
                    }
                })
                .map_err(unavailable)?;
        }
        parts.sort_by_key(|(at, _)| *at);
        Ok(Some(Progress {
            context,
            parts: parts.into_iter().map(|(_, p)| p).collect(),
            page,
            callback: request
                .callback_url
                .map(|url| CallbackState::of(url, report.as_ref())),
        }))
    }
}

fn unavailable(error: storefront_runtime::Error) -> ApiError {
    tracing::warn!(%error, "request lookup failed");
    ApiError::BrokerUnavailable
}

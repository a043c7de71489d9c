//! Replies: the gateway owns some partitions of `page.completed` (given to
//! it by the consumer group all gateways share), names one of them as the
//! return address of each request, and hands each completed page to the
//! HTTP request waiting for it. No gateway reads every reply. A reply with
//! no waiter is kept for status lookups; a reply with a callback URL is
//! delivered there by whichever gateway owns its partition.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, RwLock,
    },
    time::Duration,
};

use rdkafka::{
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    statistics::Statistics,
    ClientContext, Offset, TopicPartitionList,
};
use storefront_runtime::{
    metrics::Metrics, offsets::OffsetTracker, processor, trace, DeadLetters, KafkaSettings,
    Readiness, Telemetry,
};
use storefront_schemas::PageCompleted;
use tokio::sync::{oneshot, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{expiring::ExpiringMap, page::result_of, progress::Progress, webhooks::Webhooks};

/// Readiness condition: this gateway owns at least one reply partition.
pub const REPLY_PARTITIONS: &str = "reply partitions owned";

/// The partitions of the reply topic this gateway currently owns.
#[derive(Clone, Default)]
pub struct OwnedPartitions {
    partitions: Arc<RwLock<Vec<i32>>>,
    next: Arc<AtomicUsize>,
}

impl OwnedPartitions {
    /// A partition to name as return address, round robin; `None` if none is owned.
    pub fn pick(&self) -> Option<i32> {
        let partitions = self.partitions.read().expect("partitions lock");
        if partitions.is_empty() {
            return None;
        }
        Some(partitions[self.next.fetch_add(1, Ordering::Relaxed) % partitions.len()])
    }
}

/// Tracks which reply partitions the group gave this gateway.
pub struct ReplyContext {
    owned: OwnedPartitions,
    topic: String,
    readiness: Readiness,
    metrics: Metrics,
}

impl ClientContext for ReplyContext {
    fn stats(&self, statistics: Statistics) {
        self.on_statistics(&statistics);
        self.metrics.record_consumer_lag(&statistics);
    }
}

impl ConsumerContext for ReplyContext {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assigned) = rebalance {
            tracing::info!(
                assigned = assigned.count(),
                "reply partitions assigned; waiting for their fetch positions"
            );
            if let Err(error) = commit_start_positions(consumer, assigned) {
                tracing::warn!(%error, "could not commit the start of new reply partitions");
            }
        }
    }
}

/// Commits the end of each assigned partition that has no committed offset
/// yet, so that the partition's next owner (if this gateway dies) starts
/// from there, not from `latest` at its own assignment: a reply written in
/// between, and its callback, would be skipped.
fn commit_start_positions(
    consumer: &BaseConsumer<ReplyContext>,
    assigned: &TopicPartitionList,
) -> rdkafka::error::KafkaResult<()> {
    const TIMEOUT: Duration = Duration::from_secs(5);
    let committed = consumer.committed_offsets(assigned.clone(), TIMEOUT)?;
    let mut starts = TopicPartitionList::new();
    for element in committed.elements() {
        if matches!(element.offset(), Offset::Offset(_)) {
            continue;
        }
        let (_, high) = storefront_runtime::watermarks::fetch(
            consumer,
            element.topic(),
            element.partition(),
            TIMEOUT,
        )?;
        starts.add_partition_offset(element.topic(), element.partition(), Offset::Offset(high))?;
    }
    if starts.count() > 0 {
        consumer.commit(&starts, CommitMode::Sync)?;
    }
    Ok(())
}

impl ReplyContext {
    /// The partitions whose fetcher is active, i.e. whose start offset is
    /// known: a reply written there from now on will be read. Naming a
    /// partition before that could lose the reply to `auto.offset.reset=latest`.
    fn on_statistics(&self, statistics: &Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        let mut active: Vec<i32> = topic
            .partitions
            .values()
            .filter(|p| p.partition >= 0 && p.desired && p.fetch_state == "active")
            .map(|p| p.partition)
            .collect();
        active.sort_unstable();
        // While a rebalance has revoked everything, keep the old addresses.
        if active.is_empty() {
            return;
        }
        let mut owned = self.owned.partitions.write().expect("partitions lock");
        if *owned != active {
            tracing::info!(partitions = ?active, "reply partitions owned");
            *owned = active;
        }
        drop(owned);
        self.readiness.done(REPLY_PARTITIONS);
    }
}

/// HTTP requests waiting for their page, by request id (a repeated
/// idempotent request waits beside the first).
#[derive(Clone, Default)]
pub struct Waiting {
    senders: Arc<Mutex<HashMap<String, Vec<oneshot::Sender<PageCompleted>>>>>,
}

impl Waiting {
    /// Registers a request before it is sent, so no reply can be missed.
    pub fn register(&self, request_id: &str) -> oneshot::Receiver<PageCompleted> {
        let (tx, rx) = oneshot::channel();
        self.senders
            .lock()
            .expect("waiting lock")
            .entry(request_id.to_owned())
            .or_default()
            .push(tx);
        rx
    }

    /// Forgets the waiters of a request that gave up waiting.
    pub fn forget(&self, request_id: &str) {
        let mut senders = self.senders.lock().expect("waiting lock");
        if let Some(waiters) = senders.get_mut(request_id) {
            waiters.retain(|w| !w.is_closed());
            if waiters.is_empty() {
                senders.remove(request_id);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.senders.lock().expect("waiting lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hands the page to every request waiting for it; false if none was.
    fn deliver(&self, page: &PageCompleted) -> bool {
        let waiters = self
            .senders
            .lock()
            .expect("waiting lock")
            .remove(&page.context.request_id)
            .unwrap_or_default();
        let mut answered = false;
        for waiter in waiters {
            answered |= waiter.send(page.clone()).is_ok();
        }
        answered
    }
}

/// Pages that reached this gateway with nobody waiting (the request went
/// asynchronous, or its gateway died), kept for status lookups.
pub type Results = Arc<ExpiringMap<String, Progress>>;

/// Creates the reply consumer; partitions arrive with the first rebalance.
pub fn subscribe(
    settings: &KafkaSettings,
    owned: OwnedPartitions,
    readiness: Readiness,
    metrics: Metrics,
) -> storefront_runtime::Result<StreamConsumer<ReplyContext>> {
    let topic = settings.topics().page_completed;
    let consumer: StreamConsumer<ReplyContext> = settings
        .client_config("gateway")
        .set("group.id", settings.group("gateway-replies"))
        // A reply is only useful to the request waiting now.
        .set("auto.offset.reset", "latest")
        .set("enable.auto.commit", "true")
        // Stored only once a reply is handled (its callback delivered).
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", settings.fetch_wait_ms.to_string())
        .set("session.timeout.ms", processor::SESSION_TIMEOUT_MS)
        .set("heartbeat.interval.ms", processor::HEARTBEAT_INTERVAL_MS)
        .set("statistics.interval.ms", "100")
        .create_with_context(ReplyContext {
            owned,
            topic: topic.clone(),
            readiness,
            metrics,
        })
        .map_err(|source| storefront_runtime::Error::Kafka {
            action: "create the reply consumer",
            source,
        })?;
    consumer
        .subscribe(&[&topic])
        .map_err(|source| storefront_runtime::Error::Kafka {
            action: "subscribe to replies",
            source,
        })?;
    Ok(consumer)
}

/// What becomes of each reply.
#[derive(Clone)]
pub struct ReplyHandling {
    pub waiting: Waiting,
    pub results: Results,
    pub webhooks: Webhooks,
    pub dead_letters: DeadLetters,
}

/// Callback deliveries in progress at once; more wait (and hold back the
/// commit of their partition).
const MAX_DELIVERIES: usize = 256;

/// Delivers replies to waiting requests until `shutdown`, each under a
/// `process` span that continues the aggregator's trace. A reply nobody
/// waits for is kept in `results`. A reply with a callback URL is POSTed
/// there; its offset is stored for commit only once the delivery ended, so
/// if this gateway dies the next owner of the partition delivers it.
pub async fn deliver_replies(
    consumer: StreamConsumer<ReplyContext>,
    handling: ReplyHandling,
    shutdown: CancellationToken,
) -> storefront_runtime::Result<()> {
    let consumer = Arc::new(consumer);
    let offsets = Arc::new(Mutex::new(OffsetTracker::default()));
    let deliveries = Arc::new(Semaphore::new(MAX_DELIVERIES));
    let telemetry: Telemetry = handling.dead_letters.telemetry().clone();
    while let Some(mut record) = storefront_runtime::next_record(&consumer, &shutdown).await {
        record.trace = telemetry.process_span(&record, storefront_schemas::now_ms());
        let (topic, partition, offset) = (record.topic.clone(), record.partition, record.offset);
        offsets
            .lock()
            .expect("offsets lock")
            .begin(&topic, partition, offset);
        let finish = {
            let (consumer, offsets) = (consumer.clone(), offsets.clone());
            move || {
                offsets
                    .lock()
                    .expect("offsets lock")
                    .finish_and_store(&consumer, &topic, partition, offset)
            }
        };
        let outcome = match record.decode::<PageCompleted>() {
            Ok(page) => {
                let answered = handling.waiting.deliver(&page);
                match page.callback_url.clone() {
                    Some(url) => {
                        handling.results.insert(
                            page.context.request_id.clone(),
                            Progress::from_page(page.clone(), None),
                            storefront_schemas::now_ms(),
                        );
                        let (handling, deliveries) = (handling.clone(), deliveries.clone());
                        let span = processor::log_span(&record);
                        tokio::spawn(
                            async move {
                                let _permit = deliveries.acquire_owned().await;
                                let body = webhook_body(&page);
                                let report = handling.webhooks.deliver(&page, &url, &body).await;
                                let request_id = page.context.request_id.clone();
                                handling.results.insert(
                                    request_id,
                                    Progress::from_page(page, Some(&report)),
                                    storefront_schemas::now_ms(),
                                );
                                finish();
                            }
                            .instrument(span),
                        );
                    }
                    None => {
                        if !answered {
                            handling.results.insert(
                                page.context.request_id.clone(),
                                Progress::from_page(page, None),
                                storefront_schemas::now_ms(),
                            );
                        }
                        finish();
                    }
                }
                None
            }
            Err(error) => {
                let reason = error.to_string();
                let dead_lettered = handling
                    .dead_letters
                    .send(&record, &reason)
                    .instrument(processor::log_span(&record))
                    .await;
                match dead_lettered {
                    Ok(()) => finish(),
                    Err(error) => tracing::error!(%error, "could not dead-letter a reply"),
                }
                Some(reason)
            }
        };
        trace::end(&record.trace, outcome.as_deref());
    }
    processor::commit_and_close(consumer).await;
    Ok(())
}

/// What a callback receives: the result as the result endpoint gives it,
/// in the Standard Webhooks payload shape (`type`, `data`).
fn webhook_body(page: &PageCompleted) -> Vec<u8> {
    let (status, result) = result_of(page, None);
    let body = serde_json::json!({
        "type": "page.completed",
        "request_id": page.context.request_id,
        "http_status": status.as_u16(),
        "data": result,
    });
    serde_json::to_vec(&body).expect("JSON serialises")
}

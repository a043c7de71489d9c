//! Replies: the gateway owns some partitions of `page.completed` (given to
//! it by the consumer group all gateways share), names one of them as the
//! return address of each request, and hands each completed page to the
//! HTTP request waiting for it. No gateway reads every reply.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, RwLock,
    },
};

use rdkafka::{
    consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    statistics::Statistics,
    ClientContext,
};
use storefront_runtime::{
    metrics::Metrics, processor, trace, DeadLetters, KafkaSettings, Readiness, Telemetry,
};
use storefront_schemas::PageCompleted;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

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
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assigned) = rebalance {
            tracing::info!(
                assigned = assigned.count(),
                "reply partitions assigned; waiting for their fetch positions"
            );
        }
    }
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

/// HTTP requests waiting for their page, by request id.
#[derive(Clone, Default)]
pub struct Waiting {
    senders: Arc<Mutex<HashMap<String, oneshot::Sender<PageCompleted>>>>,
}

impl Waiting {
    /// Registers a request before it is sent, so no reply can be missed.
    pub fn register(&self, request_id: &str) -> oneshot::Receiver<PageCompleted> {
        let (tx, rx) = oneshot::channel();
        self.senders
            .lock()
            .expect("waiting lock")
            .insert(request_id.to_owned(), tx);
        rx
    }

    /// Forgets a request that gave up waiting.
    pub fn forget(&self, request_id: &str) {
        self.senders
            .lock()
            .expect("waiting lock")
            .remove(request_id);
    }

    pub fn len(&self) -> usize {
        self.senders.lock().expect("waiting lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn deliver(&self, page: PageCompleted) {
        let sender = self
            .senders
            .lock()
            .expect("waiting lock")
            .remove(&page.context.request_id);
        match sender {
            Some(sender) => {
                let _ = sender.send(page);
            }
            None => {
                tracing::debug!(request_id = %page.context.request_id, "reply for no waiting request (late, or already answered)")
            }
        }
    }
}

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

/// Delivers replies to waiting requests until `shutdown`, each under a
/// `process` span that continues the aggregator's trace.
pub async fn deliver_replies(
    consumer: StreamConsumer<ReplyContext>,
    waiting: Waiting,
    dead_letters: DeadLetters,
    shutdown: CancellationToken,
) -> storefront_runtime::Result<()> {
    let consumer = Arc::new(consumer);
    let telemetry: Telemetry = dead_letters.telemetry().clone();
    while let Some(mut record) = storefront_runtime::next_record(&consumer, &shutdown).await {
        record.trace = telemetry.process_span(&record, storefront_schemas::now_ms());
        let outcome = match record.decode::<PageCompleted>() {
            Ok(page) => {
                waiting.deliver(page);
                None
            }
            Err(error) => {
                let reason = error.to_string();
                let dead_lettered = dead_letters
                    .send(&record, &reason)
                    .instrument(processor::log_span(&record))
                    .await;
                if let Err(error) = dead_lettered {
                    tracing::error!(%error, "could not dead-letter a reply");
                }
                Some(reason)
            }
        };
        trace::end(&record.trace, outcome.as_deref());
    }
    processor::commit_and_close(consumer).await;
    Ok(())
}

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
    consumer::{BaseConsumer, CommitMode, Consumer},
    statistics::Statistics,
    Offset, TopicPartitionList,
};
use storefront_runtime::{
    consume::{Commits, Driver, GroupContext, GroupListener, GroupOptions, StartAt},
    HandlerError, Inbound, KafkaSettings, Outbound, Readiness, RecordHandler, Telemetry,
};
use storefront_schemas::{PageCompleted, RequestId};
use tokio::sync::oneshot;

use crate::{expiring::ExpiringMap, progress::Progress};

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
struct ReplyPartitions {
    owned: OwnedPartitions,
    topic: String,
    readiness: Readiness,
}

impl GroupListener for ReplyPartitions {
    fn assigned(&self, consumer: &BaseConsumer<GroupContext>, assigned: &TopicPartitionList) {
        tracing::info!(
            assigned = assigned.count(),
            "reply partitions assigned; waiting for their fetch positions"
        );
        if let Err(error) = commit_start_positions(consumer, assigned) {
            tracing::warn!(%error, "could not commit the start of new reply partitions");
        }
    }

    fn statistics(&self, statistics: &Statistics) {
        self.on_statistics(statistics);
    }
}

/// Commits the end of each assigned partition that has no committed offset
/// yet, so that the partition's next owner (if this gateway dies) starts
/// from there, not from `latest` at its own assignment: a reply written in
/// between, and its callback, would be skipped.
pub(crate) fn commit_start_positions(
    consumer: &BaseConsumer<GroupContext>,
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

impl ReplyPartitions {
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
    senders: Arc<Mutex<HashMap<RequestId, Vec<oneshot::Sender<PageCompleted>>>>>,
}

impl Waiting {
    /// Registers a request before it is sent, so no reply can be missed.
    pub fn register(&self, request_id: RequestId) -> oneshot::Receiver<PageCompleted> {
        let (tx, rx) = oneshot::channel();
        self.senders
            .lock()
            .expect("waiting lock")
            .entry(request_id)
            .or_default()
            .push(tx);
        rx
    }

    /// Forgets the waiters of a request that gave up waiting.
    pub fn forget(&self, request_id: RequestId) {
        let mut senders = self.senders.lock().expect("waiting lock");
        if let Some(waiters) = senders.get_mut(&request_id) {
            waiters.retain(|w| !w.is_closed());
            if waiters.is_empty() {
                senders.remove(&request_id);
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
pub type Results = Arc<ExpiringMap<RequestId, Progress>>;

/// Replies in progress at once; past this the driver pauses its partitions.
const MAX_IN_FLIGHT: usize = 256;

/// Joins the group of gateways on the reply topic; partitions arrive with
/// the first rebalance, and a reply is only useful to the request waiting
/// now, so a partition new to the group is read from its end.
pub fn reply_driver(
    settings: &KafkaSettings,
    telemetry: &Telemetry,
    owned: OwnedPartitions,
    readiness: Readiness,
) -> storefront_runtime::Result<Driver> {
    let topic = settings.topics().page_completed;
    let options = GroupOptions {
        group: "gateway-replies".to_owned(),
        start: StartAt::Latest,
        commits: Commits::Stored,
        // Fetch states, read to know when a partition may be named.
        statistics_interval_ms: 100,
        ..GroupOptions::at_least_once("gateway-replies")
    };
    let partitions = ReplyPartitions {
        owned,
        topic: topic.clone(),
        readiness: readiness.clone(),
    };
    Driver::new(
        settings,
        telemetry,
        &options,
        &[&topic],
        MAX_IN_FLIGHT,
        readiness,
        Some(Arc::new(partitions)),
    )
}

/// What becomes of each reply: handed to the requests waiting for it, and
/// kept in `results` if nobody waits or a callback is to come (status
/// lookups find it). Callbacks are delivered by the callbacks group
/// (`callbacks.rs`): no reply waits for one.
#[derive(Clone)]
pub struct ReplyHandling {
    pub waiting: Waiting,
    pub results: Results,
}

impl RecordHandler for ReplyHandling {
    async fn handle(&self, record: Inbound) -> Result<Vec<Outbound>, HandlerError> {
        let page = record
            .decode::<PageCompleted>()
            .map_err(|error| HandlerError::Invalid(error.to_string()))?;
        let answered = self.waiting.deliver(&page);
        if page.callback_url.is_some() || !answered {
            let request_id = page.context.request_id;
            self.results.insert(
                request_id,
                Progress::from_page(page, None),
                storefront_schemas::now_ms(),
            );
        }
        Ok(Vec::new())
    }
}

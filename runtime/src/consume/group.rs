//! Group consumers, built in one place: the settings every consumer of the
//! request path shares, and the context that marks readiness, reports lag
//! and tells listeners of partitions changing hands.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, Mutex,
};

use rdkafka::{
    consumer::{BaseConsumer, ConsumerContext, Rebalance, StreamConsumer},
    statistics::Statistics,
    ClientContext, TopicPartitionList,
};

use crate::{error::KafkaContext, metrics::Metrics, KafkaSettings, Readiness, Result, Telemetry};

/// The readiness condition a group consumer meets once it owns partitions
/// and knows where to fetch each of them from (librdkafka's fetch state is
/// `active`): from then on a record written to them is taken at once, not
/// after the committed offsets or the log's end were looked up.
pub const PARTITIONS_ASSIGNED: &str = "partitions assigned";

/// How long a group waits for a member that stopped heartbeating (killed,
/// frozen) before giving its partitions to the others: also how long a
/// restarted member waits for its old self's partitions. librdkafka's
/// default is 45 s.
pub const SESSION_TIMEOUT_MS: &str = "10000";
/// A heartbeat a second: a member whose coordinator moved (its node
/// crashed, froze, was cut off) reaches the new one before its session
/// ends, instead of rejoining under a new member id and waiting a whole
/// session for its old self to expire.
pub const HEARTBEAT_INTERVAL_MS: &str = "1000";

/// Records librdkafka prefetches per consumer, at most (librdkafka: 64 MiB).
pub const QUEUED_MAX_KBYTES: &str = "8192";

/// Where a group starts reading a partition it has no committed offset for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// Every record still kept: nothing written before the group existed is skipped.
    Earliest,
    /// Only what is written from now on (replies to requests waiting now).
    Latest,
}

/// Who commits the group's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commits {
    /// The consumer, every second, up to the offsets stored once handled.
    Stored,
    /// A transactional producer, with the output they caused; the consumer
    /// reads only committed records and commits nothing itself.
    InTransactions,
}

/// What differs between the group consumers of the storefront.
#[derive(Debug, Clone)]
pub struct GroupOptions {
    /// The group's name, without the namespace prefix.
    pub group: String,
    pub start: StartAt,
    pub commits: Commits,
    /// How often librdkafka reports statistics (lag, fetch states).
    pub statistics_interval_ms: u32,
    /// A static member's name (`group.instance.id`): unique in the group,
    /// kept across restarts.
    pub instance_id: Option<String>,
    /// librdkafka's `max.poll.interval.ms` (300 s by default): a member that
    /// stops polling that long leaves the group. The drivers poll while
    /// their handlers are busy (they pause instead), so only a wedged
    /// driver meets it.
    pub max_poll_interval_ms: Option<u32>,
}

impl GroupOptions {
    /// At-least-once from the earliest record, offsets stored once handled.
    pub fn at_least_once(group: &str) -> Self {
        Self {
            group: group.to_owned(),
            start: StartAt::Earliest,
            commits: Commits::Stored,
            statistics_interval_ms: crate::metrics::STATISTICS_INTERVAL_MS
                .parse()
                .expect("a number"),
            instance_id: None,
            max_poll_interval_ms: None,
        }
    }
}

/// Told of partitions changing hands, from the consumer's own thread: a
/// rebalance does not go on until these return. Also given librdkafka's
/// statistics.
pub trait GroupListener: Send + Sync + 'static {
    /// Before `partitions` are taken away (handed over, or lost with the
    /// membership): the last moment this member may write or commit for them.
    fn revoking(&self, _consumer: &BaseConsumer<GroupContext>, _partitions: &TopicPartitionList) {}
    /// After `partitions` were given to this member.
    fn assigned(&self, _consumer: &BaseConsumer<GroupContext>, _partitions: &TopicPartitionList) {}
    /// librdkafka's statistics, every `statistics_interval_ms`.
    fn statistics(&self, _statistics: &Statistics) {}
}

/// Marks [`PARTITIONS_ASSIGNED`] once an assignment's partitions are all
/// fetching, reports consumer lag, and tells its listeners, in order.
pub struct GroupContext {
    readiness: Readiness,
    service: &'static str,
    metrics: Metrics,
    assignments: AtomicU64,
    listeners: Vec<Arc<dyn GroupListener>>,
    /// The latest assignment's partitions, until all of them are fetching.
    awaiting_positions: Mutex<Option<Vec<(String, i32)>>>,
    /// Every partition of an assignment was fetching once: ready.
    positions_known: std::sync::atomic::AtomicBool,
}

impl GroupContext {
    /// How many times partitions were assigned: a consumer that keeps state
    /// per partition reloads it when this changes.
    pub fn assignment_generation(&self) -> u64 {
        self.assignments.load(Ordering::SeqCst)
    }
}

impl GroupContext {
    /// Ready once every partition awaited is fetching (its position known).
    fn check_positions(&self, statistics: &Statistics) {
        let mut awaiting = self
            .awaiting_positions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let Some(partitions) = awaiting.as_ref() else {
            return;
        };
        let fetching = |(topic, partition): &(String, i32)| {
            statistics
                .topics
                .get(topic)
                .and_then(|t| t.partitions.get(partition))
                .is_some_and(|p| p.fetch_state == "active")
        };
        if partitions.iter().all(fetching) {
            tracing::info!(
                service = self.service,
                partitions = partitions.len(),
                "every assigned partition is fetching"
            );
            *awaiting = None;
            self.positions_known.store(true, Ordering::SeqCst);
            self.readiness.done(PARTITIONS_ASSIGNED);
        }
    }
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: Statistics) {
        self.check_positions(&statistics);
        self.metrics.record_consumer_lag(&statistics);
        for listener in &self.listeners {
            listener.statistics(&statistics);
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            for listener in &self.listeners {
                listener.revoking(consumer, partitions);
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                for listener in &self.listeners {
                    listener.assigned(consumer, partitions);
                }
                tracing::info!(
                    service = self.service,
                    assigned = partitions.count(),
                    "partitions assigned"
                );
                self.assignments.fetch_add(1, Ordering::SeqCst);
                // Until ready, the latest assignment is the one awaited (an
                // earlier one may have been taken back before it fetched).
                if !self.positions_known.load(Ordering::SeqCst) {
                    let partitions = partitions_of(partitions);
                    let mut awaiting = self
                        .awaiting_positions
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    if partitions.is_empty() {
                        *awaiting = None;
                        self.positions_known.store(true, Ordering::SeqCst);
                        self.readiness.done(PARTITIONS_ASSIGNED);
                    } else {
                        *awaiting = Some(partitions);
                    }
                }
            }
            Rebalance::Revoke(partitions) => {
                tracing::info!(
                    service = self.service,
                    revoked = partitions.count(),
                    "partitions revoked"
                );
            }
            Rebalance::Error(error) => {
                tracing::warn!(service = self.service, %error, "rebalance failed")
            }
        }
    }
}

/// Builds a group consumer named and measured for `telemetry`'s service,
/// subscribed to `topics`, telling `listeners` of rebalances.
pub(super) fn group_consumer(
    settings: &KafkaSettings,
    telemetry: &Telemetry,
    options: &GroupOptions,
    topics: &[&str],
    readiness: Readiness,
    listeners: Vec<Arc<dyn GroupListener>>,
) -> Result<StreamConsumer<GroupContext>> {
    use rdkafka::consumer::Consumer;
    let service = telemetry.service();
    let auto_commit = match options.commits {
        Commits::Stored => "true",
        Commits::InTransactions => "false",
    };
    let start = match options.start {
        StartAt::Earliest => "earliest",
        StartAt::Latest => "latest",
    };
    let mut config = settings.consumer_config(service);
    if let Some(instance) = &options.instance_id {
        config.set("group.instance.id", instance);
    }
    if let Some(interval) = options.max_poll_interval_ms {
        config.set("max.poll.interval.ms", interval.to_string());
    }
    let consumer: StreamConsumer<GroupContext> = config
        .set("group.id", settings.group(&options.group))
        .set("enable.auto.commit", auto_commit)
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", start)
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", settings.fetch_wait_ms.to_string())
        .set("session.timeout.ms", SESSION_TIMEOUT_MS)
        .set("heartbeat.interval.ms", HEARTBEAT_INTERVAL_MS)
        // Backpressure: the driver pauses its partitions at its bound, and
        // librdkafka stops fetching once this much is queued.
        .set("queued.max.messages.kbytes", QUEUED_MAX_KBYTES)
        .set(
            "statistics.interval.ms",
            options.statistics_interval_ms.to_string(),
        )
        .create_with_context(GroupContext {
            readiness,
            service,
            metrics: telemetry.metrics().clone(),
            assignments: AtomicU64::new(0),
            listeners,
            awaiting_positions: Mutex::default(),
            positions_known: Default::default(),
        })
        .context("create a group consumer")?;
    consumer.subscribe(topics).context("subscribe")?;
    Ok(consumer)
}

/// The (topic, partition) pairs of a list.
pub(crate) fn partitions_of(list: &TopicPartitionList) -> Vec<(String, i32)> {
    list.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

/// Backpressure without silence: a driver at its bound pauses the
/// partitions it owns (librdkafka stops fetching them and drops what it
/// prefetched; resuming fetches again from the next record not yet taken)
/// and goes on polling, so heartbeats, rebalances and revokes go on and
/// `max.poll.interval.ms` is never reached while handlers are busy.
#[derive(Debug, Default)]
pub(crate) struct Pause {
    paused: bool,
}

impl Pause {
    /// Pauses every partition assigned now. Called again when a record
    /// arrives while paused: it was fetched before the pause, or its
    /// partition was assigned since (a new assignment starts unpaused).
    pub(crate) fn pause<C: rdkafka::consumer::ConsumerContext>(
        &mut self,
        consumer: &impl rdkafka::consumer::Consumer<C>,
    ) {
        match consumer.assignment().and_then(|a| consumer.pause(&a)) {
            Ok(()) => {
                if !self.paused {
                    tracing::debug!("at the bound of records in flight: partitions paused");
                }
                self.paused = true;
            }
            Err(error) => tracing::warn!(%error, "could not pause the partitions"),
        }
    }

    /// Resumes what was paused, once there is room again.
    pub(crate) fn resume<C: rdkafka::consumer::ConsumerContext>(
        &mut self,
        consumer: &impl rdkafka::consumer::Consumer<C>,
    ) {
        if !self.paused {
            return;
        }
        match consumer.assignment().and_then(|a| consumer.resume(&a)) {
            Ok(()) => {
                tracing::debug!("room for records again: partitions resumed");
                self.paused = false;
            }
            Err(error) => tracing::warn!(%error, "could not resume the partitions"),
        }
    }
}

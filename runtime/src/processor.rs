//! The at-least-once consumer loop of the stateless services: take a record,
//! handle it, produce what it caused, and store its offset only once that
//! output is acknowledged. Bad records go to the dead-letter topic.

use std::{future::Future, sync::Arc, time::Duration};

use rdkafka::{
    consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    ClientContext, TopicPartitionList,
};
use storefront_schemas::now_ms;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    dead_letter::DeadLetters, error::KafkaContext, metrics::Metrics, offsets::OffsetTracker, trace,
    EventProducer, Inbound, KafkaSettings, Outbound, Readiness, Result,
};

/// Why a record could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The record itself is bad: it is dead-lettered and the loop goes on.
    #[error("invalid record: {0}")]
    Invalid(String),
    /// Something it depends on failed: it is retried with backoff.
    #[error("transient failure: {0}")]
    Transient(String),
}

/// What a service does with one input record.
pub trait RecordHandler: Send + Sync + 'static {
    /// The records to produce because of `record` (possibly none).
    fn handle(
        &self,
        record: Inbound,
    ) -> impl Future<Output = Result<Vec<Outbound>, HandlerError>> + Send;
}

/// Marks the readiness condition `partitions assigned` at the first
/// assignment, reports consumer lag, and tells a [`RebalanceListener`].
pub struct GroupContext {
    readiness: Readiness,
    service: &'static str,
    metrics: Metrics,
    assignments: std::sync::atomic::AtomicU64,
    listener: Option<Arc<dyn RebalanceListener>>,
}

/// Told of partitions changing hands, from the consumer's own thread:
/// a rebalance does not go on until these return.
pub trait RebalanceListener: Send + Sync + 'static {
    /// Before `partitions` are taken away (handed over, or lost with the
    /// membership): the last moment this member may write for them.
    fn revoking(&self, partitions: &TopicPartitionList);
    /// After `partitions` were given to this member.
    fn assigned(&self, partitions: &TopicPartitionList);
}

impl GroupContext {
    /// How many times partitions were assigned: a consumer that keeps state
    /// per partition reloads it when this changes.
    pub fn assignment_generation(&self) -> u64 {
        self.assignments.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.metrics.record_consumer_lag(&statistics);
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let (Rebalance::Revoke(partitions), Some(listener)) = (rebalance, &self.listener) {
            listener.revoking(partitions);
        }
    }

    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                if let Some(listener) = &self.listener {
                    listener.assigned(partitions);
                }
                tracing::info!(
                    service = self.service,
                    assigned = partitions.count(),
                    "partitions assigned"
                );
                self.assignments
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                self.readiness.done(PARTITIONS_ASSIGNED);
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

/// The readiness condition a [`Processor`] meets once it owns partitions.
pub const PARTITIONS_ASSIGNED: &str = "partitions assigned";

/// How long a group waits for a member that stopped heartbeating (killed,
/// frozen) before giving its partitions to the others: also how long a
/// restarted member waits for its old self's partitions. librdkafka's
/// default is 45 s.
pub const SESSION_TIMEOUT_MS: &str = "10000";
pub const HEARTBEAT_INTERVAL_MS: &str = "3000";

/// Records librdkafka prefetches per consumer, at most (librdkafka: 64 MiB).
pub const QUEUED_MAX_KBYTES: &str = "8192";

/// Builds a group consumer with at-least-once settings, named and measured
/// for `telemetry`'s service: offsets are stored once handled and committed
/// every second.
pub fn group_consumer(
    settings: &KafkaSettings,
    telemetry: &crate::Telemetry,
    group: &str,
    readiness: Readiness,
) -> Result<StreamConsumer<GroupContext>> {
    build_group_consumer(settings, telemetry, group, readiness, None)
}

/// Builds a group consumer whose offsets are committed only inside the
/// transactions of a transactional producer (never by the consumer), reading
/// only committed records, and telling `listener` of rebalances.
pub fn transactional_group_consumer(
    settings: &KafkaSettings,
    telemetry: &crate::Telemetry,
    group: &str,
    readiness: Readiness,
    listener: Arc<dyn RebalanceListener>,
) -> Result<StreamConsumer<GroupContext>> {
    build_group_consumer(settings, telemetry, group, readiness, Some(listener))
}

fn build_group_consumer(
    settings: &KafkaSettings,
    telemetry: &crate::Telemetry,
    group: &str,
    readiness: Readiness,
    listener: Option<Arc<dyn RebalanceListener>>,
) -> Result<StreamConsumer<GroupContext>> {
    let service = telemetry.service();
    let auto_commit = if listener.is_some() { "false" } else { "true" };
    settings
        .client_config(service)
        .set("group.id", group)
        .set("enable.auto.commit", auto_commit)
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", settings.fetch_wait_ms.to_string())
        .set("session.timeout.ms", SESSION_TIMEOUT_MS)
        .set("heartbeat.interval.ms", HEARTBEAT_INTERVAL_MS)
        // Backpressure: the loop stops taking records at `max_in_flight`,
        // and librdkafka stops fetching once this much is queued.
        .set("queued.max.messages.kbytes", QUEUED_MAX_KBYTES)
        .set(
            "statistics.interval.ms",
            crate::metrics::STATISTICS_INTERVAL_MS,
        )
        .create_with_context(GroupContext {
            readiness,
            service,
            metrics: telemetry.metrics().clone(),
            assignments: Default::default(),
            listener,
        })
        .context("create a group consumer")
}

/// One service's consumer loop over its input topics.
pub struct Processor {
    pub service: &'static str,
    pub topics: Vec<String>,
    /// Records handled concurrently.
    pub max_in_flight: usize,
}

impl Processor {
    /// Runs until `shutdown`, then lets in-flight records finish (up to a
    /// deadline), commits, and returns.
    pub async fn run<H: RecordHandler>(
        self,
        settings: &KafkaSettings,
        producer: EventProducer,
        handler: Arc<H>,
        readiness: Readiness,
        shutdown: CancellationToken,
    ) -> Result<()> {
        let consumer = Arc::new(group_consumer(
            settings,
            producer.telemetry(),
            &settings.group(self.service),
            readiness,
        )?);
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).context("subscribe")?;
        let dead_letters = DeadLetters::new(producer.clone(), settings.topics().dead_letters);
        let mut tracker = OffsetTracker::default();
        let mut tasks: JoinSet<(Inbound, bool)> = JoinSet::new();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    let (record, finished) = done.expect("record tasks do not panic");
                    if finished {
                        tracker.finish_and_store(&consumer, &record.topic, record.partition, record.offset);
                    }
                }
                message = consumer.recv(), if tasks.len() < self.max_in_flight => match message {
                    Ok(message) => {
                        let record = Inbound::from_message(&message);
                        tracker.begin(&record.topic, record.partition, record.offset);
                        tasks.spawn(handle_record(
                            record,
                            handler.clone(),
                            producer.clone(),
                            dead_letters.clone(),
                            shutdown.clone(),
                        ));
                    }
                    Err(error) => {
                        tracing::warn!(service = self.service, %error, "consumer error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        let drain = async {
            while let Some(done) = tasks.join_next().await {
                if let Ok((record, true)) = done {
                    tracker.finish_and_store(
                        &consumer,
                        &record.topic,
                        record.partition,
                        record.offset,
                    );
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), drain)
            .await
            .is_err()
        {
            tracing::warn!(
                service = self.service,
                in_flight = tracker.in_flight(),
                "records still in flight at shutdown; they will be redelivered"
            );
        }
        commit_and_close(consumer).await;
        Ok(())
    }
}

/// Commits stored offsets and leaves the group, off the async threads.
pub async fn commit_and_close<C: ConsumerContext + 'static>(consumer: Arc<StreamConsumer<C>>) {
    let committed = tokio::task::spawn_blocking(move || {
        let result = consumer.commit_consumer_state(CommitMode::Sync);
        drop(consumer);
        result
    })
    .await;
    match committed {
        Ok(Ok(()))
        | Ok(Err(rdkafka::error::KafkaError::ConsumerCommit(
            rdkafka::types::RDKafkaErrorCode::NoOffset,
        ))) => {}
        Ok(Err(error)) => tracing::warn!(%error, "final commit failed"),
        Err(error) => tracing::warn!(%error, "final commit task failed"),
    }
}

/// A span for the logs written while `record` is handled: they carry its
/// request id, session id and trace id.
pub fn log_span(record: &Inbound) -> tracing::Span {
    tracing::info_span!(
        "record",
        request_id = record.headers.request_id.as_deref().unwrap_or_default(),
        session_id = record.key_str().unwrap_or_default(),
        trace_id = %trace::trace_id(&record.trace),
        topic = %record.topic,
        partition = record.partition,
        offset = record.offset,
    )
}

/// Handles one record under its `process` span, retrying transient
/// failures; `false` if it was given up at shutdown.
async fn handle_record<H: RecordHandler>(
    mut record: Inbound,
    handler: Arc<H>,
    producer: EventProducer,
    dead_letters: DeadLetters,
    shutdown: CancellationToken,
) -> (Inbound, bool) {
    let telemetry = producer.telemetry().clone();
    let picked_up_at = now_ms();
    record.trace = telemetry.process_span(&record, picked_up_at);
    let metrics = telemetry.metrics();
    metrics.records_in_flight.inc();
    let span = log_span(&record);
    let (finished, error) = retry_until_handled(
        &record,
        picked_up_at,
        &*handler,
        &producer,
        &dead_letters,
        &shutdown,
    )
    .instrument(span)
    .await;
    metrics.records_in_flight.dec();
    trace::end(&record.trace, error.as_deref());
    (record, finished)
}

/// The handling loop: `(finished, why it failed if it did)`.
async fn retry_until_handled<H: RecordHandler>(
    record: &Inbound,
    picked_up_at: i64,
    handler: &H,
    producer: &EventProducer,
    dead_letters: &DeadLetters,
    shutdown: &CancellationToken,
) -> (bool, Option<String>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let failure = match handler.handle(record.clone()).await {
            Ok(mut outputs) => {
                for output in &mut outputs {
                    output.headers.picked_up_at_ms = Some(picked_up_at);
                }
                match producer.send_all(&outputs).await {
                    Ok(()) => return (true, None),
                    Err(error) => error.to_string(),
                }
            }
            Err(HandlerError::Invalid(reason)) => match dead_letters.send(record, &reason).await {
                Ok(()) => return (true, Some(reason)),
                Err(error) => error.to_string(),
            },
            Err(HandlerError::Transient(reason)) => reason,
        };
        producer
            .telemetry()
            .metrics()
            .retries
            .with_label_values(&[&record.topic])
            .inc();
        tracing::warn!(%failure, ?backoff, "retrying a record");
        tokio::select! {
            _ = shutdown.cancelled() => return (false, Some(failure)),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

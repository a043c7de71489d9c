//! The at-least-once consumer loop of the stateless services: take a record,
//! handle it, produce what it caused, and store its offset only once that
//! output is acknowledged. Bad records go to the dead-letter topic.

use std::{future::Future, sync::Arc, time::Duration};

use rdkafka::{
    consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    ClientContext,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{
    dead_letter::DeadLetters, error::KafkaContext, offsets::OffsetTracker, EventProducer, Inbound,
    KafkaSettings, Outbound, Readiness, Result,
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

/// Marks the readiness condition `partitions assigned` at the first assignment.
pub struct GroupContext {
    readiness: Readiness,
    service: &'static str,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                tracing::info!(
                    service = self.service,
                    assigned = partitions.count(),
                    "partitions assigned"
                );
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

/// Builds a group consumer with at-least-once settings.
pub fn group_consumer(
    settings: &KafkaSettings,
    service: &'static str,
    group: &str,
    readiness: Readiness,
) -> Result<StreamConsumer<GroupContext>> {
    settings
        .client_config(service)
        .set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", settings.fetch_wait_ms.to_string())
        .create_with_context(GroupContext { readiness, service })
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
            self.service,
            &settings.group(self.service),
            readiness,
        )?);
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).context("subscribe")?;
        let dead_letters = DeadLetters::new(
            producer.clone(),
            settings.topics().dead_letters,
            self.service,
        );
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

async fn handle_record<H: RecordHandler>(
    record: Inbound,
    handler: Arc<H>,
    producer: EventProducer,
    dead_letters: DeadLetters,
    shutdown: CancellationToken,
) -> (Inbound, bool) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let failure = match handler.handle(record.clone()).await {
            Ok(outputs) => match producer.send_all(&outputs).await {
                Ok(()) => return (record, true),
                Err(error) => error.to_string(),
            },
            Err(HandlerError::Invalid(reason)) => match dead_letters.send(&record, &reason).await {
                Ok(()) => return (record, true),
                Err(error) => error.to_string(),
            },
            Err(HandlerError::Transient(reason)) => reason,
        };
        tracing::warn!(topic = %record.topic, offset = record.offset, %failure, ?backoff, "retrying a record");
        tokio::select! {
            _ = shutdown.cancelled() => return (record, false),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

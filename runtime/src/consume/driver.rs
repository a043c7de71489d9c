//! The consume driver: takes records off a group consumer, runs each key's
//! records in order on its own task while different keys run at once (up
//! to a bound), produces what a record caused, dead-letters what is bad,
//! stores an offset only once everything before it is done, and drains on
//! revoke and on shutdown. A service supplies a [`RecordHandler`] and
//! writes no loop.

use std::{
    future::Future,
    sync::{Arc, Condvar, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use rdkafka::{
    consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer},
    TopicPartitionList,
};
use storefront_schemas::now_ms;
use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

use super::{
    group::{self, partitions_of, Commits, GroupContext, GroupListener, GroupOptions, Pause},
    keyed::{Keyed, Outcome, Taken},
};
use crate::{
    retry::{retry, Failure, GaveUp, Policy, Until},
    trace, DeadLetters, EventProducer, Inbound, KafkaSettings, Outbound, Readiness, Result,
};

/// Why a record could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The record itself is bad: it is dead-lettered and the driver goes on.
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

/// How long a revoke or a shutdown waits for the records being handled.
pub(super) const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// One consumer group member driving a [`RecordHandler`].
pub struct Driver {
    service: &'static str,
    consumer: Arc<StreamConsumer<GroupContext>>,
    schedule: Arc<Schedule>,
    max_in_flight: usize,
}

impl Driver {
    /// Joins the group `options` names on `topics`; at most
    /// `max_in_flight` records are taken and not yet done at once.
    /// `listener`, if any, is told of rebalances after the driver drained.
    pub fn new(
        settings: &KafkaSettings,
        telemetry: &crate::Telemetry,
        options: &GroupOptions,
        topics: &[&str],
        max_in_flight: usize,
        readiness: Readiness,
        listener: Option<Arc<dyn GroupListener>>,
    ) -> Result<Self> {
        let schedule = Arc::new(Schedule {
            keyed: Mutex::default(),
            changed: Condvar::new(),
            commits: options.commits,
        });
        let mut listeners: Vec<Arc<dyn GroupListener>> = vec![schedule.clone()];
        listeners.extend(listener);
        let consumer =
            group::group_consumer(settings, telemetry, options, topics, readiness, listeners)?;
        Ok(Self {
            service: telemetry.service(),
            consumer: Arc::new(consumer),
            schedule,
            max_in_flight: max_in_flight.max(1),
        })
    }

    /// Runs until `shutdown`: then starts nothing new, lets the records
    /// being handled finish (up to a deadline), commits, and leaves the group.
    pub async fn run<H: RecordHandler>(
        self,
        handler: Arc<H>,
        producer: EventProducer,
        dead_letters: DeadLetters,
        shutdown: CancellationToken,
    ) -> Result<()> {
        let slots = Arc::new(Semaphore::new(self.max_in_flight));
        let tasks = TaskTracker::new();
        let work = Arc::new(Work {
            handler,
            producer,
            dead_letters,
            schedule: self.schedule.clone(),
            consumer: self.consumer.clone(),
            shutdown: shutdown.clone(),
        });
        let mut pause = Pause::default();
        loop {
            // At the bound the driver pauses its partitions and goes on
            // polling, so the group keeps it as long as its handlers take.
            let slot = match slots.clone().try_acquire_owned() {
                Ok(slot) => Some(slot),
                Err(_) => {
                    pause.pause(self.consumer.as_ref());
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => break,
                        slot = slots.clone().acquire_owned() => {
                            Some(slot.expect("the semaphore is never closed"))
                        }
                        record = crate::next_record(&self.consumer, &shutdown) => {
                            let Some(record) = record else { break };
                            // Fetched before the pause, or from a partition
                            // assigned since: taken over the bound, and the
                            // assignment paused again.
                            pause.pause(self.consumer.as_ref());
                            self.take(&tasks, &work, Taken { record, _slot: None });
                            continue;
                        }
                    }
                }
            };
            pause.resume(self.consumer.as_ref());
            let Some(record) = crate::next_record(&self.consumer, &shutdown).await else {
                break;
            };
            self.take(
                &tasks,
                &work,
                Taken {
                    record,
                    _slot: slot,
                },
            );
        }
        tasks.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                service = self.service,
                in_flight = self.schedule.lock().in_flight(),
                "records still in flight at shutdown; they will be redelivered"
            );
        }
        drop(work);
        commit_and_close(self.consumer).await;
        Ok(())
    }
}

impl Driver {
    /// Queues `taken` behind its key, or starts its key's task.
    fn take<H: RecordHandler>(&self, tasks: &TaskTracker, work: &Arc<Work<H>>, taken: Taken) {
        if let Some(first) = self.schedule.lock().take(taken) {
            tasks.spawn(work.clone().run_key(first));
        }
    }
}

/// What every key's task shares.
struct Work<H> {
    handler: Arc<H>,
    producer: EventProducer,
    dead_letters: DeadLetters,
    schedule: Arc<Schedule>,
    consumer: Arc<StreamConsumer<GroupContext>>,
    shutdown: CancellationToken,
}

impl<H: RecordHandler> Work<H> {
    /// Handles one key's records, one after another, until none is queued.
    async fn run_key(self: Arc<Self>, first: Taken) {
        let mut taken = first;
        loop {
            let outcome = self.handle(taken.record.clone()).await;
            let go_on = !self.shutdown.is_cancelled();
            let next = self
                .schedule
                .finish(&self.consumer, &taken.record, outcome, go_on);
            drop(taken);
            match next {
                Some(next) => taken = next,
                None => return,
            }
        }
    }

    /// Handles one record under its `process` span, retrying transient
    /// failures until shutdown.
    async fn handle(&self, mut record: Inbound) -> Outcome {
        let telemetry = self.producer.telemetry().clone();
        let picked_up_at = now_ms();
        record.trace = telemetry.process_span(&record, picked_up_at);
        let metrics = telemetry.metrics();
        metrics.records_in_flight.inc();
        let span = log_span(&record);
        let (outcome, error) = self
            .retry_until_handled(&record, picked_up_at)
            .instrument(span)
            .await;
        metrics.records_in_flight.dec();
        trace::end(&record.trace, error.as_deref());
        outcome
    }

    /// `(outcome, why it failed if it did)`. A permanent failure (a bad
    /// record, an output the broker refuses, a request whose deadline
    /// passed before its output could be written) dead-letters the record;
    /// a transient one is retried by the one retry policy until shutdown.
    async fn retry_until_handled(
        &self,
        record: &Inbound,
        picked_up_at: i64,
    ) -> (Outcome, Option<String>) {
        let until = Until::shutdown(&self.shutdown);
        let attempt = |_| async {
            let mut outputs = match self.handler.handle(record.clone()).await {
                Ok(outputs) => outputs,
                Err(HandlerError::Invalid(reason)) => return Err(Failure::Permanent(reason)),
                Err(HandlerError::Transient(reason)) => return Err(Failure::Transient(reason)),
            };
            for output in &mut outputs {
                output.headers.picked_up_at_ms = Some(picked_up_at);
            }
            let Err(error) = self.producer.send_all(&outputs).await else {
                return Ok(());
            };
            let deadline = outputs.iter().filter_map(|o| o.deadline_ms).min();
            if error.is_permanent() {
                Err(Failure::Permanent(error.to_string()))
            } else if deadline.is_some_and(|deadline| deadline <= now_ms()) {
                Err(Failure::Permanent(format!(
                    "the request's deadline passed before its output could be written: {error}"
                )))
            } else {
                Err(Failure::Transient(error.to_string()))
            }
        };
        let on_retry = |failure: &String, attempt: u32, wait: Duration| {
            self.producer
                .telemetry()
                .metrics()
                .retries
                .with_label_values(&[&record.topic])
                .inc();
            tracing::warn!(%failure, attempt, ?wait, "retrying a record");
        };
        let reason = match retry(Policy::RECORD, &until, attempt, on_retry).await {
            Ok(()) => return (Outcome::Handled, None),
            Err(GaveUp::Permanent(reason)) => reason,
            Err(GaveUp::Shutdown(reason) | GaveUp::Deadline(reason)) => {
                return (Outcome::GivenUp, Some(reason))
            }
        };
        let dead_letter = |_| async {
            self.dead_letters
                .send(record, &reason)
                .await
                .map_err(|error| Failure::Transient(error.to_string()))
        };
        let on_retry = |failure: &String, attempt: u32, wait: Duration| {
            tracing::warn!(%failure, attempt, ?wait, "retrying a dead letter");
        };
        match retry(Policy::RECORD, &until, dead_letter, on_retry).await {
            Ok(()) => (Outcome::Handled, Some(reason)),
            Err(_) => (Outcome::GivenUp, Some(reason)),
        }
    }
}

/// The records taken and not yet done, shared by the driver's loop, the
/// keys' tasks and the rebalance callback.
struct Schedule {
    keyed: Mutex<Keyed>,
    /// Told each time a record is done.
    changed: Condvar,
    commits: Commits,
}

impl Schedule {
    fn lock(&self) -> MutexGuard<'_, Keyed> {
        self.keyed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks `record` done, stores the offset now safe, and returns its
    /// key's next record.
    fn finish(
        &self,
        consumer: &StreamConsumer<GroupContext>,
        record: &Inbound,
        outcome: Outcome,
        go_on: bool,
    ) -> Option<Taken> {
        let mut keyed = self.lock();
        let (safe, next) = keyed.finish(record, outcome, go_on);
        if let Some(safe) = safe {
            if let Err(error) = consumer.store_offset(&record.topic, record.partition, safe) {
                tracing::debug!(%error, topic = %record.topic, partition = record.partition, "offset not stored (partition revoked?)");
            }
        }
        drop(keyed);
        self.changed.notify_all();
        next
    }
}

impl GroupListener for Schedule {
    /// Drains the revoked partitions: what is queued is handed back, what
    /// runs is waited for (up to a deadline), and the offsets of what was
    /// done are committed, so the next owner starts right after them.
    fn revoking(&self, consumer: &BaseConsumer<GroupContext>, partitions: &TopicPartitionList) {
        let revoked = partitions_of(partitions);
        let began = Instant::now();
        let mut keyed = self.lock();
        let handed_back = keyed.hand_back(&revoked);
        // The tasks run on the runtime's other threads while this one waits;
        // a single-threaded runtime cannot run them, so nothing is awaited there.
        let can_wait = tokio::runtime::Handle::try_current().is_ok_and(|runtime| {
            runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
        });
        if can_wait && keyed.running_in(&revoked) > 0 {
            keyed = tokio::task::block_in_place(|| {
                let mut keyed = keyed;
                while keyed.running_in(&revoked) > 0 {
                    let Some(left) = DRAIN_TIMEOUT.checked_sub(began.elapsed()) else {
                        break;
                    };
                    keyed = self
                        .changed
                        .wait_timeout(keyed, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                keyed
            });
        }
        let still_running = keyed.running_in(&revoked);
        keyed.forget(&revoked);
        drop(keyed);
        if self.commits == Commits::Stored {
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(())
                | Err(rdkafka::error::KafkaError::ConsumerCommit(
                    rdkafka::types::RDKafkaErrorCode::NoOffset,
                )) => {}
                Err(error) => tracing::warn!(%error, "commit at revoke failed"),
            }
        }
        tracing::info!(
            handed_back,
            still_running,
            waited_ms = began.elapsed().as_millis() as u64,
            "drained revoked partitions"
        );
    }
}

/// Commits stored offsets and leaves the group, off the async threads.
pub(super) async fn commit_and_close<C: rdkafka::consumer::ConsumerContext + 'static>(
    consumer: Arc<StreamConsumer<C>>,
) {
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
        request_id = record.headers.request_id.map(|id| id.to_string()).unwrap_or_default(),
        session_id = record.key_str().unwrap_or_default(),
        trace_id = %trace::trace_id(&record.trace),
        topic = %record.topic,
        partition = record.partition,
        offset = record.offset,
    )
}

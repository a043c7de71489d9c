//! The lanes driver, for work that waits on outside parties (callbacks to
//! receivers that may be slow or down): the handler names each record's
//! lane (a receiver host), a lane runs a bounded number of records at once
//! and keeps a bounded backlog, and past that backlog the handler decides
//! at once what becomes of a record (`overflow`), so one lane that stalls
//! never takes the capacity of the others. Records finish in any order; an
//! offset is stored once it and every earlier record of its partition are
//! done. At its bound of records taken the driver pauses its partitions
//! and goes on polling. A revoke stops the work of the revoked partitions
//! (their next owner starts again after the last committed offset), as
//! does shutdown for all of them.

use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    sync::{Arc, Mutex, MutexGuard},
};

use rdkafka::{
    consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer},
    TopicPartitionList,
};
use tokio::sync::Notify;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    driver::{commit_and_close, DRAIN_TIMEOUT},
    group::{self, partitions_of, GroupContext, GroupListener, GroupOptions, Pause},
};
use crate::{offsets::OffsetTracker, Inbound, KafkaSettings, Readiness, Result};

/// How a record's handling ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaneOutcome {
    /// Done for good: its offset may be committed.
    Done,
    /// Stopped before its end (shutdown, or its partition was revoked): it
    /// is read again by the partition's next owner.
    Stopped,
}

/// What a service does with records that wait on outside parties.
pub trait LaneHandler: Send + Sync + 'static {
    /// The lane `record` runs in, or `None` if there is nothing to do for it.
    fn lane(&self, record: &Inbound) -> Option<String>;
    /// Handles `record` to its end, or until `stop` is cancelled.
    fn handle(
        &self,
        record: Inbound,
        stop: CancellationToken,
    ) -> impl Future<Output = LaneOutcome> + Send;
    /// `record`'s lane already has a full backlog: what becomes of it now.
    fn overflow(
        &self,
        record: Inbound,
        lane: String,
        stop: CancellationToken,
    ) -> impl Future<Output = LaneOutcome> + Send;
}

/// The bounds of a lanes driver.
#[derive(Debug, Clone, Copy)]
pub struct LaneLimits {
    /// Records of one lane handled at once.
    pub per_lane: usize,
    /// Records of one lane waiting for a place; past this, `overflow`.
    pub backlog_per_lane: usize,
    /// Records taken and not yet done, over every lane: past this the
    /// driver pauses its partitions.
    pub max_taken: usize,
}

/// One consumer group member driving a [`LaneHandler`].
pub struct LaneDriver {
    consumer: Arc<StreamConsumer<GroupContext>>,
    state: Arc<LaneState>,
    limits: LaneLimits,
}

impl LaneDriver {
    /// Joins the group `options` names on `topics`; `listener`, if any, is
    /// told of rebalances after the driver stopped the revoked work.
    pub fn new(
        settings: &KafkaSettings,
        telemetry: &crate::Telemetry,
        options: &GroupOptions,
        topics: &[&str],
        limits: LaneLimits,
        readiness: Readiness,
        listener: Option<Arc<dyn GroupListener>>,
    ) -> Result<Self> {
        let state = Arc::new(LaneState {
            inner: Mutex::default(),
            room: Notify::new(),
        });
        let mut listeners: Vec<Arc<dyn GroupListener>> = vec![state.clone()];
        listeners.extend(listener);
        let consumer =
            group::group_consumer(settings, telemetry, options, topics, readiness, listeners)?;
        Ok(Self {
            consumer: Arc::new(consumer),
            state,
            limits,
        })
    }

    /// Runs until `shutdown`: then stops every record's work, waits for it
    /// (up to a deadline), commits what is done, and leaves the group.
    pub async fn run<H: LaneHandler>(self, handler: Arc<H>, shutdown: CancellationToken) {
        let tasks = TaskTracker::new();
        let work = Arc::new(LaneWork {
            handler,
            state: self.state.clone(),
            consumer: self.consumer.clone(),
            limits: self.limits,
            tasks: tasks.clone(),
            shutdown: shutdown.clone(),
        });
        let mut pause = Pause::default();
        loop {
            if self.state.lock().taken >= self.limits.max_taken {
                pause.pause(self.consumer.as_ref());
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break,
                    _ = self.state.room.notified() => continue,
                    record = crate::next_record(&self.consumer, &shutdown) => {
                        let Some(record) = record else { break };
                        pause.pause(self.consumer.as_ref());
                        work.take(record);
                        continue;
                    }
                }
            }
            pause.resume(self.consumer.as_ref());
            let Some(record) = crate::next_record(&self.consumer, &shutdown).await else {
                break;
            };
            work.take(record);
        }
        tasks.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                taken = self.state.lock().taken,
                "lanes still busy at shutdown; their records will be read again"
            );
        }
        drop(work);
        commit_and_close(self.consumer).await;
    }
}

/// One lane's records.
#[derive(Debug, Default)]
struct Lane {
    running: usize,
    waiting: VecDeque<Inbound>,
}

#[derive(Debug, Default)]
struct LaneInner {
    lanes: HashMap<String, Lane>,
    offsets: OffsetTracker,
    /// Cancelled when the partition is revoked; its records' work stops.
    partitions: HashMap<(String, i32), CancellationToken>,
    /// Records taken and not yet done (running, waiting or overflowing).
    taken: usize,
}

/// What the driver's loop, the lanes' tasks and the rebalance callback share.
struct LaneState {
    inner: Mutex<LaneInner>,
    /// Told each time a record is done.
    room: Notify,
}

impl LaneState {
    fn lock(&self) -> MutexGuard<'_, LaneInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl GroupListener for LaneState {
    /// Stops the revoked partitions' work: what waits is dropped, what runs
    /// is told to stop, and the offsets of what was done are committed.
    fn revoking(&self, consumer: &BaseConsumer<GroupContext>, partitions: &TopicPartitionList) {
        let revoked = partitions_of(partitions);
        let mut inner = self.lock();
        let mut dropped = 0;
        for lane in inner.lanes.values_mut() {
            let before = lane.waiting.len();
            lane.waiting
                .retain(|r| !revoked.contains(&(r.topic.clone(), r.partition)));
            dropped += before - lane.waiting.len();
        }
        inner.taken -= dropped;
        for partition in &revoked {
            if let Some(stop) = inner.partitions.remove(partition) {
                stop.cancel();
            }
        }
        inner.offsets.retain_partitions(|topic, partition| {
            !revoked.contains(&(topic.to_owned(), partition))
        });
        drop(inner);
        self.room.notify_one();
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(())
            | Err(rdkafka::error::KafkaError::ConsumerCommit(
                rdkafka::types::RDKafkaErrorCode::NoOffset,
            )) => {}
            Err(error) => tracing::warn!(%error, "commit at revoke failed"),
        }
        tracing::info!(dropped, "stopped the work of revoked partitions");
    }
}

/// What every lane's task shares.
struct LaneWork<H> {
    handler: Arc<H>,
    state: Arc<LaneState>,
    consumer: Arc<StreamConsumer<GroupContext>>,
    limits: LaneLimits,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

/// What to do with a record just taken.
enum Placed {
    Nothing,
    Run(String, CancellationToken),
    Waiting,
    Overflow(String, CancellationToken),
}

impl<H: LaneHandler> LaneWork<H> {
    /// Takes a record in: done at once, run in its lane, queued in its
    /// lane, or handed to `overflow`.
    fn take(self: &Arc<Self>, record: Inbound) {
        let lane = self.handler.lane(&record);
        let mut inner = self.state.lock();
        inner
            .offsets
            .begin(&record.topic, record.partition, record.offset);
        inner.taken += 1;
        let stop = inner
            .partitions
            .entry((record.topic.clone(), record.partition))
            .or_insert_with(|| self.shutdown.child_token())
            .clone();
        let placed = match lane {
            None => Placed::Nothing,
            Some(name) => {
                let lane = inner.lanes.entry(name.clone()).or_default();
                if lane.running < self.limits.per_lane {
                    lane.running += 1;
                    Placed::Run(name, stop)
                } else if lane.waiting.len() < self.limits.backlog_per_lane {
                    lane.waiting.push_back(record.clone());
                    Placed::Waiting
                } else {
                    Placed::Overflow(name, stop)
                }
            }
        };
        drop(inner);
        match placed {
            Placed::Nothing => self.finish(&record, LaneOutcome::Done, None),
            Placed::Waiting => {}
            Placed::Run(lane, stop) => {
                let work = self.clone();
                self.tasks
                    .spawn(async move { work.run_lane(lane, record, stop).await });
            }
            Placed::Overflow(lane, stop) => {
                let work = self.clone();
                self.tasks.spawn(async move {
                    let outcome = work
                        .handler
                        .overflow(record.clone(), lane, stop.clone())
                        .await;
                    work.finish(&record, outcome, Some(&stop));
                });
            }
        }
    }

    /// Runs `first`, then the next records waiting in its lane, until none waits.
    async fn run_lane(self: Arc<Self>, lane: String, first: Inbound, stop: CancellationToken) {
        let (mut record, mut stop) = (first, stop);
        loop {
            let outcome = self.handler.handle(record.clone(), stop.clone()).await;
            self.finish(&record, outcome, Some(&stop));
            let mut inner = self.state.lock();
            let next = inner
                .lanes
                .get_mut(&lane)
                .and_then(|l| l.waiting.pop_front());
            let Some(next) = next else {
                if let Some(state) = inner.lanes.get_mut(&lane) {
                    state.running -= 1;
                    if state.running == 0 && state.waiting.is_empty() {
                        inner.lanes.remove(&lane);
                    }
                }
                return;
            };
            stop = inner
                .partitions
                .entry((next.topic.clone(), next.partition))
                .or_insert_with(|| self.shutdown.child_token())
                .clone();
            record = next;
        }
    }

    /// A record's work ended: its offset is stored once safe, unless it was
    /// stopped or its partition revoked meanwhile.
    fn finish(&self, record: &Inbound, outcome: LaneOutcome, stop: Option<&CancellationToken>) {
        let mut inner = self.state.lock();
        let revoked =
            stop.is_some_and(CancellationToken::is_cancelled) && !self.shutdown.is_cancelled();
        // A waiting record of a revoked partition was counted out then; one
        // that ran is counted out here.
        inner.taken = inner.taken.saturating_sub(1);
        let safe = match outcome {
            LaneOutcome::Done if !revoked => {
                inner
                    .offsets
                    .finish(&record.topic, record.partition, record.offset)
            }
            _ => None,
        };
        drop(inner);
        if let Some(safe) = safe {
            if let Err(error) = self
                .consumer
                .store_offset(&record.topic, record.partition, safe)
            {
                tracing::debug!(%error, topic = %record.topic, partition = record.partition, "offset not stored (partition revoked?)");
            }
        }
        self.state.room.notify_one();
    }
}

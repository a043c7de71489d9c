//! Reading topics as they are now: chosen partitions (or every partition of
//! a topic) from a start point (the beginning, or a timestamp) up to the end
//! they had when the read began, or to a time bound. Blocking; call it off
//! the async threads. No group is joined, nothing is committed.

use std::{collections::HashMap, ops::ControlFlow, time::Duration};

use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    Offset, TopicPartitionList,
};

use crate::{error::KafkaContext, Error, Inbound, KafkaSettings, Result};

/// Where a snapshot read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    Beginning,
    /// The first record whose timestamp is at or after this (Unix ms).
    Timestamp(i64),
}

const TIMEOUT: Duration = Duration::from_secs(10);

/// One partition of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

/// Where a partition's records start and end, and where a read of it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub partition: TopicPartition,
    /// The first offset still on the broker (low watermark).
    pub low: i64,
    /// Where a read from the `since` asked for begins.
    pub start: i64,
    /// The offset the next record will get (high watermark).
    pub high: i64,
}

/// A consumer kept for repeated reads of chosen partitions (each read
/// replaces the assignment of the one before), so a service that looks
/// records up often pays for the client and its connection once.
pub struct PartitionReader {
    consumer: BaseConsumer<ReaderContext>,
}

/// How long the broker may hold a reader's fetch that found nothing (ms).
/// A read learns it reached the end of a partition whose last offset is a
/// transaction marker only from such an empty fetch, so with the usual
/// 500 ms every read of a transactional topic took half a second.
const READ_FETCH_WAIT_MS: &str = "10";

impl PartitionReader {
    /// A reader for reads up to the end ([`Self::read`]): it learns the end
    /// within milliseconds.
    pub fn new(settings: &KafkaSettings, client_id: &str) -> Result<Self> {
        Self::with(Self::config(settings, client_id).set("fetch.wait.max.ms", READ_FETCH_WAIT_MS))
    }

    /// A reader that follows partitions live ([`Self::follow`],
    /// [`Self::follow_from_end`]): its fetches wait at the broker for
    /// records, as a consumer's do.
    pub fn follower(settings: &KafkaSettings, client_id: &str) -> Result<Self> {
        Self::with(&Self::config(settings, client_id))
    }

    fn with(config: &rdkafka::ClientConfig) -> Result<Self> {
        let consumer = config
            .create_with_context(ReaderContext)
            .context("create a snapshot reader")?;
        Ok(Self { consumer })
    }

    fn config(settings: &KafkaSettings, client_id: &str) -> rdkafka::ClientConfig {
        let mut config = settings.consumer_config(client_id);
        config
            .set("group.id", format!("{client_id}-snapshot"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // The end of a partition is found by its end-of-partition event
            // and the reader's position: with transactions the last offsets
            // before the end can be commit markers, never delivered.
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed");
        config
    }

    /// Every partition of `topic`.
    pub fn partitions_of(&self, topic: &str) -> Result<Vec<TopicPartition>> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(topic), TIMEOUT)
            .context("read topic metadata")?;
        let count = metadata
            .topics()
            .first()
            .map_or(0, |t| t.partitions().len() as i32);
        Ok((0..count).map(|p| TopicPartition::new(topic, p)).collect())
    }

    /// Calls `on_record` with the records of `partitions` from `since` up to
    /// the end each had when the read began. A partition also stops at its
    /// first record stamped after `until_ms`, if given. Fails after `deadline`.
    pub fn read(
        &self,
        partitions: &[TopicPartition],
        since: Since,
        until_ms: Option<i64>,
        deadline: Duration,
        mut on_record: impl FnMut(Inbound),
    ) -> Result<()> {
        let mut assignment = TopicPartitionList::new();
        // (topic, partition) -> (first offset, end offset)
        let mut remaining = HashMap::new();
        for Position {
            partition: tp,
            start,
            high,
            ..
        } in self.positions(partitions, Some(since))?
        {
            if start < high {
                assignment
                    .add_partition_offset(&tp.topic, tp.partition, Offset::Offset(start))
                    .context("build an assignment")?;
                remaining.insert((tp.topic, tp.partition), (start, high));
            }
        }
        if remaining.is_empty() {
            return Ok(());
        }
        self.consumer
            .assign(&assignment)
            .context("assign partitions")?;
        let outcome = self.drain(&mut remaining, until_ms, deadline, &mut on_record);
        // Leave nothing fetching between reads.
        let _ = self.consumer.unassign();
        outcome
    }

    /// Follows `partitions` live from `since` (or from their end), calling
    /// `on_ready` once they are assigned, then `on_record` with every record,
    /// and with `None` after each tenth of a second without one (so the
    /// caller can decide to stop), until it breaks.
    pub fn follow(
        &self,
        partitions: &[TopicPartition],
        since: Option<Since>,
        on_ready: impl FnOnce(),
        mut on_record: impl FnMut(Option<Inbound>) -> ControlFlow<()>,
    ) -> Result<()> {
        let mut assignment = TopicPartitionList::new();
        for position in self.positions(partitions, since)? {
            let tp = &position.partition;
            assignment
                .add_partition_offset(&tp.topic, tp.partition, Offset::Offset(position.start))
                .context("build an assignment")?;
        }
        self.consumer
            .assign(&assignment)
            .context("assign partitions")?;
        on_ready();
        let outcome = loop {
            let record = match self.consumer.poll(Duration::from_millis(100)) {
                None => None,
                Some(Ok(message)) => Some(Inbound::from_message(&message)),
                // Caught up with a partition: nothing to say while following.
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => None,
                Some(Err(error)) => {
                    tracing::warn!(%error, "consumer error while following");
                    None
                }
            };
            if on_record(record).is_break() {
                break Ok(());
            }
        };
        let _ = self.consumer.unassign();
        outcome
    }

    /// Adds partitions to what this reader follows, each from the end its
    /// position gives: a record written after that is polled. Read the
    /// positions with another reader: while this one follows, its held
    /// fetches delay its other requests to the broker by up to
    /// `fetch.wait.max.ms`.
    pub fn follow_from_end(&self, positions: &[Position]) -> Result<()> {
        let mut assignment = TopicPartitionList::new();
        for position in positions {
            let tp = &position.partition;
            assignment
                .add_partition_offset(&tp.topic, tp.partition, Offset::Offset(position.high))
                .context("build an assignment")?;
        }
        self.consumer
            .incremental_assign(&assignment)
            .context("follow partitions")
    }

    /// Stops following `partitions`.
    pub fn unfollow(&self, partitions: &[TopicPartition]) -> Result<()> {
        let mut assignment = TopicPartitionList::new();
        for tp in partitions {
            assignment.add_partition(&tp.topic, tp.partition);
        }
        self.consumer
            .incremental_unassign(&assignment)
            .context("stop following partitions")
    }

    /// The next record of the partitions followed, if one arrives within `timeout`.
    pub fn poll(&self, timeout: Duration) -> Option<Inbound> {
        match self.consumer.poll(timeout)? {
            Ok(message) => Some(Inbound::from_message(&message)),
            Err(rdkafka::error::KafkaError::PartitionEOF(_)) => None,
            Err(error) => {
                tracing::warn!(%error, "consumer error while following");
                None
            }
        }
    }

    /// Each partition's watermarks now, and its first offset to read from
    /// `since` (from its end when `None`).
    pub fn positions(
        &self,
        partitions: &[TopicPartition],
        since: Option<Since>,
    ) -> Result<Vec<Position>> {
        let by_time = match since {
            Some(Since::Timestamp(ms)) => Some(self.offsets_for_time(partitions, ms)?),
            _ => None,
        };
        let mut positions = Vec::with_capacity(partitions.len());
        for tp in partitions {
            let (low, high) =
                crate::watermarks::fetch(&self.consumer, &tp.topic, tp.partition, TIMEOUT)
                    .context("fetch watermarks")?;
            let start = match (since, &by_time) {
                (Some(Since::Timestamp(_)), Some(found)) => match found.get(tp) {
                    Some(offset) => (*offset).clamp(low, high),
                    None => high,
                },
                (Some(Since::Beginning), _) => low,
                _ => high,
            };
            positions.push(Position {
                partition: tp.clone(),
                low,
                start,
                high,
            });
        }
        Ok(positions)
    }

    /// For each partition, the earliest offset whose record is stamped at or
    /// after `ms`; partitions with no such record are left out.
    ///
    /// Kafka's ListOffsets by timestamp: out-of-order timestamps in a batch
    /// included, and -1 past the last record (`cli/tests/tools.rs` checks
    /// it on the broker). An offset below the low watermark (records gone
    /// to retention) is raised to it by the caller.
    fn offsets_for_time(
        &self,
        partitions: &[TopicPartition],
        ms: i64,
    ) -> Result<HashMap<TopicPartition, i64>> {
        let mut query = TopicPartitionList::new();
        for tp in partitions {
            query
                .add_partition_offset(&tp.topic, tp.partition, Offset::Offset(ms))
                .context("build an offset query")?;
        }
        let answer = self
            .consumer
            .offsets_for_times(query, TIMEOUT)
            .context("find offsets by time")?;
        Ok(answer
            .elements()
            .iter()
            .filter_map(|element| match element.offset() {
                Offset::Offset(offset) => Some((
                    TopicPartition::new(element.topic(), element.partition()),
                    offset,
                )),
                // -1: no record at or after the timestamp.
                _ => None,
            })
            .collect())
    }

    fn drain(
        &self,
        remaining: &mut HashMap<(String, i32), (i64, i64)>,
        until_ms: Option<i64>,
        deadline: Duration,
        on_record: &mut impl FnMut(Inbound),
    ) -> Result<()> {
        let started = std::time::Instant::now();
        while !remaining.is_empty() {
            if started.elapsed() > deadline {
                return Err(Error::TimedOut("reading partitions to their end"));
            }
            let message = match self.consumer.poll(Duration::from_millis(100)) {
                None => continue,
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                    self.remove_finished(remaining, partition)?;
                    continue;
                }
                // A broker away for a moment (restarting, a leader moving):
                // librdkafka reconnects and the read goes on, within its deadline.
                Some(Err(error)) if is_transient(&error) => {
                    tracing::debug!(%error, "snapshot read waits for the broker");
                    continue;
                }
                Some(message) => message,
            };
            let record = Inbound::from_message(&message.context("read a record")?);
            let key = (record.topic.clone(), record.partition);
            let Some(&(start, high)) = remaining.get(&key) else {
                continue;
            };
            // A record fetched for an earlier read of this partition.
            if record.offset < start {
                continue;
            }
            let past_bound = matches!(
                (until_ms, record.timestamp_ms),
                (Some(until), Some(at)) if at > until
            );
            if record.offset + 1 >= high || past_bound {
                remaining.remove(&key);
            }
            if record.offset < high && !past_bound {
                on_record(record);
            }
        }
        Ok(())
    }

    /// At the end of `partition` (of some topic): every remaining
    /// partition of that number whose position reached its end is done.
    fn remove_finished(
        &self,
        remaining: &mut HashMap<(String, i32), (i64, i64)>,
        partition: i32,
    ) -> Result<()> {
        let positions = self.consumer.position().context("read positions")?;
        remaining.retain(|(topic, p), (_, high)| {
            let reached = *p == partition
                && matches!(
                    positions.find_partition(topic, *p).map(|e| e.offset()),
                    Some(Offset::Offset(position)) if position >= *high
                );
            !reached
        });
        Ok(())
    }
}

/// Reports client errors as librdkafka's default does, except reaching the
/// end of a partition, which a reader asks to be told of and is no error.
struct ReaderContext;

impl rdkafka::ClientContext for ReaderContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        // The end of a partition is how a snapshot knows it is done; it
        // also arrives as a global error (one per partition per read).
        use rdkafka::{error::KafkaError, types::RDKafkaErrorCode};
        if !matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        ) {
            tracing::error!(%error, reason, "librdkafka error");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for ReaderContext {}

/// Calls `on_record` with every record of `topic` from `since` up to the
/// end each partition had when the read began; fails after `deadline`.
pub fn read_topic(
    settings: &KafkaSettings,
    client_id: &str,
    topic: &str,
    since: Since,
    deadline: Duration,
    on_record: impl FnMut(Inbound),
) -> Result<()> {
    let reader = PartitionReader::new(settings, client_id)?;
    let partitions = reader.partitions_of(topic)?;
    reader.read(&partitions, since, None, deadline, on_record)
}

/// Consumer errors librdkafka recovers from by itself.
fn is_transient(error: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::{error::KafkaError, types::RDKafkaErrorCode as Code};
    matches!(
        error,
        KafkaError::MessageConsumption(
            Code::BrokerTransportFailure
                | Code::AllBrokersDown
                | Code::NotLeaderForPartition
                | Code::LeaderNotAvailable
                | Code::RequestTimedOut
                | Code::NetworkException
                | Code::OperationTimedOut
        )
    )
}

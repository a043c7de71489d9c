//! Reading topics as they are now: chosen partitions (or every partition of
//! a topic) from a start point (the beginning, or a timestamp) up to the end
//! they had when the read began, or to a time bound. Blocking; call it off
//! the async threads. No group is joined, nothing is committed.

use std::{collections::HashMap, time::Duration};

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
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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

/// A consumer kept for repeated reads of chosen partitions (each read
/// replaces the assignment of the one before), so a service that looks
/// records up often pays for the client and its connection once.
pub struct PartitionReader {
    consumer: BaseConsumer,
}

impl PartitionReader {
    pub fn new(settings: &KafkaSettings, client_id: &str) -> Result<Self> {
        let consumer: BaseConsumer = settings
            .client_config(client_id)
            .set("group.id", format!("{client_id}-snapshot"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("fetch.wait.max.ms", "10")
            .create()
            .context("create a snapshot reader")?;
        Ok(Self { consumer })
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
        let mut starts = TopicPartitionList::new();
        for tp in partitions {
            let start = match since {
                Since::Beginning => Offset::Beginning,
                Since::Timestamp(ms) => Offset::Offset(ms),
            };
            starts
                .add_partition_offset(&tp.topic, tp.partition, start)
                .context("build an assignment")?;
        }
        if let Since::Timestamp(_) = since {
            starts = self
                .consumer
                .offsets_for_times(starts, TIMEOUT)
                .context("find offsets by time")?;
        }
        let mut assignment = TopicPartitionList::new();
        // (topic, partition) -> (first offset, end offset)
        let mut remaining = HashMap::new();
        for element in starts.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            let (low, high) = self
                .consumer
                .fetch_watermarks(topic, partition, TIMEOUT)
                .context("fetch watermarks")?;
            let start = match element.offset() {
                Offset::Beginning => low,
                Offset::Offset(offset) => offset.max(low),
                // No record at or after the timestamp.
                _ => high,
            };
            if start < high {
                remaining.insert((topic.to_owned(), partition), (start, high));
                assignment
                    .add_partition_offset(topic, partition, Offset::Offset(start))
                    .context("build an assignment")?;
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
            let Some(message) = self.consumer.poll(Duration::from_millis(100)) else {
                continue;
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
}

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

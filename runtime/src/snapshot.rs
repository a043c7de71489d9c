//! Reading a topic as it is now: every partition from a start point (the
//! beginning, or a timestamp) up to the end it had when the read began.
//! Blocking; call it off the async threads. No group is joined, nothing is
//! committed.

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

/// Calls `on_record` with every record of `topic` from `since` up to the
/// end each partition had when the read began; fails after `deadline`.
pub fn read_topic(
    settings: &KafkaSettings,
    client_id: &str,
    topic: &str,
    since: Since,
    deadline: Duration,
    mut on_record: impl FnMut(Inbound),
) -> Result<()> {
    let consumer: BaseConsumer = settings
        .client_config(client_id)
        .set("group.id", format!("{client_id}-snapshot"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .context("create a snapshot reader")?;
    let metadata = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .context("read topic metadata")?;
    let partitions = metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len() as i32);
    let mut starts = TopicPartitionList::new();
    for partition in 0..partitions {
        let start = match since {
            Since::Beginning => Offset::Beginning,
            Since::Timestamp(ms) => Offset::Offset(ms),
        };
        starts
            .add_partition_offset(topic, partition, start)
            .context("build an assignment")?;
    }
    if let Since::Timestamp(_) = since {
        starts = consumer
            .offsets_for_times(starts, TIMEOUT)
            .context("find offsets by time")?;
    }
    let mut assignment = TopicPartitionList::new();
    let mut remaining = HashMap::new();
    for element in starts.elements() {
        let partition = element.partition();
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, TIMEOUT)
            .context("fetch watermarks")?;
        let start = match element.offset() {
            Offset::Beginning => low,
            Offset::Offset(offset) => offset.max(low),
            // No record at or after the timestamp.
            _ => high,
        };
        if start < high {
            remaining.insert(partition, high);
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(start))
                .context("build an assignment")?;
        }
    }
    if remaining.is_empty() {
        return Ok(());
    }
    consumer.assign(&assignment).context("assign partitions")?;
    let started = std::time::Instant::now();
    while !remaining.is_empty() {
        if started.elapsed() > deadline {
            return Err(Error::TimedOut("reading a topic to its end"));
        }
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let record = Inbound::from_message(&message.context("read a record")?);
        let Some(&high) = remaining.get(&record.partition) else {
            continue;
        };
        if record.offset + 1 >= high {
            remaining.remove(&record.partition);
        }
        if record.offset < high {
            on_record(record);
        }
    }
    Ok(())
}

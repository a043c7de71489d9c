//! `storefront analytics-tap`: what an analytics job reading history does to
//! the broker, on purpose. It reads every partition of every topic from the
//! beginning as fast as Kafka serves it, decodes each record as a consumer
//! would, and when it has read them all starts over, until stopped. Under
//! the client id taps share (`<prefix>analytics`), so a broker quota on that
//! id bounds it. `storefront bench`'s tap scenario runs it beside the load.

use std::{
    collections::BTreeMap,
    io::Write,
    time::{Duration, Instant},
};

use anyhow::Context;
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    Message, Offset, TopicPartitionList,
};
use serde::{Deserialize, Serialize};
use storefront_runtime::KafkaSettings;

use crate::decoded::Decoder;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Options of `storefront analytics-tap`.
#[derive(Debug, Clone, clap::Args)]
pub struct TapArgs {
    /// The client id (default: `<prefix>analytics`, the one every tap shares).
    #[arg(long)]
    pub client_id: Option<String>,
    /// Stop after this long (default: when stopped).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
}

/// What the tap has read so far; printed as a JSON line every second.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct TapProgress {
    pub elapsed_secs: f64,
    pub records: u64,
    /// Keys and values.
    pub bytes: u64,
    /// Whole reads of every topic finished.
    pub passes: u64,
}

/// The fetch rate, bytes per second and per broker, that `storefront up`
/// holds the analytics client id to (`--analytics-byte-rate`), and that the
/// bench's tap scenario measures with: measured in `docs/benchmarks.md`.
pub const DEFAULT_ANALYTICS_BYTE_RATE: u64 = 2 * 1024 * 1024;

/// The client id analytics taps share under `kafka`'s prefix.
pub fn client_id(kafka: &KafkaSettings) -> String {
    format!("{}analytics", kafka.topic_prefix)
}

/// Reads every topic again and again, printing its progress to stdout every
/// second. Blocking.
pub fn run(kafka: &KafkaSettings, args: &TapArgs) -> anyhow::Result<TapProgress> {
    let client_id = args.client_id.clone().unwrap_or_else(|| client_id(kafka));
    let consumer: BaseConsumer = kafka
        .consumer_config(&client_id)
        // Assigned by hand and committing nothing: a group only names it.
        .set("group.id", kafka.group("analytics.replay"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .context("create the tap's consumer")?;
    let mut partitions = TopicPartitionList::new();
    for topic in kafka.topics().all() {
        let metadata = consumer
            .fetch_metadata(Some(topic), TIMEOUT)
            .context("read topic metadata")?;
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            partitions.add_partition(topic, partition.id());
        }
    }
    eprintln!(
        "analytics-tap: reading {} partitions from the beginning, again and again, as client id {client_id:?}",
        partitions.count()
    );
    let decoder = Decoder::new();
    let started = Instant::now();
    let mut progress = TapProgress::default();
    let mut printed_at = Instant::now();
    let stdout = std::io::stdout();
    loop {
        // One pass: from the beginning up to the ends as they are now.
        let mut ends = BTreeMap::new();
        let mut from = TopicPartitionList::new();
        for element in partitions.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, TIMEOUT)
                .context("read the partition's offsets")?;
            if high > low {
                ends.insert((topic.to_owned(), partition), high);
                from.add_partition_offset(topic, partition, Offset::Beginning)?;
            }
        }
        consumer.assign(&from).context("assign the partitions")?;
        if ends.is_empty() {
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut checked_at = Instant::now();
        while !ends.is_empty() {
            if args.duration.is_some_and(|d| started.elapsed() >= d) {
                return Ok(progress);
            }
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                let message = message.context("read a record")?;
                progress.records += 1;
                progress.bytes += (message.key().map_or(0, <[u8]>::len)
                    + message.payload().map_or(0, <[u8]>::len))
                    as u64;
                // What a consumer does with a record: decode it.
                let _ = decoder.decode_value(message.payload().unwrap_or_default());
                let key = (message.topic().to_owned(), message.partition());
                if ends
                    .get(&key)
                    .is_some_and(|end| message.offset() + 1 >= *end)
                {
                    ends.remove(&key);
                }
            }
            // Transaction markers take offsets but are no records: a
            // partition that ends with one is read once its position is there.
            if checked_at.elapsed() >= Duration::from_millis(200) {
                checked_at = Instant::now();
                for element in consumer.position()?.elements() {
                    let key = (element.topic().to_owned(), element.partition());
                    if let (Offset::Offset(at), Some(end)) = (element.offset(), ends.get(&key)) {
                        if at >= *end {
                            ends.remove(&key);
                        }
                    }
                }
            }
            if printed_at.elapsed() >= Duration::from_secs(1) {
                printed_at = Instant::now();
                progress.elapsed_secs = started.elapsed().as_secs_f64();
                let mut out = stdout.lock();
                writeln!(out, "{}", serde_json::to_string(&progress)?)?;
                out.flush()?;
            }
        }
        progress.passes += 1;
        if progress.passes == 1 {
            eprintln!(
                "analytics-tap: read every topic once: {} records in {:.1} s",
                progress.records,
                started.elapsed().as_secs_f64()
            );
        }
    }
}

//! Readers that fold reference topics (customers, catalog, orders, sessions)
//! into a service's read model: every partition from the beginning, then
//! following new records. Nothing is committed; a restart rebuilds the model
//! from the topics.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use rdkafka::{
    consumer::{Consumer, StreamConsumer},
    Offset, TopicPartitionList,
};
use tokio_util::sync::CancellationToken;

use crate::{
    dead_letter::DeadLetters,
    error::KafkaContext,
    metrics::{LagReporter, STATISTICS_INTERVAL_MS},
    topics::partition_counts,
    Error, Inbound, KafkaSettings, Readiness, Result,
};

/// The readiness condition a [`ReferenceReader`] meets once it has read
/// everything that was on its topics when it started.
pub const REFERENCE_LOADED: &str = "reference data loaded";

/// Follows some reference topics for one service.
pub struct ReferenceReader {
    pub service: &'static str,
    pub topics: Vec<String>,
}

impl ReferenceReader {
    /// Applies every record to `apply` until `shutdown`. A record `apply`
    /// refuses is dead-lettered. Marks [`REFERENCE_LOADED`] once caught up.
    pub async fn run(
        self,
        settings: &KafkaSettings,
        mut apply: impl FnMut(&Inbound) -> Result<(), String> + Send,
        dead_letters: DeadLetters,
        readiness: Readiness,
        shutdown: CancellationToken,
    ) -> Result<()> {
        let metrics = dead_letters.telemetry().metrics().clone();
        let started = Instant::now();
        let consumer: Arc<StreamConsumer<LagReporter>> = Arc::new(
            settings
                .client_config(self.service)
                // Manual assignment: no group is joined and nothing is committed.
                .set(
                    "group.id",
                    format!(
                        "{}{}-reader-{}",
                        settings.topic_prefix,
                        self.service,
                        std::process::id()
                    ),
                )
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("auto.offset.reset", "earliest")
                .set("fetch.wait.max.ms", "500")
                .set("fetch.max.bytes", "52428800")
                .set("max.partition.fetch.bytes", "10485760")
                .set("statistics.interval.ms", STATISTICS_INTERVAL_MS)
                .create_with_context(LagReporter(metrics))
                .context("create a reference reader")?,
        );
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        let counts = partition_counts(settings, &topics).await?;
        let mut assignment = TopicPartitionList::new();
        for (topic, partitions) in &counts {
            for partition in 0..*partitions {
                assignment
                    .add_partition_offset(topic, partition, Offset::Beginning)
                    .context("build an assignment")?;
            }
        }
        let mut remaining = {
            let consumer = consumer.clone();
            let counts = counts.clone();
            tokio::task::spawn_blocking(move || -> Result<HashMap<(String, i32), i64>> {
                let mut remaining = HashMap::new();
                for (topic, partitions) in counts {
                    for partition in 0..partitions {
                        let (low, high) = crate::watermarks::fetch(
                            consumer.as_ref(),
                            &topic,
                            partition,
                            Duration::from_secs(10),
                        )
                        .context("fetch watermarks")?;
                        if high > low {
                            remaining.insert((topic.clone(), partition), high);
                        }
                    }
                }
                Ok(remaining)
            })
            .await
            .map_err(|_| Error::TimedOut("watermarks"))??
        };
        consumer
            .assign(&assignment)
            .context("assign reference partitions")?;
        let mut loaded = 0u64;
        let mark_loaded = |loaded: u64| {
            tracing::info!(
                service = self.service,
                records = loaded,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "reference data loaded"
            );
            readiness.done(REFERENCE_LOADED);
        };
        if remaining.is_empty() {
            mark_loaded(0);
        }
        loop {
            let Some(record) = crate::next_record(&consumer, &shutdown).await else {
                break;
            };
            if let Err(reason) = apply(&record) {
                if let Err(error) = dead_letters.send(&record, &reason).await {
                    tracing::error!(%error, "could not dead-letter a reference record");
                }
            }
            loaded += 1;
            let key = (record.topic.clone(), record.partition);
            if remaining
                .get(&key)
                .is_some_and(|high| record.offset + 1 >= *high)
            {
                remaining.remove(&key);
                if remaining.is_empty() {
                    mark_loaded(loaded);
                }
            }
        }
        tokio::task::spawn_blocking(move || drop(consumer))
            .await
            .ok();
        Ok(())
    }
}

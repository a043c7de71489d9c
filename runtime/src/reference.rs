//! Readers that fold reference topics (customers, catalog, orders, sessions)
//! into a service's read model: from its checkpoint when it has a usable
//! one, from the beginning of every partition when not, then following new
//! records. Nothing is committed to the group: where the model is, is
//! what its checkpoint says.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use rdkafka::{
    consumer::{Consumer, StreamConsumer},
    Offset, TopicPartitionList,
};
use tokio_util::sync::CancellationToken;

use crate::{
    checkpoint::{Checkpoints, Positions, ReadModel, Stamp},
    dead_letter::DeadLetters,
    error::KafkaContext,
    metrics::{LagReporter, STATISTICS_INTERVAL_MS},
    topics::partition_counts,
    Error, Inbound, KafkaSettings, Readiness, Result,
};

/// The readiness condition a [`ReferenceReader`] meets once it has read
/// everything that was on its topics when it started.
pub const REFERENCE_LOADED: &str = "reference data loaded";

/// Records a reference reader keeps fetched ahead of the model, at most (KiB).
const READER_QUEUED_KBYTES: &str = "8192";
/// The largest fetch a reference reader asks for (bytes).
const READER_FETCH_BYTES: &str = "4194304";

/// Follows some reference topics for one service, folding them into `model`.
pub struct ReferenceReader<M> {
    pub service: &'static str,
    pub topics: Vec<String>,
    pub model: Arc<RwLock<M>>,
    /// Where the model is kept between runs; `None`: rebuilt at every start.
    pub checkpoints: Option<Checkpoints>,
}

/// Each reference partition's (low, high) watermarks.
type Watermarks = BTreeMap<(String, i32), (i64, i64)>;

impl<M: ReadModel> ReferenceReader<M> {
    /// Applies every record to the model until `shutdown`. A record the
    /// model refuses is dead-lettered. Marks [`REFERENCE_LOADED`] once caught
    /// up; writes the checkpoint then, every interval while records come,
    /// and at shutdown.
    pub async fn run(
        self,
        settings: &KafkaSettings,
        dead_letters: DeadLetters,
        readiness: Readiness,
        shutdown: CancellationToken,
    ) -> Result<()> {
        let metrics = dead_letters.telemetry().metrics().clone();
        let started = Instant::now();
        let consumer: Arc<StreamConsumer<LagReporter>> = Arc::new(
            settings
                .consumer_config(self.service)
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
                // What a reader holds in buffers while it loads, at most:
                // librdkafka's defaults (64 MiB queued, 50 MiB fetches)
                // were most of a service's peak memory, for no faster a load.
                .set("queued.max.messages.kbytes", READER_QUEUED_KBYTES)
                .set("fetch.max.bytes", READER_FETCH_BYTES)
                .set("max.partition.fetch.bytes", READER_FETCH_BYTES)
                .set("statistics.interval.ms", STATISTICS_INTERVAL_MS)
                .create_with_context(LagReporter(metrics))
                .context("create a reference reader")?,
        );
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        let counts = partition_counts(settings, &topics).await?;
        let (watermarks, cluster_id) = {
            let consumer = consumer.clone();
            tokio::task::spawn_blocking(move || where_partitions_are(consumer.as_ref(), counts))
                .await
                .map_err(|_| Error::TimedOut("watermarks"))??
        };
        let stamp = Stamp {
            layout: M::LAYOUT.to_owned(),
            service: self.service.to_owned(),
            topic_prefix: settings.topic_prefix.clone(),
            cluster_id,
            positions: Positions::new(),
        };
        let restored = self.restore(&stamp, &watermarks).await;
        dead_letters
            .telemetry()
            .metrics()
            .read_model_starts
            .with_label_values(&[if restored.is_some() {
                "checkpoint"
            } else {
                "topics"
            }])
            .inc();
        let mut positions = match restored {
            Some(positions) => positions,
            None => watermarks
                .iter()
                .map(|(partition, (low, _))| (partition.clone(), *low))
                .collect(),
        };
        let mut assignment = TopicPartitionList::new();
        for ((topic, partition), next) in &positions {
            assignment
                .add_partition_offset(topic, *partition, Offset::Offset(*next))
                .context("build an assignment")?;
        }
        // Where each partition ended when the read began, if not read to it yet.
        let mut remaining: HashMap<(String, i32), i64> = watermarks
            .iter()
            .filter(|(partition, (_, high))| positions[*partition] < *high)
            .map(|(partition, (_, high))| (partition.clone(), *high))
            .collect();
        consumer
            .assign(&assignment)
            .context("assign reference partitions")?;
        let topics = settings.topics();
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
        let every = self
            .checkpoints
            .as_ref()
            .map_or(Duration::from_secs(3600), |c| c.interval);
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        // Records folded since the last checkpoint.
        let mut unsaved = false;
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticks.tick() => {
                    if unsaved && remaining.is_empty() {
                        self.save(&stamp, &positions).await;
                        unsaved = false;
                    }
                    continue;
                }
                message = consumer.recv() => message,
            };
            let record = match message {
                Ok(message) => Inbound::from_message(&message),
                // librdkafka's report of what it handles itself (see
                // `next_record`): logged, and polling goes on at once.
                Err(error) => {
                    tracing::warn!(%error, "reference reader error");
                    continue;
                }
            };
            let applied = self
                .model
                .write()
                .expect("read model lock")
                .apply(&record, &topics);
            if let Err(reason) = applied {
                if let Err(error) = dead_letters.send(&record, &reason).await {
                    tracing::error!(%error, "could not dead-letter a reference record");
                }
            }
            loaded += 1;
            unsaved = true;
            let key = (record.topic, record.partition);
            positions.insert(key.clone(), record.offset + 1);
            if remaining
                .get(&key)
                .is_some_and(|high| record.offset + 1 >= *high)
            {
                remaining.remove(&key);
                if remaining.is_empty() {
                    mark_loaded(loaded);
                    // Caught up: keep at once what this start read.
                    self.save(&stamp, &positions).await;
                    unsaved = false;
                }
            }
        }
        if unsaved && remaining.is_empty() {
            self.save(&stamp, &positions).await;
        }
        tokio::task::spawn_blocking(move || drop(consumer))
            .await
            .ok();
        Ok(())
    }

    /// The model and positions of the checkpoint, installed in the model,
    /// if there is one this run can use; says why not in the log.
    async fn restore(&self, expected: &Stamp, watermarks: &Watermarks) -> Option<Positions> {
        let checkpoints = self.checkpoints.clone()?;
        let started = Instant::now();
        let path = checkpoints.path.display().to_string();
        let loaded = tokio::task::spawn_blocking(move || checkpoints.load::<M>())
            .await
            .ok()?;
        let (stamp, model) = match loaded {
            Ok(Some(found)) => found,
            Ok(None) => {
                tracing::info!(service = self.service, %path, "no checkpoint yet; reading the reference topics from the beginning");
                return None;
            }
            Err(error) => {
                tracing::warn!(service = self.service, %error, "checkpoint not used; rebuilding the read model from the topics");
                return None;
            }
        };
        if let Some(reason) = stamp.mismatch(expected, watermarks) {
            tracing::warn!(service = self.service, %path, %reason, "checkpoint not used; rebuilding the read model from the topics");
            return None;
        }
        let behind: i64 = watermarks
            .iter()
            .map(|(partition, (_, high))| high - stamp.positions[partition])
            .sum();
        tracing::info!(
            service = self.service,
            %path,
            elapsed_ms = started.elapsed().as_millis() as u64,
            records_behind = behind,
            "read model restored from its checkpoint"
        );
        *self.model.write().expect("read model lock") = model;
        Some(stamp.positions)
    }

    /// Writes the model as of `positions` to the checkpoint, if one is kept.
    /// A failure is logged: the next start reads more of the topics.
    async fn save(&self, stamp: &Stamp, positions: &Positions) {
        let Some(checkpoints) = self.checkpoints.clone() else {
            return;
        };
        let stamp = Stamp {
            positions: positions.clone(),
            ..stamp.clone()
        };
        let model = self.model.clone();
        let started = Instant::now();
        let written = tokio::task::spawn_blocking(move || {
            let model = model.read().expect("read model lock");
            checkpoints.save(&stamp, &*model)
        })
        .await;
        match written {
            Ok(Ok(bytes)) => tracing::info!(
                service = self.service,
                bytes,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "checkpoint written"
            ),
            Ok(Err(error)) => tracing::warn!(
                service = self.service,
                %error,
                "could not write the checkpoint; the next start reads more of the topics"
            ),
            Err(join) => tracing::warn!(service = self.service, %join, "checkpoint writer failed"),
        }
    }
}

/// Every partition's watermarks, and the cluster's id. Blocking.
fn where_partitions_are(
    consumer: &StreamConsumer<LagReporter>,
    counts: BTreeMap<String, i32>,
) -> Result<(Watermarks, Option<String>)> {
    let timeout = Duration::from_secs(10);
    let mut watermarks = Watermarks::new();
    for (topic, partitions) in counts {
        for partition in 0..partitions {
            let ends = crate::watermarks::fetch(consumer, &topic, partition, timeout)
                .context("fetch watermarks")?;
            watermarks.insert((topic.clone(), partition), ends);
        }
    }
    Ok((watermarks, consumer.client().fetch_cluster_id(timeout)))
}

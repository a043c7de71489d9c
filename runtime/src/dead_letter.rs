//! Records that cannot be decoded or fail validation go to the dead-letter
//! topic unchanged, with why and where from in headers, so the service can
//! go on and an engineer can look later.

use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::FutureRecord,
};

use crate::{Error, EventProducer, Inbound, Result};

pub const REASON: &str = "dlq-reason";
pub const SOURCE_TOPIC: &str = "dlq-source-topic";
pub const SOURCE_PARTITION: &str = "dlq-source-partition";
pub const SOURCE_OFFSET: &str = "dlq-source-offset";
pub const SERVICE: &str = "dlq-service";

/// Writes bad records to the dead-letter topic.
#[derive(Clone)]
pub struct DeadLetters {
    producer: EventProducer,
    topic: String,
    service: &'static str,
}

impl DeadLetters {
    /// Dead letters written to `topic` by `producer`'s service.
    pub fn new(producer: EventProducer, topic: String) -> Self {
        Self {
            service: producer.telemetry().service(),
            producer,
            topic,
        }
    }

    /// The telemetry of the service writing these dead letters.
    pub fn telemetry(&self) -> &crate::Telemetry {
        self.producer.telemetry()
    }

    /// Sends `record` to the dead-letter topic with `reason`, and waits for the ack.
    pub async fn send(&self, record: &Inbound, reason: &str) -> Result<()> {
        tracing::warn!(
            topic = %record.topic, partition = record.partition, offset = record.offset,
            service = self.service, %reason, "dead-lettering a record"
        );
        self.producer
            .telemetry()
            .metrics()
            .dead_letters
            .with_label_values(&[&record.topic])
            .inc();
        let (partition, offset) = (record.partition.to_string(), record.offset.to_string());
        let where_from = [
            (REASON, reason),
            (SOURCE_TOPIC, record.topic.as_str()),
            (SOURCE_PARTITION, partition.as_str()),
            (SOURCE_OFFSET, offset.as_str()),
            (SERVICE, self.service),
        ];
        let headers = record
            .raw_headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .chain(where_from.map(|(k, v)| (k, v.as_bytes())));
        send_raw(
            &self.producer,
            (&self.topic, None),
            record.key.as_deref(),
            record.payload.as_deref(),
            headers,
        )
        .await
    }
}

/// Produces a record as it is, headers and all, and waits for the ack.
async fn send_raw<'a>(
    producer: &EventProducer,
    (topic, partition): (&str, Option<i32>),
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    headers: impl Iterator<Item = (&'a str, &'a [u8])>,
) -> Result<()> {
    let headers = headers.fold(OwnedHeaders::new(), |headers, (key, value)| {
        headers.insert(Header {
            key,
            value: Some(value),
        })
    });
    let mut record = FutureRecord::to(topic)
        .payload(payload.unwrap_or_default())
        .headers(headers);
    if let Some(key) = key {
        record = record.key(key);
    }
    if let Some(partition) = partition {
        record = record.partition(partition);
    }
    producer
        .raw()
        .send(record, std::time::Duration::from_secs(10))
        .await
        .map(|_| ())
        .map_err(|(source, _)| Error::Kafka {
            action: "write a record unchanged",
            source,
        })
}

/// A record on the dead-letter topic, and where it came from.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Its own place on the dead-letter topic.
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub reason: String,
    pub service: String,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    /// The original record: key, payload, and headers as sent.
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Header on a record re-published from the dead-letter topic:
/// `<partition>:<offset>` of the dead letter it came from.
pub const REPUBLISHED_FROM: &str = "dlq-republished-from";

impl DeadLetter {
    /// Reads a record of the dead-letter topic; `None` if it lacks the headers.
    pub fn from_record(record: &Inbound) -> Option<Self> {
        let header = |name| record.header(name);
        Some(Self {
            partition: record.partition,
            offset: record.offset,
            timestamp_ms: record.timestamp_ms,
            reason: header(REASON)?,
            service: header(SERVICE)?,
            source_topic: header(SOURCE_TOPIC)?,
            source_partition: header(SOURCE_PARTITION)?.parse().ok()?,
            source_offset: header(SOURCE_OFFSET)?.parse().ok()?,
            key: record.key.clone(),
            payload: record.payload.clone(),
            headers: record
                .raw_headers
                .iter()
                .filter(|(k, _)| !k.starts_with("dlq-"))
                .cloned()
                .collect(),
        })
    }

    /// Writes the original record back to its source topic and partition
    /// (same key, payload and headers, plus [`REPUBLISHED_FROM`]), for another try
    /// once what refused it is fixed.
    pub async fn republish(&self, producer: &EventProducer) -> Result<()> {
        let from = format!("{}:{}", self.partition, self.offset);
        let headers = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .chain([(REPUBLISHED_FROM, from.as_bytes())]);
        send_raw(
            producer,
            (&self.source_topic, Some(self.source_partition)),
            self.key.as_deref(),
            self.payload.as_deref(),
            headers,
        )
        .await
    }
}

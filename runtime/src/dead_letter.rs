//! Records that cannot be decoded or fail validation go to the dead-letter
//! topic unchanged, with why and where from in headers, so the service can
//! go on and an engineer can look later.

use rdkafka::message::{Header, OwnedHeaders};

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
        let mut headers = OwnedHeaders::new();
        for (key, value) in &record.raw_headers {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let partition = record.partition.to_string();
        let offset = record.offset.to_string();
        for (key, value) in [
            (REASON, reason),
            (SOURCE_TOPIC, record.topic.as_str()),
            (SOURCE_PARTITION, partition.as_str()),
            (SOURCE_OFFSET, offset.as_str()),
            (SERVICE, self.service),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        let mut future_record = rdkafka::producer::FutureRecord::to(&self.topic)
            .payload(record.payload.as_deref().unwrap_or_default())
            .headers(headers);
        if let Some(key) = &record.key {
            future_record = future_record.key(key.as_slice());
        }
        self.producer
            .raw()
            .send(future_record, std::time::Duration::from_secs(5))
            .await
            .map(|_| ())
            .map_err(|(source, _)| Error::Kafka {
                action: "dead-letter a record",
                source,
            })
    }
}

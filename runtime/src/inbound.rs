//! Records as services see them: owned, decoded on demand, with their trace context.

use opentelemetry::Context;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use storefront_schemas::{Contract, DecodeError, EventSet};

use crate::{EventHeaders, Topics};

/// A record taken off a topic, owned so it can cross tasks.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: EventHeaders,
    /// Every header as sent, for dead-lettering the record unchanged.
    pub raw_headers: Vec<(String, Vec<u8>)>,
    /// The record's timestamp (producer's create time), milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
    /// The trace context: the producer's span as the record carried it,
    /// then the span of the service handling it (what it causes is sent under this).
    pub trace: Context,
}

impl Inbound {
    pub fn from_message(message: &BorrowedMessage<'_>) -> Self {
        let raw_headers: Vec<(String, Vec<u8>)> = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            trace: crate::trace::extract(&raw_headers),
            timestamp_ms: message.timestamp().to_millis(),
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers: EventHeaders::read(message.headers()),
            raw_headers,
        }
    }

    /// Decodes the payload as `T`; an absent payload is an error too.
    pub fn decode<T: Contract>(&self) -> Result<T, DecodeError> {
        storefront_schemas::decode(self.payload.as_deref().unwrap_or_default())
    }

    /// Decodes the payload by the schema that wrote it into one of `E`'s
    /// events, which must be the contract `topics` says this topic carries;
    /// says why not (the reason a dead letter gives).
    pub fn event<E: EventSet>(&self, topics: &Topics) -> Result<E, String> {
        let event =
            E::decode(self.payload.as_deref().unwrap_or_default()).map_err(|e| e.to_string())?;
        match topics.contract_of(&self.topic) {
            Some(carried) if carried == event.event_type() => Ok(event),
            carried => Err(format!(
                "a {} record on {}, which carries {}",
                event.event_type(),
                self.topic,
                carried.unwrap_or("no contract of this service")
            )),
        }
    }

    /// A header's value as text, as sent.
    pub fn header(&self, name: &str) -> Option<String> {
        self.raw_headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// The key as text, if it is UTF-8.
    pub fn key_str(&self) -> Option<&str> {
        self.key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
    }
}

/// The next record from `consumer`; `None` once `shutdown` is cancelled.
/// A consumer error is librdkafka's report of something it handles itself
/// (a broker away, a connection refused: it reconnects with its own
/// backoff), not an attempt of ours to retry: it is logged and polling
/// goes on at once. Waiting here would leave the reports of an outage
/// queued ahead of the records and rebalances that follow it.
pub async fn next_record<C: rdkafka::consumer::ConsumerContext + 'static>(
    consumer: &rdkafka::consumer::StreamConsumer<C>,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Option<Inbound> {
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => return None,
            message = consumer.recv() => message,
        };
        match message {
            Ok(message) => return Some(Inbound::from_message(&message)),
            Err(error) => tracing::warn!(%error, "consumer error"),
        }
    }
}

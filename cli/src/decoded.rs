//! Records made readable for people: any record of any topic decoded to
//! JSON with the schema that wrote it (picked by its fingerprint, current
//! or earlier version), with its position, time, key and headers. What
//! `storefront trace` and `storefront tail` print.

use std::collections::HashMap;

use apache_avro::{rabin::Rabin, reader::datum::GenericDatumReader, Schema};
use serde::Serialize;
use serde_json::Value;
use storefront_runtime::{dead_letter, Inbound};
use storefront_schemas::{contracts, MAX_ENCODED_BYTES, SINGLE_OBJECT_MAGIC};

const HEADER_LEN: usize = 10;

/// One record, decoded.
#[derive(Debug, Clone, Serialize)]
pub struct DecodedRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<String>,
    /// From the `event-type` header, else from the schema that wrote the value.
    pub event_type: Option<String>,
    pub request_id: Option<storefront_schemas::RequestId>,
    /// The W3C trace ID of the `traceparent` header: where the record is in
    /// an outside tracing UI.
    pub trace_id: Option<String>,
    /// Every header but the trace context ones, as text.
    pub headers: serde_json::Map<String, Value>,
    /// The value as JSON, or why it could not be decoded.
    #[serde(flatten)]
    pub value: Decoded,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decoded {
    Value(Value),
    /// A dead letter: its payload is the refused record, shown as it is.
    DeadLetter(Value),
    Error(String),
}

impl Decoded {
    /// For a terminal: the value's JSON, or what kind of record it is not.
    pub fn display(&self) -> String {
        match self {
            Self::Value(value) => value.to_string(),
            Self::DeadLetter(value) => format!("dead letter of {value}"),
            Self::Error(error) => format!("(not decoded: {error})"),
        }
    }
}

impl DecodedRecord {
    /// A field of the value, by a dotted path (`context.session_id`,
    /// `user.name`): text as is, anything else as JSON.
    pub fn field(&self, path: &str) -> Option<String> {
        let Decoded::Value(value) = &self.value else {
            return None;
        };
        let found = path
            .split('.')
            .try_fold(value, |value, name| value.get(name))?;
        Some(match found {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        })
    }

    /// A header's value, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(Value::as_str)
    }
}

/// Every bundled schema, current and earlier, by fingerprint.
pub struct Decoder {
    schemas: HashMap<[u8; 8], (&'static str, Schema)>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        let mut schemas = HashMap::new();
        for contract in contracts() {
            let versions = std::iter::once(contract.schema_json)
                .chain(contract.previous_schema_json.iter().copied());
            for json in versions {
                let schema = Schema::parse_str(json).expect("bundled schemas parse");
                schemas.insert(fingerprint(&schema), (contract.event_type, schema));
            }
        }
        Self { schemas }
    }

    /// The event type and JSON of a single-object encoded value.
    pub fn decode_value(&self, bytes: &[u8]) -> Result<(&'static str, Value), String> {
        if bytes.len() > MAX_ENCODED_BYTES {
            return Err(format!("{} bytes: larger than any record", bytes.len()));
        }
        if bytes.len() < HEADER_LEN || bytes[..2] != SINGLE_OBJECT_MAGIC {
            return Err("not Avro single-object encoded".into());
        }
        let fingerprint: [u8; 8] = bytes[2..HEADER_LEN].try_into().expect("8 bytes");
        let Some((event_type, schema)) = self.schemas.get(&fingerprint) else {
            return Err(format!(
                "no bundled schema has fingerprint {}",
                hex(&fingerprint)
            ));
        };
        let mut datum = &bytes[HEADER_LEN..];
        let value = GenericDatumReader::builder(schema)
            .build()
            .and_then(|reader| reader.read_value(&mut datum))
            .map_err(|e| format!("{event_type}: {e}"))?;
        if !datum.is_empty() {
            return Err(format!("{} bytes left over after the datum", datum.len()));
        }
        let json = Value::try_from(value).map_err(|e| format!("{event_type}: {e}"))?;
        Ok((event_type, json))
    }

    /// `record`, decoded; never fails (a bad value is shown as an error).
    pub fn decode(&self, record: &Inbound) -> DecodedRecord {
        let headers: serde_json::Map<String, Value> = record
            .raw_headers
            .iter()
            .filter(|(name, _)| !is_trace_header(name))
            .map(|(name, value)| {
                (
                    name.clone(),
                    Value::String(String::from_utf8_lossy(value).into_owned()),
                )
            })
            .collect();
        let payload = record.payload.as_deref().unwrap_or_default();
        let mut event_type = record.headers.event_type.clone();
        let value = if headers.contains_key(dead_letter::REASON) {
            // Dead letters keep the refused bytes: decode them if they can be.
            Decoded::DeadLetter(match self.decode_value(payload) {
                Ok((_, value)) => value,
                Err(_) => Value::String(hex(payload)),
            })
        } else {
            match self.decode_value(payload) {
                Ok((schema_type, value)) => {
                    event_type.get_or_insert_with(|| schema_type.to_owned());
                    Decoded::Value(value)
                }
                Err(error) => Decoded::Error(error),
            }
        };
        DecodedRecord {
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
            timestamp_ms: record.timestamp_ms,
            key: record
                .key
                .as_deref()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            event_type,
            request_id: record.headers.request_id,
            trace_id: record
                .header("traceparent")
                .and_then(|traceparent| trace_id_of(&traceparent)),
            headers,
            value,
        }
    }
}

/// The schema's CRC-64-AVRO (Rabin) fingerprint: the 8 bytes after `C3 01` in its records.
pub fn fingerprint(schema: &Schema) -> [u8; 8] {
    schema
        .fingerprint::<Rabin>()
        .bytes
        .try_into()
        .expect("a Rabin fingerprint has 8 bytes")
}

/// The trace ID of a `traceparent` (`00-<trace id>-<span id>-<flags>`), unless it is all zeros.
fn trace_id_of(traceparent: &str) -> Option<String> {
    let trace_id = traceparent.split('-').nth(1)?;
    let valid = trace_id.len() == 32
        && trace_id.bytes().all(|b| b.is_ascii_hexdigit())
        && trace_id.bytes().any(|b| b != b'0');
    valid.then(|| trace_id.to_ascii_lowercase())
}

fn is_trace_header(name: &str) -> bool {
    matches!(name, "traceparent" | "tracestate" | "baggage")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use storefront_runtime::Topics;
    use storefront_schemas::{encode, PagesPerMinute, Product};

    use super::*;

    #[test]
    fn what_the_streams_job_writes_is_a_topic_tail_decodes() {
        let minute = PagesPerMinute {
            window_start_ms: 60_000,
            window_end_ms: 120_000,
            pages: 3,
            ad_impressions_by_product: [("p-1".to_owned(), 2)].into(),
            ..PagesPerMinute::default()
        };
        let (event_type, json) = Decoder::new().decode_value(&encode(&minute)).unwrap();
        assert_eq!(event_type, "pages_per_minute");
        assert_eq!(json["pages"], 3);
        assert_eq!(json["ad_impressions_by_product"]["p-1"], 2);
        let topics = Topics::with_prefix("");
        assert!(topics.all().contains(&"analytics.pages-per-minute"));
        assert_eq!(
            topics.contract_of("analytics.pages-per-minute"),
            Some("pages_per_minute")
        );
    }

    #[test]
    fn a_record_decodes_with_the_schema_its_fingerprint_names() {
        let product = Product {
            product_id: "p-1".into(),
            name: "Kettle".into(),
            category: "kitchen".into(),
            price_cents: 2599,
        };
        let (event_type, json) = Decoder::new().decode_value(&encode(&product)).unwrap();
        assert_eq!(event_type, "product");
        assert_eq!(json["name"], "Kettle");
        assert_eq!(json["price_cents"], 2599);
    }

    #[test]
    fn the_trace_id_is_read_from_a_valid_traceparent_only() {
        assert_eq!(
            trace_id_of("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            trace_id_of("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(trace_id_of("garbage"), None);
    }

    #[test]
    fn bytes_that_are_no_record_give_a_reason() {
        let decoder = Decoder::new();
        assert!(decoder
            .decode_value(b"{}")
            .unwrap_err()
            .contains("single-object"));
        let mut unknown = vec![0xC3, 0x01];
        unknown.extend([0; 8]);
        assert!(decoder
            .decode_value(&unknown)
            .unwrap_err()
            .contains("fingerprint"));
    }
}

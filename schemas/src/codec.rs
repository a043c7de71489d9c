//! Avro single-object encoding: `C3 01`, the writer schema's 8-byte Rabin
//! fingerprint (little-endian, over the Parsing Canonical Form), then the
//! binary datum.
//!
//! No schema here puts a `logicalType` on a primitive: apache-avro 0.22 keeps
//! such a type as an object in its canonical form, so its fingerprint would
//! differ from Java's and fastavro's (checked against fastavro in
//! `tests/fingerprints.rs`).

use std::sync::LazyLock;

use apache_avro::{
    rabin::Rabin, reader::datum::GenericDatumReader, writer::datum::GenericDatumWriter, Schema,
};
use serde::{de::DeserializeOwned, Serialize};

use crate::{
    AdsSelected, CallbackReported, Credential, Customer, HistoryFetched, Order, PageCompleted,
    PageRequested, PagesPerMinute, Product, Session, UserResolved,
};

/// The two marker bytes that open every single-object encoded record.
pub const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = 10;

/// A record that failed to decode; the reason goes to the dead-letter topic.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not Avro single-object encoded (missing C3 01 marker)")]
    NotSingleObject,
    #[error("written with schema fingerprint {found}, expected {expected} ({event_type})")]
    UnknownSchema {
        event_type: &'static str,
        found: String,
        expected: String,
    },
    #[error("Avro datum does not match {event_type}: {source}")]
    Datum {
        event_type: &'static str,
        #[source]
        source: Box<apache_avro::Error>,
    },
    #[error("{size} bytes is more than the {max} a record may have")]
    TooLarge { size: usize, max: usize },
    #[error("written with schema fingerprint {found}, which is none of the {expected}")]
    NotAMember {
        expected: &'static str,
        found: String,
    },
    #[error("{count} bytes left over after the {event_type} datum")]
    TrailingBytes {
        event_type: &'static str,
        count: usize,
    },
}

/// The largest record any decoder accepts; larger ones are refused unread.
pub const MAX_ENCODED_BYTES: usize = 256 * 1024;

/// The most one decode may allocate for a string or collection (process-wide
/// setting of apache-avro, whose default is 512 MiB).
const MAX_ALLOCATION_BYTES: usize = 1024 * 1024;

/// A compiled schema and its single-object header.
pub struct CompiledSchema {
    schema: Schema,
    header: [u8; HEADER_LEN],
}

impl CompiledSchema {
    fn compile(json: &str) -> Self {
        let schema = Schema::parse_str(json).expect("bundled .avsc files are valid Avro");
        let fingerprint = schema.fingerprint::<Rabin>().bytes;
        let mut header = [0u8; HEADER_LEN];
        header[..2].copy_from_slice(&SINGLE_OBJECT_MAGIC);
        header[2..].copy_from_slice(&fingerprint);
        Self { schema, header }
    }

    /// `C3 01` followed by the 8 fingerprint bytes.
    pub fn header(&self) -> &[u8; HEADER_LEN] {
        &self.header
    }
}

/// An event type with a schema in `schemas/avro/`.
pub trait Contract: Serialize + DeserializeOwned {
    /// The `event-type` header value, e.g. `page.requested`.
    const EVENT_TYPE: &'static str;
    /// The `.avsc` text.
    const SCHEMA_JSON: &'static str;
    /// Earlier versions of the schema (`avro/previous/`), whose records
    /// still decode: fields added since are filled from their defaults.
    const PREVIOUS_SCHEMA_JSON: &'static [&'static str];
    /// The file names of those versions under `avro/previous/`, in the same order.
    const PREVIOUS_FILES: &'static [&'static str];
    /// The parsed schema with its header, compiled once.
    fn compiled() -> &'static CompiledSchema;
    /// The earlier versions, compiled once.
    fn previous() -> &'static [CompiledSchema];
}

macro_rules! contract {
    ($ty:ty, $event:literal, $file:literal $(, previous: $($old:literal),+)?) => {
        impl Contract for $ty {
            const EVENT_TYPE: &'static str = $event;
            const SCHEMA_JSON: &'static str = include_str!(concat!("../avro/", $file));
            const PREVIOUS_SCHEMA_JSON: &'static [&'static str] =
                &[$($(include_str!(concat!("../avro/previous/", $old))),+)?];
            const PREVIOUS_FILES: &'static [&'static str] = &[$($($old),+)?];
            fn compiled() -> &'static CompiledSchema {
                static COMPILED: LazyLock<CompiledSchema> =
                    LazyLock::new(|| CompiledSchema::compile(<$ty as Contract>::SCHEMA_JSON));
                &COMPILED
            }
            fn previous() -> &'static [CompiledSchema] {
                static PREVIOUS: LazyLock<Vec<CompiledSchema>> = LazyLock::new(|| {
                    <$ty as Contract>::PREVIOUS_SCHEMA_JSON
                        .iter()
                        .map(|json| CompiledSchema::compile(json))
                        .collect()
                });
                &PREVIOUS
            }
        }
    };
}

// A schema is changed only with its released text kept: the version that was
// current moves to `avro/previous/` and is named here, and every released
// version has a line in `avro/released.txt` (checked by `tests/evolution.rs`).
contract!(
    PageRequested,
    "page.requested",
    "page_requested.avsc",
    previous: "page_requested.v1.avsc"
);
contract!(UserResolved, "user.resolved", "user_resolved.avsc");
contract!(HistoryFetched, "history.fetched", "history_fetched.avsc");
contract!(AdsSelected, "ads.selected", "ads_selected.avsc");
contract!(
    PageCompleted,
    "page.completed",
    "page_completed.avsc",
    previous: "page_completed.v1.avsc", "page_completed.v2.avsc"
);
contract!(
    CallbackReported,
    "callback.reported",
    "callback_reported.avsc"
);
contract!(Customer, "customer", "customer.avsc");
contract!(Credential, "credential", "credential.avsc");
contract!(Product, "product", "product.avsc");
contract!(Order, "order", "order.avsc");
contract!(Session, "session", "session.avsc");
contract!(PagesPerMinute, "pages_per_minute", "pages_per_minute.avsc");

/// One bundled contract, for tools and tests that walk all of them.
#[derive(Debug, Clone, Copy)]
pub struct ContractInfo {
    pub event_type: &'static str,
    pub file: &'static str,
    pub schema_json: &'static str,
    /// `C3 01` + fingerprint: the first ten bytes of every record of this type.
    pub header: [u8; HEADER_LEN],
    /// Earlier versions of the schema, oldest first.
    pub previous_schema_json: &'static [&'static str],
    /// Their file names under `avro/previous/`, in the same order.
    pub previous_files: &'static [&'static str],
}

/// Every bundled contract.
pub fn contracts() -> Vec<ContractInfo> {
    macro_rules! row {
        ($ty:ty, $file:literal) => {
            ContractInfo {
                event_type: <$ty as Contract>::EVENT_TYPE,
                file: $file,
                schema_json: <$ty as Contract>::SCHEMA_JSON,
                header: *<$ty as Contract>::compiled().header(),
                previous_schema_json: <$ty as Contract>::PREVIOUS_SCHEMA_JSON,
                previous_files: <$ty as Contract>::PREVIOUS_FILES,
            }
        };
    }
    vec![
        row!(PageRequested, "page_requested.avsc"),
        row!(UserResolved, "user_resolved.avsc"),
        row!(HistoryFetched, "history_fetched.avsc"),
        row!(AdsSelected, "ads_selected.avsc"),
        row!(PageCompleted, "page_completed.avsc"),
        row!(Customer, "customer.avsc"),
        row!(Credential, "credential.avsc"),
        row!(Product, "product.avsc"),
        row!(Order, "order.avsc"),
        row!(Session, "session.avsc"),
        row!(CallbackReported, "callback_reported.avsc"),
        row!(PagesPerMinute, "pages_per_minute.avsc"),
    ]
}

/// Encodes an event as a single-object Avro record.
///
/// Panics only if a Rust type disagrees with its own bundled schema, which
/// the round-trip tests rule out.
pub fn encode<T: Contract>(event: &T) -> Vec<u8> {
    let compiled = T::compiled();
    let datum = GenericDatumWriter::builder(&compiled.schema)
        .build()
        .and_then(|writer| writer.write_ser_to_vec(event))
        .unwrap_or_else(|e| panic!("{} does not fit its schema: {e}", T::EVENT_TYPE));
    let mut out = Vec::with_capacity(HEADER_LEN + datum.len());
    out.extend_from_slice(&compiled.header);
    out.extend_from_slice(&datum);
    out
}

/// Decodes a single-object Avro record written with `T`'s schema.
pub fn decode<T: Contract>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() > MAX_ENCODED_BYTES {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            max: MAX_ENCODED_BYTES,
        });
    }
    // A hostile length field cannot make the decoder allocate more than this.
    apache_avro::util::max_allocation_bytes(MAX_ALLOCATION_BYTES);
    let compiled = T::compiled();
    if bytes.len() < HEADER_LEN || bytes[..2] != SINGLE_OBJECT_MAGIC {
        return Err(DecodeError::NotSingleObject);
    }
    // The writer's schema: the current one, or an earlier version.
    let Some(writer) = std::iter::once(compiled)
        .chain(T::previous())
        .find(|c| bytes[..HEADER_LEN] == c.header)
    else {
        return Err(DecodeError::UnknownSchema {
            event_type: T::EVENT_TYPE,
            found: hex(&bytes[2..HEADER_LEN]),
            expected: hex(&compiled.header[2..]),
        });
    };
    let datum_error = |source| DecodeError::Datum {
        event_type: T::EVENT_TYPE,
        source: Box::new(source),
    };
    let mut datum = &bytes[HEADER_LEN..];
    // Read with the writer's schema into the current type: fields it lacks
    // take their serde defaults, which match the .avsc defaults.
    let event = GenericDatumReader::builder(&writer.schema)
        .build()
        .and_then(|reader| reader.read_deser::<T>(&mut datum))
        .map_err(datum_error)?;
    if !datum.is_empty() {
        return Err(DecodeError::TrailingBytes {
            event_type: T::EVENT_TYPE,
            count: datum.len(),
        });
    }
    Ok(event)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `bytes` were written with `T`'s schema, current or earlier.
pub(crate) fn written_with<T: Contract>(bytes: &[u8]) -> bool {
    bytes.len() >= HEADER_LEN
        && std::iter::once(T::compiled())
            .chain(T::previous())
            .any(|c| bytes[..HEADER_LEN] == c.header)
}

/// Why `bytes` were written with none of the schemas of `expected`.
pub(crate) fn not_a_member(bytes: &[u8], expected: &'static str) -> DecodeError {
    if bytes.len() > MAX_ENCODED_BYTES {
        DecodeError::TooLarge {
            size: bytes.len(),
            max: MAX_ENCODED_BYTES,
        }
    } else if bytes.len() < HEADER_LEN || bytes[..2] != SINGLE_OBJECT_MAGIC {
        DecodeError::NotSingleObject
    } else {
        DecodeError::NotAMember {
            expected,
            found: hex(&bytes[2..HEADER_LEN]),
        }
    }
}

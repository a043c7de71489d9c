//! `storefront schemas`: every bundled schema, current and earlier, with the
//! fingerprint that opens each of its records.

use apache_avro::Schema;
use serde::Serialize;
use storefront_schemas::contracts;

use crate::decoded::fingerprint;

/// One version of one contract's schema.
#[derive(Debug, Clone, Serialize)]
pub struct SchemaVersion {
    pub event_type: &'static str,
    /// `current`, or `previous-N` counting from the oldest (1).
    pub version: String,
    /// CRC-64-AVRO (Rabin) of the Parsing Canonical Form, as the 8
    /// little-endian bytes that follow `C3 01` in a record, in hex.
    pub fingerprint: String,
    /// The same fingerprint as Java's `SchemaNormalization.parsingFingerprint64` gives it.
    pub fingerprint_i64: i64,
    pub file: String,
    pub schema: serde_json::Value,
}

/// Every version of every bundled schema, each contract's current first.
pub fn versions() -> Vec<SchemaVersion> {
    let mut out = Vec::new();
    for contract in contracts() {
        let mut version = |version: String, file: String, json: &str| {
            let bytes = fingerprint(&Schema::parse_str(json).expect("bundled schemas parse"));
            out.push(SchemaVersion {
                event_type: contract.event_type,
                version,
                fingerprint: bytes.iter().map(|b| format!("{b:02x}")).collect(),
                fingerprint_i64: i64::from_le_bytes(bytes),
                file,
                schema: serde_json::from_str(json).expect("bundled schemas are JSON"),
            });
        };
        version(
            "current".into(),
            format!("schemas/avro/{}", contract.file),
            contract.schema_json,
        );
        let previous = contract
            .previous_files
            .iter()
            .zip(contract.previous_schema_json);
        for (n, (file, json)) in previous.enumerate() {
            version(
                format!("previous-{}", n + 1),
                format!("schemas/avro/previous/{file}"),
                json,
            );
        }
    }
    out
}

/// A table: event type, version, fingerprint, file.
pub fn render(versions: &[SchemaVersion], with_text: bool) -> String {
    let mut out = format!(
        "{:<18}  {:<11}  {:<16}  {:<20}  {}\n",
        "EVENT TYPE", "VERSION", "FINGERPRINT", "AS INT64", "FILE"
    );
    for v in versions {
        out.push_str(&format!(
            "{:<18}  {:<11}  {:<16}  {:<20}  {}\n",
            v.event_type, v.version, v.fingerprint, v.fingerprint_i64, v.file
        ));
        if with_text {
            let text = serde_json::to_string_pretty(&v.schema).unwrap_or_default();
            for line in text.lines() {
                out.push_str(&format!("    {line}\n"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_current_fingerprint_is_the_header_its_records_carry() {
        let all = versions();
        for contract in contracts() {
            let current = all
                .iter()
                .find(|v| v.event_type == contract.event_type && v.version == "current")
                .unwrap();
            let header: String = contract.header[2..]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(current.fingerprint, header, "{}", contract.event_type);
        }
        assert!(all.iter().any(|v| v.version == "previous-2"));
    }
}

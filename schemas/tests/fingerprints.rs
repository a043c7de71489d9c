//! Our single-object headers must match what an outside Avro implementation
//! computes, or Java and Python consumers cannot tell which schema wrote a
//! record. fastavro (Python) is the outside implementation: it computes each
//! schema's Parsing Canonical Form, the fingerprint is checked against the
//! specification's reference algorithm, and fastavro decodes records we wrote.
//!
//! Needs a Python with fastavro: `STOREFRONT_PYTHON`, else the venv that
//! `scripts/prepare.sh` makes, else `python3`.
//!
//! Java's Avro, the specification's reference implementation, is the second:
//! `java -jar examples/analytics-java/target/storefront-analytics.jar
//! fingerprints` prints `SchemaNormalization.parsingFingerprint64` of every
//! `.avsc` file (built with Maven from `tests/src/java.rs`).

use storefront_schemas::*;

const CHECK: &str = r#"
import io, json, sys
from fastavro import parse_schema, schemaless_reader
from fastavro.schema import to_parsing_canonical_form, fingerprint

# CRC-64-AVRO exactly as the Avro specification's reference code computes it.
EMPTY = 0xC15D213AA4D7A795
TABLE = []
for i in range(256):
    fp = i
    for _ in range(8):
        fp = (fp >> 1) ^ (EMPTY & -(fp & 1))
    TABLE.append(fp)
def crc64_avro(data):
    fp = EMPTY
    for b in data:
        fp = (fp >> 8) ^ TABLE[(fp ^ b) & 0xFF]
    return fp

for line in sys.stdin:
    name, avsc, record_hex = line.rstrip("\n").split("\t")
    schema = json.loads(avsc)
    canonical = to_parsing_canonical_form(schema)
    fp = crc64_avro(canonical.encode())
    # fastavro agrees with the reference code (it prints the little-endian bytes).
    assert fingerprint(canonical, "CRC-64-AVRO") == fp.to_bytes(8, "little").hex(), name
    header = b"\xc3\x01" + fp.to_bytes(8, "little")
    decoded = ""
    if record_hex:
        record = bytes.fromhex(record_hex)
        assert record[:10] == header, (name, record[:10].hex(), header.hex())
        decoded = json.dumps(schemaless_reader(io.BytesIO(record[10:]), parse_schema(schema)), sort_keys=True)
    print(name, header.hex(), decoded, sep="\t")
"#;

#[path = "../../tests/src/python.rs"]
#[allow(unreachable_pub)]
mod python;

#[path = "../../tests/src/java.rs"]
#[allow(unreachable_pub, dead_code)]
mod java;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn fastavro_computes_the_same_fingerprint_and_decodes_our_records() {
    let sample = Product {
        product_id: "p-0001".into(),
        name: "Kettle".into(),
        category: "kitchen".into(),
        price_cents: 2599,
    };
    let session = Session {
        session_id: SessionId::parse("0190a6c4-0000-7000-8000-000000000000").unwrap(),
        customer_id: "c-000001".into(),
        opened_at_ms: 1_700_000_000_000,
        expires_at_ms: 1_700_086_400_000,
    };
    let mut input = String::new();
    for contract in contracts() {
        let compact: serde_json::Value = serde_json::from_str(contract.schema_json).unwrap();
        let event_type = contract.event_type;
        let record = match event_type {
            "product" => hex(&encode(&sample)),
            "session" => hex(&encode(&session)),
            _ => String::new(),
        };
        input.push_str(&format!("{event_type}\t{compact}\t{record}\n"));
    }

    let output = python::run_script(CHECK, &[], input.as_bytes());
    assert!(
        output.status.success(),
        "fastavro check failed (is fastavro installed? run scripts/prepare.sh):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let stdout = String::from_utf8(output.stdout).unwrap();
    let theirs: Vec<_> = stdout
        .lines()
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .collect();
    assert_eq!(theirs.len(), contracts().len());
    for (row, contract) in theirs.iter().zip(contracts()) {
        assert_eq!(row[0], contract.event_type);
        assert_eq!(
            row[1],
            hex(&contract.header),
            "{} fingerprint differs from fastavro's",
            row[0]
        );
    }
    let product_row = theirs.iter().find(|r| r[0] == "product").unwrap();
    let decoded: serde_json::Value = serde_json::from_str(product_row[2]).unwrap();
    assert_eq!(decoded["name"], "Kettle");
    assert_eq!(decoded["price_cents"], 2599);
}

/// Every released version (`avro/released.txt`): file and fingerprint.
fn released() -> Vec<(String, String)> {
    include_str!("../avro/released.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            (fields[1].to_owned(), fields[2].to_owned())
        })
        .collect()
}

#[test]
fn java_parsing_fingerprint64_is_the_header_of_every_released_schema() {
    let schemas = concat!(env!("CARGO_MANIFEST_DIR"), "/avro");
    let output = java::analytics(&["fingerprints", schemas])
        .output()
        .expect("java runs (scripts/prepare.sh installs a JDK)");
    assert!(
        output.status.success(),
        "java fingerprints failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    // file -> (parsingFingerprint64 as a signed long, the 8 header bytes).
    let java: std::collections::BTreeMap<&str, (i64, &str)> = stdout
        .lines()
        .map(|line| {
            let [file, long, bytes] = line.split('\t').collect::<Vec<_>>()[..] else {
                panic!("not `file long hex`: {line}");
            };
            (file, (long.parse().unwrap(), bytes))
        })
        .collect();

    let released = released();
    assert_eq!(
        java.len(),
        released.len(),
        "every .avsc file is a released version: {java:?}"
    );
    for (file, fingerprint) in &released {
        let (long, bytes) = java
            .get(file.as_str())
            .unwrap_or_else(|| panic!("Java did not read {file}"));
        assert_eq!(
            bytes, fingerprint,
            "{file}: Java's header differs from released.txt"
        );
        let ours: [u8; 8] = (0..8)
            .map(|i| u8::from_str_radix(&fingerprint[2 * i..2 * i + 2], 16).unwrap())
            .collect::<Vec<_>>()
            .try_into()
            .unwrap();
        assert_eq!(*long, i64::from_le_bytes(ours), "{file}: as Java's long");
    }
    for contract in contracts() {
        let (_, bytes) = java[contract.file];
        assert_eq!(bytes, hex(&contract.header[2..]), "{}", contract.event_type);
    }
}

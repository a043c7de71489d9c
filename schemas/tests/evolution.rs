//! Schemas change compatibly: each earlier version can read records of the
//! current one and the other way round, and records written with an earlier
//! version still decode (fields added since take their defaults).

use apache_avro::{rabin::Rabin, schema_compatibility::SchemaCompatibility, Schema};
use storefront_schemas::*;

#[test]
fn every_schema_reads_and_is_read_by_its_earlier_versions() {
    let mut checked = 0;
    for contract in contracts() {
        let current = Schema::parse_str(contract.schema_json).unwrap();
        for previous in contract.previous_schema_json {
            let previous = Schema::parse_str(previous).unwrap();
            SchemaCompatibility::can_read(&previous, &current).unwrap_or_else(|e| {
                panic!(
                    "{}: the current schema cannot read the earlier one: {e}",
                    contract.file
                )
            });
            SchemaCompatibility::can_read(&current, &previous).unwrap_or_else(|e| {
                panic!(
                    "{}: the earlier schema cannot read the current one: {e}",
                    contract.file
                )
            });
            checked += 1;
        }
    }
    assert!(
        checked >= 3,
        "page_completed and page_requested have earlier versions"
    );
}

#[test]
fn a_page_written_before_milestones_existed_still_decodes() {
    let info = contracts()
        .into_iter()
        .find(|c| c.event_type == "page.completed")
        .unwrap();
    let v1 = Schema::parse_str(info.previous_schema_json[0]).unwrap();
    let page = PageCompleted {
        context: RequestContext {
            request_id: "r".into(),
            session_id: "s".into(),
            requested_at_ms: 1,
            deadline_ms: 2,
            reply_topic: "page.completed".into(),
            reply_partition: 0,
        },
        status: PageStatus::Partial,
        missing: vec!["ads".into()],
        rejection: None,
        user: Some(UserProfile {
            customer_id: "c".into(),
            name: "Dana".into(),
            city: "Lyon".into(),
        }),
        recent_purchases: vec![],
        ads: vec![],
        milestones: vec![Milestone {
            stage: "completed".into(),
            service: "aggregator".into(),
            at_ms: 3,
        }],
        callback_url: None,
    };
    // What an aggregator of the first release wrote: the v1 fields only.
    let value = apache_avro::to_value(&page).unwrap().resolve(&v1).unwrap();
    let mut bytes = SINGLE_OBJECT_MAGIC.to_vec();
    bytes.extend_from_slice(&v1.fingerprint::<Rabin>().bytes);
    let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&v1)
        .build()
        .unwrap();
    bytes.extend(writer.write_value_to_vec(value).unwrap());
    assert_ne!(bytes[..10], info.header, "v1 has its own fingerprint");

    let decoded = decode::<PageCompleted>(&bytes).unwrap();
    assert_eq!(
        decoded,
        PageCompleted {
            milestones: vec![],
            ..page
        }
    );
}

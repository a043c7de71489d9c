//! Schemas change compatibly, and no released version is ever lost.
//!
//! `avro/released.txt` lists every version of every schema that has landed on
//! main. Against the schemas the code holds (each contract's current `.avsc`
//! and the versions kept in `avro/previous/`), the checks here require that
//! (a) every listed version is one the code still reads, so a released schema
//! cannot be edited without keeping its text in `previous/`; (b) each listed
//! version and the current one read each other's records by Avro's rules; and
//! (c) every version the code holds, the current one included, is listed. The
//! checks are functions of in-memory inputs, so tests below also show them
//! failing on a breaking change and on an edit that kept nothing.
//!
//! Then the records themselves: a new consumer reads records written with each
//! earlier version, and an old consumer (apache-avro, and fastavro for an
//! outside implementation) reads records written with the current one.

use std::iter;

use apache_avro::{
    error::CompatibilityError,
    rabin::Rabin,
    reader::datum::GenericDatumReader,
    schema::RecordSchema,
    schema_compatibility::{Compatibility, SchemaCompatibility},
    writer::datum::GenericDatumWriter,
    Schema,
};
use serde::Serialize;
use serde_json::{json, Value as Json};
use storefront_schemas::*;

#[path = "../../tests/src/python.rs"]
#[allow(unreachable_pub)]
mod python;

const RELEASED: &str = include_str!("../avro/released.txt");

/// One line of `released.txt`.
#[derive(Debug, Clone)]
struct Released {
    event_type: String,
    /// Under `avro/`, e.g. `previous/page_requested.v1.avsc`.
    file: String,
    fingerprint: String,
}

/// One schema version the code reads.
#[derive(Debug, Clone)]
struct Version {
    /// Under `avro/`, as in `released.txt`.
    file: String,
    json: String,
}

impl Version {
    fn fingerprint(&self) -> String {
        fingerprint(&parse(&self.json))
    }
}

/// A contract's schema versions as the code holds them.
#[derive(Debug, Clone)]
struct Held {
    event_type: String,
    current: Version,
    previous: Vec<Version>,
}

impl Held {
    fn versions(&self) -> impl Iterator<Item = &Version> {
        iter::once(&self.current).chain(&self.previous)
    }
}

/// What the `contract!` macro bundles.
fn held() -> Vec<Held> {
    contracts()
        .into_iter()
        .map(|c| Held {
            event_type: c.event_type.into(),
            current: Version {
                file: c.file.into(),
                json: c.schema_json.into(),
            },
            previous: c
                .previous_files
                .iter()
                .zip(c.previous_schema_json)
                .map(|(file, json)| Version {
                    file: format!("previous/{file}"),
                    json: (*json).into(),
                })
                .collect(),
        })
        .collect()
}

fn parse(json: &str) -> Schema {
    Schema::parse_str(json).unwrap_or_else(|e| panic!("not a valid Avro schema: {e}"))
}

/// The eight bytes after `C3 01` in a single-object record, in hex.
fn fingerprint(schema: &Schema) -> String {
    hex(&schema.fingerprint::<Rabin>().bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_released(text: &str) -> Result<Vec<Released>, String> {
    let mut released: Vec<Released> = Vec::new();
    for (number, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let [event_type, file, fingerprint] = line.split_whitespace().collect::<Vec<_>>()[..]
        else {
            return Err(format!(
                "line {number}: want `event-type file fingerprint`, got `{line}`"
            ));
        };
        let is_hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
        if fingerprint.len() != 16 || !fingerprint.chars().all(is_hex) {
            return Err(format!(
                "line {number}: `{fingerprint}` is not 16 lower-case hex digits"
            ));
        }
        if let Some(earlier) = released.iter().find(|r| r.fingerprint == fingerprint) {
            return Err(format!(
                "line {number}: {fingerprint} is already listed for {} ({})",
                earlier.event_type, earlier.file
            ));
        }
        released.push(Released {
            event_type: event_type.into(),
            file: file.into(),
            fingerprint: fingerprint.into(),
        });
    }
    Ok(released)
}

/// Check (a): every released version is one the code still reads.
fn unreadable_released(released: &[Released], held: &[Held]) -> Vec<String> {
    let mut problems = Vec::new();
    for line in released {
        let Released {
            event_type,
            file,
            fingerprint,
        } = line;
        let Some(contract) = held.iter().find(|h| &h.event_type == event_type) else {
            problems.push(format!(
                "released.txt lists {event_type} {file} {fingerprint}, but no contract has \
                 event type {event_type}: records of it were released, so keep its schema"
            ));
            continue;
        };
        let versions: Vec<_> = contract.versions().collect();
        if let Some(version) = versions.iter().find(|v| &v.fingerprint() == fingerprint) {
            if &version.file != file {
                problems.push(format!(
                    "released.txt lists {event_type} {fingerprint} in {file}, but that version \
                     is {}: change the line's file to {}",
                    version.file, version.file
                ));
            }
            continue;
        }
        let stem = contract.current.file.trim_end_matches(".avsc");
        let kept = format!("{stem}.v{}.avsc", contract.previous.len() + 1);
        let how = if file == &contract.current.file {
            format!(
                "{file} was changed after that version was released. Keep the released text:\n\
                 \x20 1. copy it (e.g. `git show HEAD:schemas/avro/{file}`) to \
                 schemas/avro/previous/{kept};\n\
                 \x20 2. add \"{kept}\" to `previous:` in the contract! macro of {event_type} \
                 in schemas/src/codec.rs;\n\
                 \x20 3. in schemas/avro/released.txt change this line's file to previous/{kept} \
                 and add a line for the new version: `{event_type} {file} {}`.",
                contract.current.fingerprint()
            )
        } else if versions.iter().any(|v| &v.file == file) {
            format!(
                "{file} was changed, but a released version's text never changes: restore it \
                 (e.g. `git show HEAD:schemas/avro/{file}`)"
            )
        } else {
            format!(
                "no schema the code holds is {file}: restore its text to schemas/avro/{file} \
                 and name it in `previous:` in the contract! macro of {event_type} in \
                 schemas/src/codec.rs"
            )
        };
        problems.push(format!(
            "{event_type}: released version {fingerprint} ({file}) can no longer be read: {how}"
        ));
    }
    problems
}

/// Check (c): every version the code holds is listed, so (a) and (b) see them all.
fn unlisted_versions(released: &[Released], held: &[Held]) -> Vec<String> {
    let mut problems = Vec::new();
    for contract in held {
        let event_type = &contract.event_type;
        let mut seen: Vec<(String, &str)> = Vec::new();
        for version in contract.versions() {
            let fingerprint = version.fingerprint();
            if let Some((_, twin)) = seen.iter().find(|(f, _)| *f == fingerprint) {
                problems.push(format!(
                    "{event_type}: {} and {twin} are the same schema (fingerprint {fingerprint}): \
                     keep one",
                    version.file
                ));
            }
            seen.push((fingerprint.clone(), &version.file));
            if released.iter().any(|r| r.fingerprint == fingerprint) {
                continue;
            }
            let line = format!("`{event_type} {} {fingerprint}`", version.file);
            problems.push(if version.file == contract.current.file {
                format!(
                    "{event_type}: the current schema {} ({fingerprint}) is not in \
                     schemas/avro/released.txt; a new version gets its line in the change that \
                     makes it: add {line}",
                    version.file
                )
            } else {
                format!(
                    "{event_type}: {} ({fingerprint}) is kept but not in \
                     schemas/avro/released.txt: add {line} if it was released, or else delete \
                     the file and its name in the contract! macro",
                    version.file
                )
            });
        }
    }
    problems
}

/// Check (b): each released version and the current one read each other's records.
fn breaking_changes(released: &[Released], held: &[Held]) -> Vec<String> {
    let mut problems = Vec::new();
    for contract in held {
        let current = parse(&contract.current.json);
        for line in released
            .iter()
            .filter(|r| r.event_type == contract.event_type)
        {
            // A listed version the code no longer holds is reported by (a).
            let Some(version) = contract
                .previous
                .iter()
                .find(|v| v.fingerprint() == line.fingerprint)
            else {
                continue;
            };
            for problem in compatibility_problems(&parse(&version.json), &current) {
                problems.push(format!(
                    "{}: {} breaks compatibility with the released {}: {problem}",
                    contract.event_type, contract.current.file, version.file
                ));
            }
        }
    }
    problems
}

/// What stops `old` and `new` from reading each other's records, by Avro's
/// resolution rules (apache-avro's `SchemaCompatibility`): backward, a
/// consumer holding `new` reads records written with `old`; forward, a
/// consumer holding `old` reads records written with `new`. Partial
/// compatibility counts as breaking: records with an enum symbol or a union
/// branch the reader lacks would fail to decode.
fn compatibility_problems(old: &Schema, new: &Schema) -> Vec<String> {
    [
        ("backward (new reads old)", old, new),
        ("forward (old reads new)", new, old),
    ]
    .into_iter()
    .filter_map(
        |(direction, writer, reader)| match SchemaCompatibility::can_read(writer, reader) {
            Ok(Compatibility::Full) => None,
            Ok(Compatibility::Partial) => Some(format!(
                "{direction}: the writer has an enum symbol or a union branch that the reader \
                 lacks, so records that use it cannot be read"
            )),
            Err(e) => Some(format!("{direction}: {}", explain(&e))),
        },
    )
    .collect()
}

/// The dotted path of the field that broke, and why.
fn explain(error: &CompatibilityError) -> String {
    let mut path = Vec::new();
    let mut error = error;
    while let CompatibilityError::FieldTypeMismatch(field, inner) = error {
        path.push(field.as_str());
        error = inner;
    }
    // Schema types print as Debug dumps: keep the kind (`Int`, `Record`, ...).
    let kind = |debug: &str| debug.split(['(', ' ', '{']).next().unwrap_or("").to_owned();
    let reason = match error {
        CompatibilityError::MissingDefaultValue(field) => {
            path.push(field);
            "the reader has it, the writer does not, and it has no default".to_owned()
        }
        CompatibilityError::WrongType {
            writer_schema_type,
            reader_schema_type,
        } => format!(
            "written as {} but read as {}",
            kind(writer_schema_type),
            kind(reader_schema_type)
        ),
        other => other.to_string(),
    };
    if path.is_empty() {
        reason
    } else {
        format!("field `{}`: {reason}", path.join("."))
    }
}

fn every_problem(released: &[Released], held: &[Held]) -> Vec<String> {
    let mut problems = unreadable_released(released, held);
    problems.extend(breaking_changes(released, held));
    problems.extend(unlisted_versions(released, held));
    problems
}

fn released() -> Vec<Released> {
    parse_released(RELEASED).unwrap_or_else(|e| panic!("schemas/avro/released.txt: {e}"))
}

#[test]
fn every_released_schema_is_still_read_and_compatible_with_the_current_one_both_ways() {
    let released = released();
    let held = held();
    for (contract, held) in contracts().iter().zip(&held) {
        // The list's fingerprints are the single-object header's.
        assert_eq!(held.current.fingerprint(), hex(&contract.header[2..]));
    }
    let problems = every_problem(&released, &held);
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n\n"));
    assert!(
        held.iter().map(|h| h.previous.len()).sum::<usize>() >= 3,
        "page_completed and page_requested have earlier versions"
    );
}

/// `json` with `change` applied to its parsed form.
fn changed(json: &str, change: impl FnOnce(&mut Json)) -> String {
    let mut schema: Json = serde_json::from_str(json).unwrap();
    change(&mut schema);
    schema.to_string()
}

fn field<'a>(record: &'a mut Json, name: &str) -> &'a mut Json {
    record["fields"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no field {name}"))
}

fn held_contract<'a>(held: &'a mut [Held], event_type: &str) -> &'a mut Held {
    held.iter_mut()
        .find(|h| h.event_type == event_type)
        .unwrap()
}

fn add_field(field: Json) -> impl FnOnce(&mut Json) {
    move |schema| schema["fields"].as_array_mut().unwrap().push(field)
}

#[test]
fn breaking_changes_to_a_released_schema_are_reported_with_the_field_that_broke() {
    let requested = contract("page.requested").schema_json;
    let completed = contract("page.completed").schema_json;
    let completed_v1 = contract("page.completed").previous_schema_json[0];
    // (change, released version, changed current version, what is reported)
    let cases: [(&str, &str, String, &[&str]); 5] = [
        (
            "a field added without a default",
            requested,
            changed(
                requested,
                add_field(json!({"name": "tenant", "type": "string"})),
            ),
            &["backward (new reads old): field `tenant`: the reader has it"],
        ),
        (
            "a field's type changed from int to string",
            requested,
            changed(requested, |s| {
                let context = &mut field(s, "context")["type"];
                field(context, "reply_partition")["type"] = json!("string");
            }),
            &[
                "backward (new reads old): field `context.reply_partition`: \
                 written as Int but read as String",
                "forward (old reads new): field `context.reply_partition`: \
                 written as String but read as Int",
            ],
        ),
        (
            "a field without a default removed",
            requested,
            changed(requested, |s| {
                let context = field(s, "context")["type"]["fields"]
                    .as_array_mut()
                    .unwrap();
                context.retain(|f| f["name"] != "reply_topic");
            }),
            &["forward (old reads new): field `context.reply_topic`: the reader has it"],
        ),
        (
            "the default removed from a field that an earlier version lacks",
            completed_v1,
            changed(completed, |s| {
                field(s, "milestones")
                    .as_object_mut()
                    .unwrap()
                    .remove("default");
            }),
            &["backward (new reads old): field `milestones`: the reader has it"],
        ),
        (
            "an enum symbol added",
            completed,
            changed(completed, |s| {
                let symbols = &mut field(s, "status")["type"]["symbols"];
                symbols.as_array_mut().unwrap().push(json!("cached"));
            }),
            &["forward (old reads new): the writer has an enum symbol"],
        ),
    ];
    for (change, released, new, expected) in cases {
        let problems = compatibility_problems(&parse(released), &parse(&new));
        assert_eq!(problems.len(), expected.len(), "{change}: {problems:#?}");
        for (problem, expected) in problems.iter().zip(expected) {
            assert!(
                problem.starts_with(expected),
                "{change}: got {problem:?}, want {expected:?}..."
            );
        }
    }

    // A compatible change passes: a new field with a default.
    let compatible = changed(
        requested,
        add_field(json!({"name": "locale", "type": "string", "default": "en"})),
    );
    assert_eq!(
        compatibility_problems(&parse(requested), &parse(&compatible)),
        Vec::<String>::new()
    );
}

#[test]
fn editing_a_released_schema_without_keeping_its_text_fails_and_says_what_to_do() {
    let mut released = released();
    let mut held = held();
    let page = held_contract(&mut held, "page.requested");
    let released_text = page.current.json.clone();
    let released_fingerprint = page.current.fingerprint();
    // Even a compatible edit must keep the released text.
    page.current.json = changed(
        &released_text,
        add_field(json!({"name": "locale", "type": "string", "default": "en"})),
    );
    let new_fingerprint = page.current.fingerprint();

    let unreadable = unreadable_released(&released, &held);
    assert_eq!(unreadable.len(), 1, "{unreadable:#?}");
    for what_to_do in [
        released_fingerprint.as_str(),
        "can no longer be read",
        "copy it (e.g. `git show HEAD:schemas/avro/page_requested.avsc`) to \
         schemas/avro/previous/page_requested.v2.avsc",
        "add \"page_requested.v2.avsc\" to `previous:` in the contract! macro of page.requested",
        "change this line's file to previous/page_requested.v2.avsc",
        &format!("`page.requested page_requested.avsc {new_fingerprint}`"),
    ] {
        assert!(unreadable[0].contains(what_to_do), "{}", unreadable[0]);
    }
    let unlisted = unlisted_versions(&released, &held);
    assert_eq!(unlisted.len(), 1, "{unlisted:#?}");
    assert!(unlisted[0].contains(&new_fingerprint), "{}", unlisted[0]);

    // Doing what the messages say passes.
    let page = held_contract(&mut held, "page.requested");
    page.previous.push(Version {
        file: "previous/page_requested.v2.avsc".into(),
        json: released_text,
    });
    let line = released
        .iter_mut()
        .find(|r| r.fingerprint == released_fingerprint)
        .unwrap();
    line.file = "previous/page_requested.v2.avsc".into();
    released.push(Released {
        event_type: "page.requested".into(),
        file: "page_requested.avsc".into(),
        fingerprint: new_fingerprint,
    });
    assert_eq!(every_problem(&released, &held), Vec::<String>::new());

    // Kept and listed, a breaking edit still fails, on (b).
    let page = held_contract(&mut held, "page.requested");
    page.current.json = changed(
        &page.current.json,
        add_field(json!({"name": "tenant", "type": "string"})),
    );
    released.last_mut().unwrap().fingerprint = page.current.fingerprint();
    let problems = every_problem(&released, &held);
    assert_eq!(problems.len(), 2, "one per earlier version: {problems:#?}");
    assert!(problems.iter().all(|p| p.contains("field `tenant`")));
}

#[test]
fn a_malformed_or_duplicated_line_in_the_released_list_is_refused() {
    for (text, error) in [
        ("page.requested page_requested.avsc", "line 1: want"),
        ("page.requested page_requested.avsc 59C6DD445BC25B57", "16 lower-case hex"),
        (
            "# header\nproduct product.avsc 1e08390c273e284f\nproduct product.avsc 1e08390c273e284f",
            "line 3: 1e08390c273e284f is already listed for product",
        ),
    ] {
        let got = parse_released(text).unwrap_err();
        assert!(got.contains(error), "{got}");
    }
}

// Records across versions.

fn contract(event_type: &str) -> ContractInfo {
    contracts()
        .into_iter()
        .find(|c| c.event_type == event_type)
        .unwrap()
}

/// Every field set (the mix of login and logout is not a real request).
fn request() -> PageRequested {
    PageRequested {
        context: context(),
        login: Some(LoginAttempt {
            username: "dana".into(),
            sealed_password: vec![0, 1, 254, 255],
        }),
        logout: true,
        callback_url: Some("https://example.test/hook".into()),
        idempotency_key: Some("key-1".into()),
    }
}

fn context() -> RequestContext {
    RequestContext {
        request_id: RequestId::parse("0190a6c4-0000-7000-8000-000000000001").unwrap(),
        session_id: SessionId::parse("0190a6c4-0000-7000-8000-000000000002").unwrap(),
        requested_at_ms: 1,
        deadline_ms: 2,
        reply_topic: "page.completed".into(),
        reply_partition: 3,
    }
}

/// Every field set.
fn page() -> PageCompleted {
    PageCompleted {
        context: context(),
        status: PageStatus::Partial,
        missing: vec!["ads".into()],
        rejection: None,
        user: Some(UserProfile {
            customer_id: "c".into(),
            name: "Dana".into(),
            city: "Lyon".into(),
        }),
        recent_purchases: vec![Purchase {
            product_id: "p-1".into(),
            name: "Kettle".into(),
            category: "kitchen".into(),
            price_cents: 2599,
            purchased_at_ms: 4,
        }],
        ads: vec![Ad {
            product_id: "p-2".into(),
            name: "Teapot".into(),
            price_cents: 1999,
            reason: "bought with Kettle".into(),
        }],
        milestones: vec![Milestone {
            stage: "completed".into(),
            service: "aggregator".into(),
            at_ms: 3,
        }],
        callback_url: Some("https://example.test/hook".into()),
    }
}

/// A single-object record of `event` as a producer holding `schema` writes
/// it: the fields `schema` lacks are not written.
fn written_with(schema: &Schema, event: &impl Serialize) -> Vec<u8> {
    let value = apache_avro::to_value(event)
        .unwrap()
        .resolve(schema)
        .unwrap();
    let mut bytes = SINGLE_OBJECT_MAGIC.to_vec();
    bytes.extend_from_slice(&schema.fingerprint::<Rabin>().bytes);
    let writer = GenericDatumWriter::builder(schema).build().unwrap();
    bytes.extend(writer.write_value_to_vec(value).unwrap());
    bytes
}

/// A consumer on the current schema (our `decode`) reads a record that a
/// producer on each earlier version wrote as the `expected` event: `event`
/// less the fields that version lacks, which take their defaults.
fn assert_new_consumer_reads_old_records<T>(event: &T, expected: &[(&str, T)])
where
    T: Contract + PartialEq + std::fmt::Debug,
{
    let contract = contract(T::EVENT_TYPE);
    let files: Vec<_> = expected.iter().map(|(file, _)| *file).collect();
    assert_eq!(
        contract.previous_files, files,
        "every kept version has its case"
    );
    for ((file, expected), old) in expected.iter().zip(contract.previous_schema_json) {
        let record = written_with(&parse(old), event);
        assert_ne!(
            record[..10],
            contract.header,
            "{file} has its own fingerprint"
        );
        assert_eq!(&decode::<T>(&record).unwrap(), expected, "{file}");
    }
}

#[test]
fn a_new_consumer_reads_records_of_every_earlier_version_with_defaults_for_newer_fields() {
    let request = request();
    assert_new_consumer_reads_old_records(
        &request,
        &[(
            "page_requested.v1.avsc",
            PageRequested {
                callback_url: None,
                idempotency_key: None,
                ..request.clone()
            },
        )],
    );
    let page = page();
    assert_new_consumer_reads_old_records(
        &page,
        &[
            (
                "page_completed.v1.avsc",
                PageCompleted {
                    milestones: vec![],
                    callback_url: None,
                    ..page.clone()
                },
            ),
            (
                "page_completed.v2.avsc",
                PageCompleted {
                    callback_url: None,
                    ..page.clone()
                },
            ),
        ],
    );
}

/// A consumer holding an earlier version, and a record of the current one.
struct OldReader {
    file: &'static str,
    old_json: &'static str,
    current_json: &'static str,
    record: Vec<u8>,
}

fn old_readers_of_new_records() -> Vec<OldReader> {
    let mut out = Vec::new();
    for (event_type, record) in [
        ("page.requested", encode(&request())),
        ("page.completed", encode(&page())),
    ] {
        let contract = contract(event_type);
        for (file, old_json) in contract
            .previous_files
            .iter()
            .zip(contract.previous_schema_json)
        {
            out.push(OldReader {
                file,
                old_json,
                current_json: contract.schema_json,
                record: record.clone(),
            });
        }
    }
    out
}

/// What a consumer holding only `reader` gets from a single-object record
/// written with `writer`: the datum resolved to `reader`, as JSON.
fn read_as(reader: &Schema, writer: &Schema, record: &[u8]) -> Json {
    assert_eq!(record[2..10], writer.fingerprint::<Rabin>().bytes);
    let value = GenericDatumReader::builder(writer)
        .reader_schema(reader)
        .build()
        .and_then(|r| r.read_value(&mut &record[10..]))
        .unwrap();
    Json::try_from(value).unwrap()
}

fn field_names(schema: &Schema) -> Vec<&str> {
    let Schema::Record(RecordSchema { fields, .. }) = schema else {
        panic!("every contract is a record");
    };
    fields.iter().map(|f| f.name.as_str()).collect()
}

#[test]
fn an_old_consumer_reads_a_record_of_the_current_schema_and_ignores_the_fields_it_lacks() {
    let cases = old_readers_of_new_records();
    assert_eq!(cases.len(), 3);
    for OldReader {
        file,
        old_json,
        current_json,
        record,
    } in cases
    {
        let (old, current) = (parse(old_json), parse(current_json));
        let everything = read_as(&current, &current, &record);
        let seen = read_as(&old, &current, &record);
        let seen = seen.as_object().unwrap();
        let mut names: Vec<_> = seen.keys().map(String::as_str).collect();
        let mut old_names = field_names(&old);
        names.sort_unstable();
        old_names.sort_unstable();
        assert_eq!(names, old_names, "{file} sees exactly its own fields");
        for (name, value) in seen {
            assert_eq!(value, &everything[name], "{file}: {name}");
        }
        assert_eq!(seen["context"]["reply_partition"], 3, "{file}");
        assert!(!seen.contains_key("callback_url"), "{file}");
        if file == "page_requested.v1.avsc" {
            assert_eq!(seen["logout"], true);
            assert_eq!(seen["login"]["sealed_password"], json!([0, 1, 254, 255]));
        } else {
            assert_eq!(seen["recent_purchases"][0]["price_cents"], 2599, "{file}");
        }
    }
}

/// fastavro reads each record with the writer's schema resolved to the old
/// reader's, and prints the old schema's fingerprint (as listed in
/// `released.txt`) and the datum as JSON (bytes as a list of numbers, as
/// apache-avro's JSON form has them).
const FASTAVRO_OLD_CONSUMER: &str = r#"
import io, json, sys
from fastavro import parse_schema, schemaless_reader
from fastavro.schema import fingerprint, to_parsing_canonical_form

for line in sys.stdin:
    writer, reader, record = line.rstrip("\n").split("\t")
    reader = json.loads(reader)
    record = bytes.fromhex(record)
    datum = schemaless_reader(
        io.BytesIO(record[10:]),
        parse_schema(json.loads(writer)),
        parse_schema(reader),
    )
    print(
        fingerprint(to_parsing_canonical_form(reader), "CRC-64-AVRO"),
        json.dumps(datum, default=list),
        sep="\t",
    )
"#;

#[test]
fn fastavro_as_an_old_consumer_reads_a_record_of_the_current_schema_as_apache_avro_does() {
    let cases = old_readers_of_new_records();
    let compact = |json: &str| serde_json::from_str::<Json>(json).unwrap().to_string();
    let input: String = cases
        .iter()
        .map(|c| {
            let (current, old) = (compact(c.current_json), compact(c.old_json));
            format!("{current}\t{old}\t{}\n", hex(&c.record))
        })
        .collect();
    let stdout = run_python(FASTAVRO_OLD_CONSUMER, &input);
    let released = released();
    assert_eq!(stdout.lines().count(), cases.len());
    for (case, line) in cases.iter().zip(stdout.lines()) {
        let (fingerprint, datum) = line.split_once('\t').unwrap();
        let listed = released
            .iter()
            .find(|r| r.file.ends_with(case.file))
            .unwrap();
        assert_eq!(fingerprint, listed.fingerprint, "{}", case.file);
        let theirs: Json = serde_json::from_str(datum).unwrap();
        let ours = read_as(
            &parse(case.old_json),
            &parse(case.current_json),
            &case.record,
        );
        assert_eq!(theirs, ours, "{}", case.file);
    }
}

fn run_python(script: &str, input: &str) -> String {
    let output = python::run_script(script, &[], input.as_bytes());
    assert!(
        output.status.success(),
        "fastavro failed (is it installed? run scripts/prepare.sh --test):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

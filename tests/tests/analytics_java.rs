//! The topics as Java analytics reads them (`examples/analytics-java`): the
//! tap decodes every record with Apache Avro's reference
//! `BinaryMessageDecoder` (the writer schema found by its fingerprint, released
//! older versions included), and the Kafka Streams job counts pages per
//! minute exactly, on the time each page was completed.

use std::{collections::BTreeMap, path::Path, process::Stdio, time::Duration};

use apache_avro::{rabin::Rabin, writer::datum::GenericDatumWriter, Schema};
use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};
use serde_json::Value;
use storefront_devstack::stack::Service;
use storefront_e2e::{fresh_namespace, java, read_topic, TestStack};
use storefront_runtime::{topics, KafkaSettings};
use storefront_schemas::{
    contracts, encode, Ad, Milestone, PageCompleted, PageStatus, PagesPerMinute, RequestContext,
    RequestId, SessionId, UserProfile, SINGLE_OBJECT_MAGIC,
};

/// Runs a command of the example to its end; its stdout as JSON lines.
async fn run_java(args: Vec<String>) -> Vec<Value> {
    let mut command = java::analytics(&args.iter().map(String::as_str).collect::<Vec<_>>());
    command.stdin(Stdio::null()).stderr(Stdio::inherit());
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("java runs (scripts/prepare.sh installs a JDK and Maven)");
    assert!(
        output.status.success(),
        "java {args:?} failed: {}",
        output.status
    );
    String::from_utf8(output.stdout)
        .expect("UTF-8 output")
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn kafka_args(command: &str, kafka: &KafkaSettings) -> Vec<String> {
    let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/avro");
    [
        command,
        "--bootstrap-servers",
        &kafka.bootstrap_servers,
        "--topic-prefix",
        &kafka.topic_prefix,
        "--schemas",
        schemas.to_str().unwrap(),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// The Java tap over `kafka`'s namespace until it printed `max_records`.
async fn tap(kafka: &KafkaSettings, group: &str, max_records: usize) -> Vec<Value> {
    let mut args = kafka_args("tap", kafka);
    args.extend(
        [
            "--group",
            group,
            "--max-records",
            &max_records.to_string(),
            "--idle-timeout",
            "60",
        ]
        .map(str::to_owned),
    );
    run_java(args).await
}

/// How many records every topic of the namespace holds now.
async fn records_on_all_topics(kafka: &KafkaSettings) -> usize {
    let mut total = 0;
    for topic in kafka.topics().all() {
        total += read_topic(kafka, topic).await.len();
    }
    total
}

#[tokio::test]
async fn the_java_tap_decodes_what_a_login_produced_with_avros_reference_decoder() {
    let test = TestStack::start(&Service::ALL, 3_000).await;
    let kafka = test.config.kafka.clone();
    let gateway = test.gateway();
    let (username, _, password) = &test.dataset.logins[1];
    let login = gateway.login(username, password).await;
    assert_eq!(login.status, 200, "{}", login.text);
    let page = gateway
        .get("/api/page", Some(&login.session_cookie().unwrap()))
        .await;
    assert_eq!(page.status, 200, "{}", page.text);

    let total = records_on_all_topics(&kafka).await;
    let records = tap(&kafka, &kafka.group("analytics.java-test"), total).await;
    assert_eq!(records.len(), total, "every record printed");
    let failed: Vec<&Value> = records
        .iter()
        .filter(|r| r.get("error").is_some())
        .collect();
    assert!(failed.is_empty(), "records that did not decode: {failed:?}");

    let topics = kafka.topics();
    for reply in [&login, &page] {
        let request_id = reply.body["request_id"].as_str().unwrap();
        let events: Vec<&Value> = records
            .iter()
            .filter(|r| r["value"]["context"]["request_id"] == request_id)
            .collect();
        let on: Vec<&str> = events
            .iter()
            .map(|r| r["topic"].as_str().unwrap())
            .collect();
        for topic in [
            &topics.page_requested,
            &topics.user_resolved,
            &topics.history_fetched,
            &topics.ads_selected,
            &topics.page_completed,
        ] {
            assert_eq!(
                on.iter().filter(|t| **t == topic.as_str()).count(),
                1,
                "one {topic} for {request_id}: {on:?}"
            );
        }
        let completed = events
            .iter()
            .find(|r| r["topic"] == *topics.page_completed)
            .unwrap();
        assert_eq!(completed["event_type"], "page.completed");
        assert_eq!(completed["schema"], "page_completed.avsc");
        assert_eq!(completed["headers"]["request-id"], request_id);
        let value = &completed["value"];
        assert_eq!(value["status"], reply.body["status"]);
        assert_eq!(value["missing"], reply.body["missing"]);
        assert_eq!(
            value["user"]["customer_id"],
            reply.body["page"]["user"]["id"]
        );
        assert_eq!(value["user"]["name"], reply.body["page"]["user"]["name"]);
        assert_eq!(value["user"]["city"], reply.body["page"]["user"]["city"]);
        let ids = |ads: &Value, field: &str| -> Vec<Value> {
            ads.as_array()
                .unwrap()
                .iter()
                .map(|a| a[field].clone())
                .collect()
        };
        assert_eq!(
            ids(&value["ads"], "product_id"),
            ids(&reply.body["page"]["ads"], "product_id")
        );
        assert_eq!(
            ids(&value["recent_purchases"], "product_id"),
            ids(&reply.body["page"]["recent_purchases"], "product_id")
        );
        assert!(
            completed["key"].as_str().unwrap().len() == 36,
            "keyed by the session ID: {completed}"
        );
    }
    // The login as the tap sees it: the username, and the password sealed.
    let login_id = login.body["request_id"].as_str().unwrap();
    let requested = records
        .iter()
        .find(|r| {
            r["topic"] == *topics.page_requested && r["value"]["context"]["request_id"] == login_id
        })
        .unwrap();
    assert_eq!(requested["value"]["login"]["username"], username.as_str());
    let sealed = requested["value"]["login"]["sealed_password"]
        .as_str()
        .unwrap();
    assert!(
        !sealed.is_empty() && !requested.to_string().contains(password.as_str()),
        "the password is sealed, not in clear: {requested}"
    );
    test.stack.stop().await;
}

// The Streams job on a known set of pages.

const MINUTE: i64 = 60_000;

/// The start of the minute twenty minutes ago: the test's first window. Not
/// a fixed date: page.completed keeps records a week, and the broker deletes
/// older ones (by their timestamps) within minutes.
fn first_minute_start() -> i64 {
    (storefront_schemas::now_ms() / MINUTE - 20) * MINUTE
}

/// A window's key: its start in ISO-8601 (Java's `Instant.toString`).
fn iso(ms: i64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms as u64))
        .to_string()
}

/// A page completed `latency_ms` after it was requested, at `completed_ms`.
fn page(
    n: u8,
    status: PageStatus,
    missing: &[&str],
    completed_ms: i64,
    latency_ms: i64,
    ads: &[(&str, &str)],
) -> PageCompleted {
    let requested_at_ms = completed_ms - latency_ms;
    PageCompleted {
        context: RequestContext {
            request_id: RequestId::derived([n; 16]),
            session_id: SessionId::derived([n.wrapping_add(100); 16]),
            requested_at_ms,
            deadline_ms: requested_at_ms + 250,
            reply_topic: "page.completed".into(),
            reply_partition: 0,
        },
        status,
        missing: missing.iter().map(|m| m.to_string()).collect(),
        rejection: (status == PageStatus::Rejected).then(|| "invalid_credentials".into()),
        user: (status != PageStatus::Rejected && status != PageStatus::Unavailable).then(|| {
            UserProfile {
                customer_id: "c-000001".into(),
                name: "Dana".into(),
                city: "Lyon".into(),
            }
        }),
        recent_purchases: vec![],
        ads: ads
            .iter()
            .map(|(product_id, reason)| Ad {
                product_id: product_id.to_string(),
                name: format!("Product {product_id}"),
                price_cents: 999,
                reason: reason.to_string(),
            })
            .collect(),
        milestones: vec![
            Milestone {
                stage: "picked_up".into(),
                service: "user-svc".into(),
                at_ms: requested_at_ms + 5,
            },
            Milestone {
                stage: "completed".into(),
                service: "aggregator".into(),
                at_ms: completed_ms,
            },
        ],
        callback_url: None,
    }
}

const TOGETHER: &str = "Bought together with Kettle (which you bought recently) in 3 orders";
const BEST: &str = "Best-seller: in 12 orders";
const POPULAR: &str = "Popular with shoppers: in 40 orders";

/// A page.completed record as a producer holding the released version
/// `previous/<file>` writes it (the fields it lacks are not written).
fn written_with_previous(file: &str, page: &PageCompleted) -> Vec<u8> {
    let contract = contracts()
        .into_iter()
        .find(|c| c.event_type == "page.completed")
        .unwrap();
    let (_, json) = contract
        .previous_files
        .iter()
        .zip(contract.previous_schema_json)
        .find(|(f, _)| **f == file)
        .unwrap();
    let schema = Schema::parse_str(json).unwrap();
    let value = apache_avro::to_value(page)
        .unwrap()
        .resolve(&schema)
        .unwrap();
    let mut bytes = SINGLE_OBJECT_MAGIC.to_vec();
    bytes.extend_from_slice(&schema.fingerprint::<Rabin>().bytes);
    let writer = GenericDatumWriter::builder(&schema).build().unwrap();
    bytes.extend(writer.write_value_to_vec(value).unwrap());
    bytes
}

/// A record to produce: partition, timestamp, payload.
struct Feed {
    partition: i32,
    timestamp_ms: i64,
    key: String,
    payload: Vec<u8>,
}

fn feed(partition: i32, page: &PageCompleted) -> Feed {
    Feed {
        partition,
        timestamp_ms: page.milestones.last().map_or(0, |m| m.at_ms),
        key: page.context.session_id.to_string(),
        payload: encode(page),
    }
}

async fn produce(kafka: &KafkaSettings, records: &[Feed]) {
    let producer: FutureProducer = kafka
        .client_config("analytics-java-test")
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let topic = kafka.topics().page_completed;
    for record in records {
        let headers = OwnedHeaders::new().insert(Header {
            key: "event-type",
            value: Some("page.completed"),
        });
        producer
            .send(
                FutureRecord::to(&topic)
                    .partition(record.partition)
                    .timestamp(record.timestamp_ms)
                    .key(&record.key)
                    .headers(headers)
                    .payload(&record.payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
}

/// Runs the Streams job until it has read nothing for 5 s, with a fresh
/// state directory (so a second run restores its state from the changelog).
async fn run_streams_job(kafka: &KafkaSettings) {
    let state = tempfile::tempdir().unwrap();
    let mut args = kafka_args("pages-per-minute", kafka);
    args.extend(
        [
            "--grace",
            "300",
            "--idle-timeout",
            "5",
            "--state-dir",
            state.path().to_str().unwrap(),
        ]
        .map(str::to_owned),
    );
    run_java(args).await;
}

fn counts(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[tokio::test]
async fn the_streams_job_counts_a_known_set_of_pages_per_minute_exactly() {
    let kafka = fresh_namespace();
    topics::ensure_topics(&kafka).await.unwrap();
    use PageStatus::*;
    let t0 = first_minute_start();
    let s = 1_000;
    // Minute t0: eight pages on three partitions, two of them written with
    // released older versions of the schema.
    let v1_page = page(4, Complete, &[], t0 + 30 * s, 400, &[("p-2", BEST)]);
    let mut v1 = feed(0, &v1_page);
    // v1 has no milestones: its event time is the record's timestamp.
    v1.payload = written_with_previous("page_completed.v1.avsc", &v1_page);
    let mut v2 = feed(
        2,
        &page(3, Complete, &[], t0 + 20 * s, 140, &[("p-3", POPULAR)]),
    );
    v2.payload = written_with_previous(
        "page_completed.v2.avsc",
        &page(3, Complete, &[], t0 + 20 * s, 140, &[("p-3", POPULAR)]),
    );
    let first_minute = vec![
        feed(
            0,
            &page(
                1,
                Complete,
                &[],
                t0 + 5 * s,
                100,
                &[("p-1", TOGETHER), ("p-2", BEST)],
            ),
        ),
        feed(
            1,
            &page(2, Complete, &[], t0 + 10 * s, 120, &[("p-1", TOGETHER)]),
        ),
        v2,
        v1,
        feed(1, &page(5, Partial, &["ads"], t0 + 40 * s, 250, &[])),
        feed(
            2,
            &page(6, Partial, &["history", "ads"], t0 + 45 * s, 250, &[]),
        ),
        feed(0, &page(7, Rejected, &[], t0 + 50 * s, 30, &[])),
        feed(
            1,
            &page(
                8,
                Unavailable,
                &["user", "history", "ads"],
                t0 + MINUTE - 1,
                250,
                &[],
            ),
        ),
    ];
    // Minute t0 + 1: three pages, the first exactly on the boundary.
    let second_minute = vec![
        feed(
            2,
            &page(
                9,
                Complete,
                &[],
                t0 + MINUTE,
                90,
                &[("p-4", "Shown for a reason of its own")],
            ),
        ),
        feed(
            0,
            &page(
                10,
                Complete,
                &[],
                t0 + MINUTE + 30 * s,
                110,
                &[("p-1", TOGETHER), ("p-4", TOGETHER)],
            ),
        ),
        feed(
            1,
            &page(
                11,
                Partial,
                &["history"],
                t0 + 2 * MINUTE - 1,
                250,
                &[("p-2", BEST)],
            ),
        ),
    ];
    produce(&kafka, &first_minute).await;
    produce(&kafka, &second_minute).await;
    // Nothing closes yet (the grace is 5 minutes): the job reads them all,
    // whatever order its three input tasks take, and keeps its windows.
    run_streams_job(&kafka).await;
    assert!(
        read_topic(&kafka, &kafka.topics().pages_per_minute)
            .await
            .is_empty(),
        "no window closed before its grace ran out"
    );

    // A page at t0 + 10 minutes closes both; one completed at t0 + 30 s and read
    // after it is past the grace, so dropped.
    let later = vec![
        feed(0, &page(12, Complete, &[], t0 + 10 * MINUTE, 50, &[])),
        feed(
            0,
            &page(13, Complete, &[], t0 + 30 * s, 100, &[("p-9", BEST)]),
        ),
    ];
    produce(&kafka, &later).await;
    run_streams_job(&kafka).await;

    let output = read_topic(&kafka, &kafka.topics().pages_per_minute).await;
    let windows: Vec<(String, Option<String>, PagesPerMinute)> = output
        .iter()
        .map(|r| {
            (
                r.key_str().unwrap().to_owned(),
                r.header("event-type"),
                r.decode::<PagesPerMinute>().unwrap(),
            )
        })
        .collect();
    let event_type = Some("pages_per_minute".to_owned());
    assert_eq!(
        windows,
        vec![
            (
                iso(t0),
                event_type.clone(),
                PagesPerMinute {
                    window_start_ms: t0,
                    window_end_ms: t0 + MINUTE,
                    pages: 8,
                    complete: 4,
                    partial: 2,
                    partial_missing: counts(&[("ads", 2), ("history", 1)]),
                    rejected: 1,
                    timed_out: 1,
                    // 30, 100, 120, 140, 250, 250, 250, 400
                    latency_p50_ms: 140,
                    latency_p95_ms: 400,
                    latency_max_ms: 400,
                    ad_impressions: 5,
                    ad_impressions_by_product: counts(&[("p-1", 2), ("p-2", 2), ("p-3", 1)]),
                    ad_impressions_by_reason: counts(&[
                        ("best_seller", 2),
                        ("bought_together", 2),
                        ("popular", 1)
                    ]),
                }
            ),
            (
                iso(t0 + MINUTE),
                event_type,
                PagesPerMinute {
                    window_start_ms: t0 + MINUTE,
                    window_end_ms: t0 + 2 * MINUTE,
                    pages: 3,
                    complete: 2,
                    partial: 1,
                    partial_missing: counts(&[("history", 1)]),
                    rejected: 0,
                    timed_out: 0,
                    // 90, 110, 250
                    latency_p50_ms: 110,
                    latency_p95_ms: 250,
                    latency_max_ms: 250,
                    ad_impressions: 4,
                    ad_impressions_by_product: counts(&[("p-1", 1), ("p-2", 1), ("p-4", 2)]),
                    ad_impressions_by_reason: counts(&[
                        ("best_seller", 1),
                        ("bought_together", 2),
                        ("other", 1)
                    ]),
                }
            ),
        ]
    );

    // The tap reads the namespace: the older versions through Avro's
    // resolution, and the job's own records.
    let total = records_on_all_topics(&kafka).await;
    assert_eq!(
        total,
        first_minute.len() + second_minute.len() + later.len() + 2
    );
    let records = tap(&kafka, &kafka.group("analytics.java-test"), total).await;
    let schemas: BTreeMap<&str, usize> = records.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r["schema"].as_str().unwrap_or("(error)"))
            .or_default() += 1;
        m
    });
    assert_eq!(
        schemas,
        BTreeMap::from([
            ("page_completed.avsc", 11),
            ("pages_per_minute.avsc", 2),
            ("previous/page_completed.v1.avsc", 1),
            ("previous/page_completed.v2.avsc", 1),
        ]),
        "{records:#?}"
    );
    let old = records
        .iter()
        .find(|r| r["schema"] == "previous/page_completed.v1.avsc")
        .unwrap();
    assert_eq!(
        old["value"]["milestones"],
        Value::Array(vec![]),
        "defaults fill what v1 lacks"
    );
    assert_eq!(old["value"]["ads"][0]["product_id"], "p-2");
    let summary = records
        .iter()
        .find(|r| r["key"] == iso(t0 + MINUTE).as_str())
        .unwrap();
    assert_eq!(summary["value"]["ad_impressions_by_product"]["p-4"], 2);
}

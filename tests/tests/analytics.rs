//! The topics as an analytics consumer taps them: the example consumer
//! (`examples/analytics/consumer.py`: confluent-kafka and fastavro, outside
//! implementations of the Kafka client and of Avro) decodes every record
//! that seeding, two logins and a page request leave on the topics, and
//! commits what it read under its own group.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    Offset, TopicPartitionList,
};
use serde_json::Value;
use storefront_devstack::stack::Service;
use storefront_e2e::{python::python, Reply, TestStack};
use storefront_runtime::KafkaSettings;

/// Runs the example consumer over `kafka`'s namespace in `group` until
/// `stop_after` (its `--max-records` or `--idle-timeout` flags) holds; one
/// JSON value per line it printed.
async fn tap(kafka: &KafkaSettings, group: &str, stop_after: &[&str]) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/analytics/consumer.py");
    let mut command = Command::new(python());
    command
        .arg(script)
        .args(["--bootstrap-servers", &kafka.bootstrap_servers])
        .args(["--topic-prefix", &kafka.topic_prefix])
        .args(["--group", group])
        .args(stop_after)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("python runs (scripts/prepare.sh --test installs confluent-kafka and fastavro)");
    assert!(output.status.success(), "the example consumer failed");
    String::from_utf8(output.stdout)
        .expect("UTF-8 output")
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// Per partition of every topic: the offset after its last record, the
/// records in it (as a read_committed reader sees them: transactions add
/// commit markers, which take offsets but are no records), and the offset
/// `group` committed there.
async fn positions(
    kafka: &KafkaSettings,
    group: &str,
) -> BTreeMap<(String, i32), (i64, i64, Offset)> {
    let topics: Vec<String> = kafka
        .topics()
        .all()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let mut records: BTreeMap<(String, i32), (i64, i64)> = BTreeMap::new();
    for topic in &topics {
        for record in storefront_e2e::read_topic(kafka, topic).await {
            let (count, end) = records
                .entry((topic.clone(), record.partition))
                .or_default();
            *count += 1;
            *end = (*end).max(record.offset + 1);
        }
    }
    let consumer: BaseConsumer = kafka
        .client_config("analytics-test")
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    tokio::task::spawn_blocking(move || {
        let timeout = Duration::from_secs(10);
        let mut list = TopicPartitionList::new();
        let mut marks = BTreeMap::new();
        for topic in &topics {
            let metadata = consumer.fetch_metadata(Some(topic), timeout).unwrap();
            for partition in metadata.topics()[0].partitions() {
                let key = (topic.clone(), partition.id());
                let (count, end) = records.get(&key).copied().unwrap_or_default();
                marks.insert(key, (end, count));
                list.add_partition(topic, partition.id());
            }
        }
        let committed = consumer.committed_offsets(list, timeout).unwrap();
        marks
            .into_iter()
            .map(|((topic, partition), (high, count))| {
                let offset = committed
                    .find_partition(&topic, partition)
                    .map_or(Offset::Invalid, |e| e.offset());
                ((topic, partition), (high, count, offset))
            })
            .collect()
    })
    .await
    .unwrap()
}

/// The session id in a `sf_session=<id>.<signature>` cookie.
fn session_of(reply: &Reply) -> String {
    let cookie = reply.session_cookie().expect("a session cookie");
    let (name_and_id, _signature) = cookie.rsplit_once('.').unwrap();
    name_and_id.trim_start_matches("sf_session=").to_owned()
}

#[tokio::test]
async fn the_example_consumer_decodes_every_topic_and_commits_what_it_read() {
    let test = TestStack::start(&Service::ALL, 3_000).await;
    let kafka = test.config.kafka.clone();
    let gateway = test.gateway();
    // Two generated users (login attempts are limited per user).
    let mut users = test.dataset.logins.iter().skip(1);
    let (first, _, first_password) = users.next().unwrap();
    let (second, _, second_password) = users.next().unwrap();
    let login = gateway.login(first, first_password).await;
    assert_eq!(login.status, 200, "{}", login.text);
    let page = gateway
        .get("/api/page", Some(&login.session_cookie().unwrap()))
        .await;
    assert_eq!(page.status, 200, "{}", page.text);
    let other = gateway.login(second, second_password).await;
    assert_eq!(other.status, 200, "{}", other.text);

    // Every record is on the topics once the answers are out; the consumer
    // stops when it has read that many (the idle timeout only stops a hang).
    let group = kafka.group("analytics-test");
    let before = positions(&kafka, &group).await;
    let total: i64 = before.values().map(|(_, count, _)| count).sum();
    let max_records = total.to_string();
    let records = tap(
        &kafka,
        &group,
        &["--max-records", &max_records, "--idle-timeout", "60"],
    )
    .await;

    let failed: Vec<&Value> = records
        .iter()
        .filter(|r| r.get("error").is_some())
        .collect();
    assert!(failed.is_empty(), "records that did not decode: {failed:?}");
    let topics = kafka.topics();
    let decoded: BTreeSet<&str> = records
        .iter()
        .filter(|r| r["value"].is_object())
        .map(|r| r["topic"].as_str().unwrap())
        .collect();
    let request_path: [&str; 5] = [
        &topics.page_requested,
        &topics.user_resolved,
        &topics.history_fetched,
        &topics.ads_selected,
        &topics.page_completed,
    ];
    for topic in request_path.into_iter().chain(topics.reference()) {
        assert!(
            decoded.contains(topic),
            "no decoded record of {topic}: {decoded:?}"
        );
    }

    // Each answer, as the consumer decoded it, is what the HTTP client got.
    for reply in [&login, &page, &other] {
        let request_id = reply.body["request_id"].as_str().unwrap();
        let completed: Vec<&Value> = records
            .iter()
            .filter(|r| r["topic"] == *topics.page_completed)
            .filter(|r| r["value"]["context"]["request_id"] == request_id)
            .collect();
        assert_eq!(completed.len(), 1, "one page.completed for {request_id}");
        let record = completed[0];
        assert_eq!(record["event_type"], "page.completed");
        assert_eq!(record["headers"]["request-id"], request_id);
        assert_eq!(record["value"]["status"], reply.body["status"]);
        assert_eq!(
            record["value"]["user"]["customer_id"],
            reply.body["page"]["user"]["id"]
        );
        assert_eq!(
            record["value"]["user"]["name"],
            reply.body["page"]["user"]["name"]
        );
    }
    let session = session_of(&login);
    let events: Vec<&Value> = records
        .iter()
        .filter(|r| r["value"]["context"]["request_id"] == page.body["request_id"])
        .collect();
    let on: BTreeSet<&str> = events
        .iter()
        .map(|r| r["topic"].as_str().unwrap())
        .collect();
    assert_eq!(
        on,
        request_path.into_iter().collect(),
        "the page request's events"
    );
    assert!(
        events.iter().all(|r| r["key"] == session.as_str()),
        "every event of the page request is keyed by the login's session: {events:?}"
    );

    // It read every record, and committed past each one before it left.
    for ((topic, partition), (end, count, committed)) in positions(&kafka, &group).await {
        let read = records
            .iter()
            .filter(|r| r["topic"] == *topic && r["partition"] == partition)
            .count() as i64;
        assert_eq!(read, count, "records of {topic}[{partition}] read");
        if count > 0 {
            assert!(
                matches!(committed, Offset::Offset(at) if at >= end),
                "committed offset of {topic}[{partition}] {committed:?} is past its last record ({end})"
            );
        }
    }
    let again = tap(&kafka, &group, &["--idle-timeout", "5"]).await;
    assert!(
        again.is_empty(),
        "a second run in the same group goes on where the first stopped: {again:?}"
    );
    test.stack.stop().await;
}

//! Delivery under redelivery and restarts, against the real broker: every
//! request is answered, none twice.

use std::{collections::HashMap, time::Duration};

use rdkafka::{
    consumer::{BaseConsumer, CommitMode, Consumer},
    Offset, TopicPartitionList,
};
use storefront::{seed, stack::Service};
use storefront_e2e::{eventually, read_topic, TestStack};
use storefront_runtime::KafkaSettings;
use tokio_util::sync::CancellationToken;

/// Moves the committed offsets of `group` on `topics` back to the
/// beginning, as if nothing had ever been committed.
fn rewind_group(kafka: &KafkaSettings, group: &str, topics: &[String]) {
    let consumer: BaseConsumer = kafka
        .client_config("e2e-rewind")
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut offsets = TopicPartitionList::new();
    for topic in topics {
        for partition in 0..kafka.partitions {
            offsets
                .add_partition_offset(topic, partition, Offset::Offset(0))
                .unwrap();
        }
    }
    consumer.commit(&offsets, CommitMode::Sync).unwrap();
}

/// Pages on `page.completed`, counted by request id.
async fn pages_by_request(kafka: &KafkaSettings) -> HashMap<String, usize> {
    let mut pages = HashMap::new();
    for record in read_topic(kafka, &kafka.topics().page_completed).await {
        *pages
            .entry(record.header("request-id").unwrap_or_default())
            .or_default() += 1;
    }
    pages
}

#[tokio::test]
async fn a_restarted_aggregator_answers_what_was_pending_and_nothing_twice() {
    let mut test = TestStack::start(&Service::ALL, 3_000).await;
    let gateway = test.gateway();
    let login = gateway
        .login(seed::DEMO_USERNAME, seed::DEMO_PASSWORD)
        .await;
    assert_eq!(login.status, 200, "{}", login.text);
    let cookie = login.session_cookie().unwrap();
    assert_eq!(gateway.get("/api/page", Some(&cookie)).await.status, 200);
    let answered_before: Vec<String> = pages_by_request(&test.config.kafka)
        .await
        .into_keys()
        .collect();
    assert_eq!(answered_before.len(), 2);

    // The aggregator goes away; a request arrives meanwhile and waits.
    test.stack.stop_service("aggregator").await;
    let unanswered = gateway.get("/api/page", Some(&cookie)).await;
    assert_eq!(unanswered.status, 504, "{}", unanswered.text);

    // Every input comes back, as after a crash before any commit.
    let kafka = test.config.kafka.clone();
    let topics = kafka.topics();
    let inputs = [
        topics.page_requested,
        topics.user_resolved,
        topics.history_fetched,
        topics.ads_selected,
    ];
    let group = kafka.group("aggregator");
    let rewind = kafka.clone();
    tokio::task::spawn_blocking(move || rewind_group(&rewind, &group, &inputs))
        .await
        .unwrap();
    let aggregator = test
        .config
        .start(Service::Aggregator, CancellationToken::new())
        .await
        .unwrap();
    aggregator
        .wait_ready(Duration::from_secs(30))
        .await
        .unwrap();
    test.stack.services.push(aggregator);

    eventually(Duration::from_secs(20), || async {
        let pages = pages_by_request(&kafka).await;
        (pages.len() == 3).then_some(pages)
    })
    .await
    .expect("the request made while the aggregator was away is answered");
    // Give a duplicate time to show up, had there been one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pages = pages_by_request(&kafka).await;
    assert_eq!(pages.len(), 3);
    assert!(
        pages.values().all(|n| *n == 1),
        "one page per request: {pages:?}"
    );
    for request in answered_before {
        assert_eq!(pages[&request], 1);
    }
    let metrics = storefront_e2e::telemetry::scrape(
        test.stack
            .services
            .iter()
            .find(|s| s.name == "aggregator")
            .unwrap()
            .http_addr,
    )
    .await;
    assert_eq!(
        storefront_e2e::telemetry::sample(&metrics, "storefront_pending_joins", &[]),
        Some(0.0)
    );
    test.stack.stop().await;
}

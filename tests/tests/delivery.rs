//! Delivery under redelivery and restarts, against the real broker: every
//! request is answered, none twice.

use std::{collections::HashMap, time::Duration};

use rdkafka::{
    consumer::{BaseConsumer, CommitMode, Consumer},
    Offset, TopicPartitionList,
};
use storefront_devstack::{seed, stack::Service};
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

#[tokio::test]
async fn a_dead_letter_is_listed_with_its_origin_and_can_be_republished_to_it() {
    let stack = storefront_e2e::shared();
    let kafka = stack.kafka();
    let topics = kafka.topics();
    let producer = storefront_runtime::EventProducer::new(
        kafka,
        &storefront_runtime::Telemetry::local("e2e-dlq"),
    )
    .unwrap();
    let key = storefront_schemas::SessionId::new().to_string();
    let garbage = storefront_runtime::Outbound {
        topic: topics.history_fetched.clone(),
        key: key.clone(),
        partition: None,
        headers: Default::default(),
        trace: Default::default(),
        payload: b"\xc3\x01 truncated".to_vec(),
        deadline_ms: None,
    };
    let (partition, offset) = producer.send(&garbage).await.unwrap();
    let from_aggregator = storefront::dlq::Selection {
        source_topic: Some(topics.history_fetched.clone()),
        service: Some("aggregator".into()),
        positions: vec![],
    };
    let find = |source_offset: i64| {
        let selection = from_aggregator.clone();
        async move {
            storefront::dlq::list(kafka, &selection)
                .await
                .unwrap()
                .into_iter()
                .find(|l| l.source_partition == partition && l.source_offset == source_offset)
        }
    };
    let letter = eventually(Duration::from_secs(20), || find(offset))
        .await
        .expect("the aggregator dead-lettered the record");
    assert!(!letter.reason.is_empty());
    assert_eq!(letter.key.as_deref(), Some(key.as_bytes()));
    assert_eq!(letter.payload.as_deref(), Some(&b"\xc3\x01 truncated"[..]));
    assert!(
        letter.headers.iter().all(|(k, _)| !k.starts_with("dlq-")),
        "the original headers, without the dead-letter ones"
    );

    // Re-published, it is the same record on the same partition; still
    // undecodable, it comes back to the dead letters from its new offset.
    assert_eq!(
        storefront::dlq::republish(kafka, std::slice::from_ref(&letter))
            .await
            .unwrap(),
        1
    );
    let again = eventually(Duration::from_secs(20), || async {
        let records = read_topic(kafka, &topics.history_fetched).await;
        records.into_iter().find(|r| {
            r.header(storefront_runtime::dead_letter::REPUBLISHED_FROM)
                == Some(format!("{}:{}", letter.partition, letter.offset))
        })
    })
    .await
    .expect("the record is back on its source topic");
    assert_eq!(again.partition, partition);
    assert_eq!(again.key.as_deref(), Some(key.as_bytes()));
    assert_eq!(again.payload, letter.payload);
    assert!(eventually(Duration::from_secs(20), || find(again.offset))
        .await
        .is_some());
}

#[tokio::test]
async fn past_its_bound_on_requests_in_flight_the_gateway_sheds_with_429_and_retry_after() {
    let test = TestStack::start_with(&Service::ALL, |config| {
        config.page_deadline_ms = 3_000;
        config.max_waiting = 2;
    })
    .await;
    let burst = (1..=30).map(|i| {
        let gateway = test.gateway();
        async move {
            gateway
                .login(&format!("user{i}"), &format!("user{i}-password"))
                .await
        }
    });
    let replies = futures_join_all(burst).await;
    let shed: Vec<_> = replies.iter().filter(|r| r.status == 429).collect();
    let served = replies.iter().filter(|r| r.status == 200).count();
    assert!(!shed.is_empty(), "30 at once over a bound of 2 shed some");
    assert!(served >= 2, "and serve some: {served}");
    assert_eq!(shed.len() + served, 30, "nothing else: {replies:?}");
    for reply in shed {
        assert_eq!(reply.error_code(), "overloaded");
        assert_eq!(reply.headers["retry-after"], "1");
    }
    let metrics = storefront_e2e::telemetry::scrape(test.stack.gateway_addr().unwrap()).await;
    assert_eq!(
        storefront_e2e::telemetry::sample(&metrics, "storefront_shed_total", &[]),
        Some((30 - served) as f64)
    );
    test.stack.stop().await;
}

/// Runs the futures concurrently and returns their outputs in order.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::new();
    for handle in handles {
        outputs.push(handle.await.unwrap());
    }
    outputs
}

#[tokio::test]
async fn hostile_records_on_every_input_topic_are_dead_lettered_by_each_reader_and_the_flow_goes_on(
) {
    let test = TestStack::start(&Service::ALL, 3_000).await;
    let kafka = test.config.kafka.clone();
    let t = kafka.topics();
    let readers: Vec<(&str, Vec<&str>)> = vec![
        (&t.page_requested, vec!["user-svc", "aggregator"]),
        (
            &t.user_resolved,
            vec!["history-svc", "ads-svc", "aggregator"],
        ),
        (&t.history_fetched, vec!["aggregator"]),
        (&t.ads_selected, vec!["aggregator"]),
        (&t.page_completed, vec!["gateway"]),
        (&t.customers, vec!["user-svc"]),
        (&t.credentials, vec!["user-svc"]),
        (&t.sessions, vec!["user-svc"]),
        (&t.catalog, vec!["history-svc", "ads-svc"]),
        (&t.orders, vec!["history-svc", "ads-svc"]),
    ];
    let now = storefront_schemas::now_ms();
    let request = storefront_schemas::encode(&storefront_schemas::PageRequested {
        context: storefront_schemas::RequestContext {
            request_id: storefront_schemas::RequestId::new(),
            session_id: storefront_schemas::SessionId::new(),
            requested_at_ms: now,
            deadline_ms: now + 1_000,
            reply_topic: t.page_completed.clone(),
            reply_partition: 0,
        },
        login: None,
        logout: false,
        callback_url: None,
        idempotency_key: None,
    });
    let session = storefront_schemas::encode(&storefront_schemas::Session {
        session_id: storefront_schemas::SessionId::new(),
        customer_id: "c".into(),
        opened_at_ms: now,
        expires_at_ms: now,
    });
    // The same request with a request id that is no UUID: after the
    // 10-byte header, the id's length (36, zigzag 72) and its characters.
    assert_eq!(request[10], 72, "page.requested starts with its request id");
    let mut bad_id = request[..10].to_vec();
    bad_id.push(2 * 10);
    bad_id.extend_from_slice(b"not-a-uuid");
    bad_id.extend_from_slice(&request[10 + 1 + 36..]);
    let mut oversized = session.clone();
    oversized.resize(storefront_schemas::MAX_ENCODED_BYTES + 1024, 7);
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        (
            "random bytes",
            (0..200).map(|_| rand::random::<u8>()).collect(),
        ),
        ("truncated", request[..request.len() / 2].to_vec()),
        ("request id not a UUID", bad_id),
        ("another contract", session),
        ("oversized", oversized),
    ];
    let producer = storefront_runtime::EventProducer::new(
        &kafka,
        &storefront_runtime::Telemetry::local("e2e-hostile"),
    )
    .unwrap();
    let mut expected = Vec::new();
    for (topic, services) in &readers {
        for (what, payload) in &hostile {
            // A session is valid on the sessions topic: a customer is not.
            let payload = if *topic == t.sessions && *what == "another contract" {
                storefront_schemas::encode(&storefront_schemas::Customer {
                    customer_id: "c-x".into(),
                    username: "x".into(),
                    name: "X".into(),
                    city: "Y".into(),
                    registered_at_ms: now,
                })
            } else {
                payload.clone()
            };
            let record = storefront_runtime::Outbound {
                topic: topic.to_string(),
                key: storefront_schemas::SessionId::new().to_string(),
                partition: None,
                headers: Default::default(),
                trace: Default::default(),
                payload,
                deadline_ms: None,
            };
            let (partition, offset) = producer.send(&record).await.unwrap();
            for service in services {
                expected.push((
                    service.to_string(),
                    topic.to_string(),
                    partition,
                    offset,
                    *what,
                ));
            }
        }
    }

    let not_dead_lettered = || async {
        let letters = storefront::dlq::list(&kafka, &Default::default())
            .await
            .unwrap();
        expected
            .iter()
            .filter(|(service, topic, partition, offset, _)| {
                !letters.iter().any(|l| {
                    l.service == *service
                        && l.source_topic == *topic
                        && l.source_partition == *partition
                        && l.source_offset == *offset
                })
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    let all_in = eventually(Duration::from_secs(30), || async {
        not_dead_lettered().await.is_empty().then_some(())
    })
    .await;
    if all_in.is_none() {
        panic!("not dead-lettered: {:#?}", not_dead_lettered().await);
    }

    let login = test
        .gateway()
        .login(seed::DEMO_USERNAME, seed::DEMO_PASSWORD)
        .await;
    assert_eq!(
        login.status, 200,
        "every service still serves: {}",
        login.text
    );
    assert_eq!(login.body["status"], "complete");
    test.stack.stop().await;
}

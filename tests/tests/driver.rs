//! The consume driver against the real broker: each session's records are
//! handled in the order Kafka delivered them while sessions run at once,
//! and a member giving partitions up finishes what it started and commits
//! it, so the next owner handles nothing twice.

use std::{sync::atomic::Ordering, sync::Arc, time::Duration};

use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    Offset, TopicPartitionList,
};
use storefront_e2e::{
    driver_load::{start_member, write_steps, Member, Recorder, SESSIONS, STEPS},
    eventually, fresh_namespace,
};
use storefront_runtime::{consume::PARTITIONS_ASSIGNED, topics, KafkaSettings, Readiness};
use tokio_util::sync::CancellationToken;

/// A fresh namespace whose input topic holds `steps` of every session.
async fn topic_with_steps(steps: std::ops::Range<usize>) -> (KafkaSettings, String) {
    let kafka = fresh_namespace();
    topics::ensure_topics(&kafka).await.unwrap();
    let topic = kafka.topics().user_resolved;
    write_steps(&kafka, &topic, SESSIONS, steps).await;
    (kafka, topic)
}

/// Whether every step of every session was handled `within` this long.
async fn handled_all(recorder: &Recorder, within: Duration) -> bool {
    eventually(within, || async {
        (recorder.handled() >= SESSIONS * STEPS).then_some(())
    })
    .await
    .is_some()
}

/// Every session's steps were handled once each, in the order written.
fn assert_each_session_handled_once_in_order(recorder: &Recorder) {
    let seen = recorder.seen.lock().unwrap();
    assert_eq!(seen.len(), SESSIONS);
    for (session, steps) in seen.iter() {
        let order: Vec<usize> = steps.iter().map(|(step, _)| *step).collect();
        assert_eq!(
            order,
            (0..STEPS).collect::<Vec<_>>(),
            "{session}: handled twice or out of order ({steps:?})"
        );
    }
}

/// The offsets `group` committed on `topic`, and the ends of its partitions.
fn committed_and_ends(kafka: &KafkaSettings, topic: &str, group: &str) -> (Vec<i64>, Vec<i64>) {
    let consumer: BaseConsumer = kafka
        .client_config("driver-test")
        .set("group.id", kafka.group(group))
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for partition in 0..kafka.partitions {
        list.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    let committed = committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(offset) => offset,
            _ => -1,
        })
        .collect();
    let ends = (0..kafka.partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .collect();
    (committed, ends)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sessions_records_are_handled_in_order_while_sessions_run_at_once() {
    let (kafka, topic) = topic_with_steps(0..STEPS).await;

    let recorder = Arc::new(Recorder::default());
    let shutdown = CancellationToken::new();
    let member = Member::new("only", &recorder, 20);
    let ready = Readiness::new(&[]);
    let running = start_member(
        &kafka,
        &topic,
        "ordered",
        member,
        16,
        ready,
        shutdown.clone(),
    );
    let all = handled_all(&recorder, Duration::from_secs(60)).await;
    shutdown.cancel();
    running.await.unwrap().unwrap();
    assert!(all, "handled {} records", recorder.handled());

    assert_each_session_handled_once_in_order(&recorder);
    let most = recorder.most_at_once.load(Ordering::SeqCst);
    assert!(most > 1, "sessions were handled one at a time");
    assert!(most <= 16, "{most} records at once, above the bound of 16");
    let (committed, ends) = committed_and_ends(&kafka, &topic, "ordered");
    assert_eq!(
        committed, ends,
        "every record handled is committed at shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_giving_partitions_up_finishes_and_commits_what_it_started() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_test_writer()
        .try_init();
    let (kafka, topic) = topic_with_steps(0..2).await;

    // Slow records, several at once: when the second member joins, the
    // first is in the middle of some of them. The later steps are written
    // once both members own partitions, so both have work.
    let recorder = Arc::new(Recorder::default());
    let shutdown = CancellationToken::new();
    let first = Member::new("first", &recorder, 400);
    let first = start_member(
        &kafka,
        &topic,
        "handover",
        first,
        4,
        Readiness::new(&[]),
        shutdown.clone(),
    );
    eventually(Duration::from_secs(30), || async {
        (recorder.handled() >= 10).then_some(())
    })
    .await
    .expect("the first member handles records");
    let second = Member::new("second", &recorder, 400);
    let second_ready = Readiness::new(&[PARTITIONS_ASSIGNED]);
    let second = start_member(
        &kafka,
        &topic,
        "handover",
        second,
        4,
        second_ready.clone(),
        shutdown.clone(),
    );
    tokio::time::timeout(Duration::from_secs(30), second_ready.wait())
        .await
        .expect("the second member is given partitions");
    write_steps(&kafka, &topic, SESSIONS, 2..STEPS).await;

    let all = handled_all(&recorder, Duration::from_secs(90)).await;
    // Anything handled twice would show up by now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    shutdown.cancel();
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    assert!(all, "handled {} records", recorder.handled());

    let seen = recorder.seen.lock().unwrap();
    let by_second: usize = seen
        .values()
        .flatten()
        .filter(|(_, member)| *member == "second")
        .count();
    assert!(by_second > 0, "the second member got no partition");
    drop(seen);
    assert_each_session_handled_once_in_order(&recorder);
}

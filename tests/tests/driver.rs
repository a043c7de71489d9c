//! The consume driver against the real broker: each session's records are
//! handled in the order Kafka delivered them while sessions run at once,
//! and a member giving partitions up finishes what it started and commits
//! it, so the next owner handles nothing twice. A member whose handlers
//! are all blocked pauses and goes on polling, so it stays in its group.
//! The lanes driver keeps a lane that stalls from holding up the others,
//! and decides at once what its backlog cannot take.
//! The stateful form gets each partition's records in order and is woken
//! when it asked to be.

use std::{sync::atomic::Ordering, sync::Arc, time::Duration};

use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    Offset, TopicPartitionList,
};
use storefront_e2e::{
    driver_load::{start_member, write_steps, Member, Recorder, SESSIONS, STEPS},
    eventually, fresh_namespace,
};
use storefront_runtime::{
    consume::{
        Driver, GroupConsumer, GroupContext, GroupListener, GroupOptions, LaneDriver, LaneHandler,
        LaneLimits, LaneOutcome, StatefulDriver, StatefulHandler, PARTITIONS_ASSIGNED,
    },
    topics, DeadLetters, EventProducer, HandlerError, Inbound, KafkaSettings, Outbound, Readiness,
    RecordHandler, Telemetry,
};
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

/// A member whose every record waits for a gate to open.
struct Gated {
    gate: tokio::sync::watch::Receiver<bool>,
    member: Member,
}

impl RecordHandler for Gated {
    async fn handle(&self, record: Inbound) -> Result<Vec<Outbound>, HandlerError> {
        let mut gate = self.gate.clone();
        let _ = gate.wait_for(|open| *open).await;
        self.member.handle(record).await
    }
}

/// Counts the partitions taken from a member.
#[derive(Default)]
struct Revokes(std::sync::atomic::AtomicUsize);

impl GroupListener for Revokes {
    fn revoking(&self, _: &BaseConsumer<GroupContext>, partitions: &TopicPartitionList) {
        if partitions.count() > 0 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_handlers_are_all_blocked_past_the_poll_interval_stays_in_its_group() {
    let (kafka, topic) = topic_with_steps(0..STEPS).await;
    let recorder = Arc::new(Recorder::default());
    let (open, gate) = tokio::sync::watch::channel(false);
    let handler = Gated {
        gate,
        member: Member::new("blocked", &recorder, 5),
    };
    let telemetry = Telemetry::local("driver-test");
    let producer = EventProducer::new(&kafka, &telemetry).unwrap();
    let dead_letters = DeadLetters::new(producer.clone(), kafka.topics().dead_letters);
    let revokes = Arc::new(Revokes::default());
    let ready = Readiness::new(&[PARTITIONS_ASSIGNED]);
    // librdkafka's shortest allowed poll interval is the session timeout.
    let poll_interval = Duration::from_millis(
        storefront_runtime::consume::SESSION_TIMEOUT_MS
            .parse()
            .unwrap(),
    );
    let driver = Driver::new(
        &kafka,
        &telemetry,
        &GroupOptions {
            max_poll_interval_ms: Some(poll_interval.as_millis() as u32),
            ..GroupOptions::at_least_once("blocked")
        },
        &[&topic],
        2,
        ready.clone(),
        Some(revokes.clone()),
    )
    .unwrap();
    let shutdown = CancellationToken::new();
    let running =
        tokio::spawn(driver.run(Arc::new(handler), producer, dead_letters, shutdown.clone()));
    tokio::time::timeout(Duration::from_secs(30), ready.wait())
        .await
        .expect("the member is given partitions");

    // Both slots are taken and blocked for one and a half poll intervals.
    tokio::time::sleep(poll_interval * 3 / 2).await;
    assert_eq!(recorder.handled(), 0, "the gate was shut");
    assert_eq!(
        revokes.0.load(Ordering::SeqCst),
        0,
        "the member lost its partitions while its handlers were blocked"
    );
    let members = {
        let consumer: BaseConsumer = kafka.client_config("driver-test").create().unwrap();
        let groups = consumer
            .fetch_group_list(Some(&kafka.group("blocked")), Duration::from_secs(10))
            .unwrap();
        let group = &groups.groups()[0];
        (group.state().to_owned(), group.members().len())
    };
    assert_eq!(
        members,
        ("Stable".to_owned(), 1),
        "still one member of a stable group"
    );

    open.send(true).unwrap();
    let all = handled_all(&recorder, Duration::from_secs(60)).await;
    let revoked = revokes.0.load(Ordering::SeqCst);
    shutdown.cancel();
    running.await.unwrap().unwrap();
    assert!(all, "handled {} records", recorder.handled());
    assert_each_session_handled_once_in_order(&recorder);
    assert_eq!(
        revoked, 0,
        "partitions changed hands while the member worked"
    );
}

/// Records name their lane in their payload; lane `slow` waits for a gate.
struct TwoLanes {
    gate: tokio::sync::watch::Receiver<bool>,
    done: std::sync::Mutex<Vec<String>>,
    overflowed: std::sync::Mutex<Vec<String>>,
}

fn lane_of(record: &Inbound) -> String {
    String::from_utf8_lossy(record.payload.as_deref().unwrap_or_default()).into_owned()
}

impl LaneHandler for TwoLanes {
    fn lane(&self, record: &Inbound) -> Option<String> {
        Some(lane_of(record))
    }

    async fn handle(&self, record: Inbound, stop: CancellationToken) -> LaneOutcome {
        if lane_of(&record) == "slow" {
            let mut gate = self.gate.clone();
            tokio::select! {
                _ = stop.cancelled() => return LaneOutcome::Stopped,
                _ = gate.wait_for(|open| *open) => {}
            }
        }
        self.done.lock().unwrap().push(lane_of(&record));
        LaneOutcome::Done
    }

    async fn overflow(&self, record: Inbound, lane: String, _: CancellationToken) -> LaneOutcome {
        assert_eq!(lane, lane_of(&record));
        self.overflowed.lock().unwrap().push(lane);
        LaneOutcome::Done
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_lane_holds_up_no_other_and_past_its_backlog_its_records_overflow() {
    let kafka = fresh_namespace();
    topics::ensure_topics(&kafka).await.unwrap();
    let topic = kafka.topics().page_completed;
    let (open, gate) = tokio::sync::watch::channel(false);
    let handler = Arc::new(TwoLanes {
        gate,
        done: Default::default(),
        overflowed: Default::default(),
    });
    let ready = Readiness::new(&[PARTITIONS_ASSIGNED]);
    let driver = LaneDriver::new(
        &kafka,
        &Telemetry::local("driver-test"),
        &GroupOptions::at_least_once("lanes"),
        &[&topic],
        LaneLimits {
            per_lane: 1,
            backlog_per_lane: 2,
            max_taken: 100,
        },
        ready.clone(),
        None,
    )
    .unwrap();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(driver.run(handler.clone(), shutdown.clone()));
    tokio::time::timeout(Duration::from_secs(30), ready.wait())
        .await
        .expect("the member is given partitions");
    // One at a time, so the slow lane's order of arrival is known.
    let producer: rdkafka::producer::FutureProducer =
        kafka.client_config("driver-test").create().unwrap();
    for (i, lane) in [
        "slow", "slow", "slow", "slow", "slow", "fast", "fast", "fast",
    ]
    .into_iter()
    .enumerate()
    {
        let key = format!("k{i}");
        producer
            .send(
                rdkafka::producer::FutureRecord::to(&topic)
                    .key(&key)
                    .payload(lane),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }

    // The fast lane's records are done while the slow lane's first one is
    // stuck; of the four behind it, two wait and two overflow at once.
    let fast_done = eventually(Duration::from_secs(30), || async {
        let done = handler.done.lock().unwrap().clone();
        (done.len() >= 3).then_some(done)
    })
    .await
    .expect("the fast lane is not held up");
    assert_eq!(fast_done, ["fast", "fast", "fast"]);
    let overflowed = eventually(Duration::from_secs(30), || async {
        let overflowed = handler.overflowed.lock().unwrap().clone();
        (overflowed.len() >= 2).then_some(overflowed)
    })
    .await
    .expect("the slow lane's backlog overflows");
    assert_eq!(overflowed, ["slow", "slow"]);

    // Open: the one stuck and the two waiting are done; nothing else.
    open.send(true).unwrap();
    eventually(Duration::from_secs(30), || async {
        (handler.done.lock().unwrap().len() >= 6).then_some(())
    })
    .await
    .expect("the slow lane goes on once it can");
    tokio::time::sleep(Duration::from_millis(500)).await;
    shutdown.cancel();
    running.await.unwrap();
    assert_eq!(handler.done.lock().unwrap().len(), 6);
    assert_eq!(handler.overflowed.lock().unwrap().len(), 2);
    let (committed, ends) = committed_and_ends(&kafka, &topic, "lanes");
    assert_eq!(
        committed.iter().filter(|&&c| c >= 0).sum::<i64>(),
        ends.iter().sum::<i64>(),
        "every record done is committed ({committed:?} of {ends:?})"
    );
}

/// A stateful handler: gathers records and, 100 ms after the first of a
/// batch, hands the batch to background work that writes it down.
struct Batches {
    gathered: Vec<(String, usize)>,
    due_ms: Option<i64>,
    writing: tokio::task::JoinSet<Vec<(String, usize)>>,
    log: Arc<BatchLog>,
}

#[derive(Default)]
struct BatchLog {
    written: std::sync::Mutex<Vec<(String, usize)>>,
    /// Wakes before the time the handler named.
    early_wakes: std::sync::atomic::AtomicUsize,
    batches: std::sync::atomic::AtomicUsize,
    /// The assignment generation the handler last saw.
    generation: std::sync::atomic::AtomicU64,
    finished: std::sync::atomic::AtomicBool,
}

impl StatefulHandler for Batches {
    type Done = Vec<(String, usize)>;

    async fn rebalanced(&mut self, consumer: &GroupConsumer) -> storefront_runtime::Result<()> {
        let generation = consumer.context().assignment_generation();
        self.log.generation.store(generation, Ordering::SeqCst);
        Ok(())
    }

    async fn record(&mut self, record: storefront_runtime::Inbound) {
        let session = record.key_str().unwrap().to_owned();
        let step = std::str::from_utf8(record.payload.as_deref().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        self.gathered.push((session, step));
        self.due_ms
            .get_or_insert(storefront_schemas::now_ms() + 100);
    }

    fn next_due_ms(&self) -> Option<i64> {
        self.due_ms.filter(|_| self.writing.is_empty())
    }

    fn due(&mut self, _: &Arc<GroupConsumer>, now_ms: i64) {
        if self.due_ms.is_some_and(|due| due > now_ms) {
            self.log.early_wakes.fetch_add(1, Ordering::SeqCst);
        }
        self.due_ms = None;
        let batch = std::mem::take(&mut self.gathered);
        self.writing.spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            batch
        });
    }

    async fn background(&mut self) -> Self::Done {
        match self.writing.join_next().await {
            Some(batch) => batch.unwrap(),
            None => std::future::pending().await,
        }
    }

    async fn background_done(
        &mut self,
        batch: Self::Done,
        _: &GroupConsumer,
    ) -> storefront_runtime::Result<()> {
        self.log.batches.fetch_add(1, Ordering::SeqCst);
        self.log.written.lock().unwrap().extend(batch);
        Ok(())
    }

    async fn finish(mut self, _: &Arc<GroupConsumer>) -> storefront_runtime::Result<()> {
        while let Some(batch) = self.writing.join_next().await {
            self.log.written.lock().unwrap().extend(batch.unwrap());
        }
        let rest = std::mem::take(&mut self.gathered);
        self.log.written.lock().unwrap().extend(rest);
        self.log.finished.store(true, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_handler_gets_records_in_order_and_is_woken_when_due() {
    let (kafka, topic) = topic_with_steps(0..STEPS).await;
    let log = Arc::new(BatchLog::default());
    let handler = Batches {
        gathered: Vec::new(),
        due_ms: None,
        writing: tokio::task::JoinSet::new(),
        log: log.clone(),
    };
    let driver = StatefulDriver::new(
        &kafka,
        &storefront_runtime::Telemetry::local("driver-test"),
        &storefront_runtime::consume::GroupOptions::at_least_once("stateful"),
        &[&topic],
        Readiness::new(&[]),
        Vec::new(),
    )
    .unwrap();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(driver.run(handler, shutdown.clone()));
    let all = eventually(Duration::from_secs(60), || async {
        (log.written.lock().unwrap().len() >= SESSIONS * STEPS).then_some(())
    })
    .await;
    shutdown.cancel();
    running.await.unwrap().unwrap();
    assert!(
        all.is_some(),
        "written {}",
        log.written.lock().unwrap().len()
    );

    // Every record once, each session's in the order written; written by
    // the background work the wakes started, none of them early.
    let mut by_session: std::collections::HashMap<String, Vec<usize>> = Default::default();
    for (session, step) in log.written.lock().unwrap().iter() {
        by_session.entry(session.clone()).or_default().push(*step);
    }
    assert_eq!(by_session.len(), SESSIONS);
    for (session, steps) in &by_session {
        assert_eq!(steps, &(0..STEPS).collect::<Vec<_>>(), "{session}");
    }
    assert!(log.batches.load(Ordering::SeqCst) > 0);
    assert_eq!(log.early_wakes.load(Ordering::SeqCst), 0);
    assert!(
        log.generation.load(Ordering::SeqCst) > 0,
        "saw the assignment"
    );
    assert!(log.finished.load(Ordering::SeqCst));
}

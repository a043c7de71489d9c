//! Only the current owner of a partition writes its pages. Two aggregator
//! processes share one partition; the one that owns it is frozen (SIGSTOP)
//! while a request waits for its deadline, past the group's session
//! timeout, so the other takes the partition over and answers the request.
//! Thawed, the old owner must not answer it a second time: neither from
//! its deadline timer (the request was still pending when it froze) nor
//! from a page it had already queued while the broker was away.

use std::{path::PathBuf, time::Duration};

use storefront::{
    broker::{self, Cluster, Ports},
    processes::ServiceProcess,
};
use storefront_e2e::{eventually, read_topic, scratch_dir};
use storefront_runtime::{topics, EventProducer, KafkaSettings, Outbound, Telemetry};
use storefront_schemas::{now_ms, PageRequested, RequestContext, RequestId, SessionId};

/// Two aggregators in one group on a one-partition namespace, both ready.
async fn two_aggregators(kafka: &KafkaSettings, dir: &std::path::Path) -> [ServiceProcess; 2] {
    topics::ensure_topics(kafka).await.unwrap();
    let env = vec![
        (
            "KAFKA_BOOTSTRAP_SERVERS".to_owned(),
            kafka.bootstrap_servers.clone(),
        ),
        (
            "STOREFRONT_TOPIC_PREFIX".to_owned(),
            kafka.topic_prefix.clone(),
        ),
        ("STOREFRONT_PARTITIONS".to_owned(), "1".to_owned()),
        ("RUST_LOG".to_owned(), "info,librdkafka=warn".to_owned()),
    ];
    let start = |name: &str| {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], broker::free_port().unwrap()));
        ServiceProcess::spawn(
            &PathBuf::from(env!("CARGO_BIN_EXE_storefront")),
            name,
            &["run", "aggregator"],
            addr,
            env.clone(),
            dir.join(format!("{name}.log")),
        )
        .unwrap()
    };
    let a = start("aggregator-a");
    a.wait_ready(Duration::from_secs(60)).await.unwrap();
    let b = start("aggregator-b");
    b.wait_ready(Duration::from_secs(60)).await.unwrap();
    // B's arrival moved the partition, or not; let that rebalance finish.
    tokio::time::sleep(Duration::from_secs(3)).await;
    [a, b]
}

/// A request with no parts: it is answered (partial) at its deadline.
async fn send_request(kafka: &KafkaSettings, deadline_in_ms: i64) -> String {
    let now = now_ms();
    let request_id = RequestId::new();
    let request = PageRequested {
        context: RequestContext {
            request_id,
            session_id: SessionId::new(),
            requested_at_ms: now,
            deadline_ms: now + deadline_in_ms,
            reply_topic: kafka.topics().page_completed,
            reply_partition: 0,
        },
        login: None,
        logout: false,
        callback_url: None,
        idempotency_key: None,
    };
    let producer = EventProducer::new(kafka, &Telemetry::local("owners-test")).unwrap();
    let record = Outbound::for_request(
        &kafka.topics().page_requested,
        &request.context,
        &Default::default(),
        &request,
    );
    producer.send(&record).await.unwrap();
    request_id.to_string()
}

async fn pages_for(kafka: &KafkaSettings, request_id: &str) -> usize {
    read_topic(kafka, &kafka.topics().page_completed)
        .await
        .iter()
        .filter(|r| r.header("request-id").as_deref() == Some(request_id))
        .count()
}

/// Which of the two holds a pending join (owns the partition).
async fn owner_of_the_join(aggregators: &[ServiceProcess; 2]) -> usize {
    eventually(Duration::from_secs(20), || async {
        for (i, aggregator) in aggregators.iter().enumerate() {
            let metrics = storefront_e2e::telemetry::scrape(aggregator.addr).await;
            let pending =
                storefront_e2e::telemetry::sample(&metrics, "storefront_pending_joins", &[]);
            if pending == Some(1.0) {
                return Some(i);
            }
        }
        None
    })
    .await
    .expect("one aggregator holds the request's join")
}

/// Longer than the consumers' 10 s session timeout and the rebalance after it.
const FROZEN_FOR: Duration = Duration::from_secs(16);

/// With `owner` frozen (just now): waits for the other aggregator to answer
/// the request, thaws the old owner once it has been frozen long enough to
/// lose its partition, gives it time to write a second page, and checks
/// there is one.
async fn one_page_after_the_thaw(
    kafka: &KafkaSettings,
    aggregators: [ServiceProcess; 2],
    owner: usize,
    request_id: &str,
    dir: &std::path::Path,
) {
    let frozen_at = std::time::Instant::now();
    let answered = eventually(Duration::from_secs(60), || async {
        (pages_for(kafka, request_id).await > 0).then_some(())
    })
    .await;
    tokio::time::sleep(FROZEN_FOR.saturating_sub(frozen_at.elapsed())).await;
    aggregators[owner].signal("-CONT").await.unwrap();
    assert!(
        answered.is_some(),
        "the successor answers (logs in {})",
        dir.display()
    );
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        pages_for(kafka, request_id).await,
        1,
        "one page for the request (logs in {})",
        dir.display()
    );
    for aggregator in aggregators {
        aggregator.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_owner_does_not_answer_at_its_deadline_a_request_its_successor_answered() {
    let dir = scratch_dir("owners-timer");
    std::fs::create_dir_all(&dir).unwrap();
    let mut kafka = storefront_e2e::fresh_namespace();
    kafka.partitions = 1;
    let aggregators = two_aggregators(&kafka, &dir).await;

    let request_id = send_request(&kafka, 4_000).await;
    let owner = owner_of_the_join(&aggregators).await;
    aggregators[owner].signal("-STOP").await.unwrap();
    // The other one takes the partition over, finds the request unanswered
    // and answers it at its deadline; thawed, the old owner's deadline has
    // long passed, and its timer fires first.
    one_page_after_the_thaw(&kafka, aggregators, owner, &request_id, &dir).await;
}

/// Two aggregators on a broker of the test's own (it is stopped and
/// started), one request pending, and which aggregator holds it.
struct OnItsOwnBroker {
    dir: PathBuf,
    cluster: Cluster,
    kafka: KafkaSettings,
    aggregators: [ServiceProcess; 2],
    request_id: String,
    owner: usize,
}

async fn on_its_own_broker(name: &str, prefix: &str) -> OnItsOwnBroker {
    let dir = scratch_dir(name);
    std::fs::create_dir_all(&dir).unwrap();
    let cluster = Cluster::launch(dir.join("kafka"), 1, Ports::Free)
        .await
        .unwrap();
    let mut kafka = cluster.kafka_settings();
    kafka.partitions = 1;
    kafka.topic_prefix = prefix.into();
    let aggregators = two_aggregators(&kafka, &dir).await;
    let request_id = send_request(&kafka, 3_000).await;
    let owner = owner_of_the_join(&aggregators).await;
    OnItsOwnBroker {
        dir,
        cluster,
        kafka,
        aggregators,
        request_id,
        owner,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_queued_during_a_broker_outage_by_an_owner_that_lost_its_partition_never_lands() {
    let setup = on_its_own_broker("owners-outage", "outage.").await;
    let (dir, kafka, request_id, owner) = (setup.dir, setup.kafka, setup.request_id, setup.owner);
    let (mut cluster, aggregators) = (setup.cluster, setup.aggregators);
    // The broker goes away before the deadline: at the deadline the owner
    // queues the page, and it cannot be delivered.
    let mut cluster = tokio::task::spawn_blocking(move || {
        cluster.stop_node(1).unwrap();
        cluster
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Frozen with its page queued, the owner misses the broker's return;
    // the other aggregator takes the partition and answers the request.
    aggregators[owner].signal("-STOP").await.unwrap();
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.start_node(1).unwrap();
        cluster
    })
    .await
    .unwrap();
    one_page_after_the_thaw(&kafka, aggregators, owner, &request_id, &dir).await;
    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .unwrap();
}

/// The other side of the rule: a page its owner had to give up (its
/// transaction could not commit before the partition was revoked) is not
/// an answer. When the partition comes back, to this instance or another,
/// the request's inputs are read again and it is answered, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_given_up_with_its_partition_is_answered_when_the_partition_comes_back() {
    let setup = on_its_own_broker("owners-given-up", "given-up.").await;
    let (dir, kafka, request_id, owner) = (setup.dir, setup.kafka, setup.request_id, setup.owner);
    let (mut cluster, aggregators) = (setup.cluster, setup.aggregators);
    // The broker goes away before the deadline and stays away past the
    // group's session timeout: the owner queues the page at the deadline,
    // cannot commit it, and loses its partition when the broker returns.
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop_node(1).unwrap();
        std::thread::sleep(FROZEN_FOR);
        cluster.start_node(1).unwrap();
        cluster
    })
    .await
    .unwrap();
    let answered = eventually(Duration::from_secs(90), || async {
        (pages_for(&kafka, &request_id).await > 0).then_some(())
    })
    .await;
    assert!(
        answered.is_some(),
        "the request is answered after the outage (owner {owner}, logs in {})",
        dir.display()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        pages_for(&kafka, &request_id).await,
        1,
        "one page (logs in {})",
        dir.display()
    );
    for aggregator in aggregators {
        aggregator.stop().await;
    }
    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .unwrap();
}

//! Keyed load for the consume driver: sessions that each write numbered
//! steps, a handler that takes a random while over each and remembers the
//! order it saw them in, and a driver member to run it. Shared by the
//! driver's tests and its throughput benchmark.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use rdkafka::producer::{FutureProducer, FutureRecord};
use storefront_runtime::{
    consume::{Driver, GroupOptions},
    DeadLetters, EventProducer, HandlerError, Inbound, KafkaSettings, Outbound, Readiness,
    RecordHandler, Telemetry,
};
use tokio_util::sync::CancellationToken;

/// Sessions, and records per session: the records of one session are its
/// steps 0, 1, 2... in the order they were written.
pub const SESSIONS: usize = 40;
pub const STEPS: usize = 5;

/// Remembers which member handled each session's steps, in the order it
/// handled them, and how many records were being handled at once.
#[derive(Default)]
pub struct Recorder {
    pub seen: Mutex<HashMap<String, Vec<(usize, &'static str)>>>,
    running: AtomicUsize,
    pub most_at_once: AtomicUsize,
}

pub struct Member {
    pub name: &'static str,
    pub recorder: Arc<Recorder>,
    /// The longest a record takes, in milliseconds (random below it).
    pub max_delay_ms: u64,
}

impl Member {
    pub fn new(name: &'static str, recorder: &Arc<Recorder>, max_delay_ms: u64) -> Self {
        Self {
            name,
            recorder: recorder.clone(),
            max_delay_ms,
        }
    }
}

impl RecordHandler for Member {
    async fn handle(&self, record: Inbound) -> Result<Vec<Outbound>, HandlerError> {
        let now = self.recorder.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.recorder.most_at_once.fetch_max(now, Ordering::SeqCst);
        let delay = rand::random::<u64>() % self.max_delay_ms.max(1);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let session = record.key_str().expect("a session key").to_owned();
        let step: usize = std::str::from_utf8(record.payload.as_deref().unwrap_or_default())
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| HandlerError::Invalid("not a step".into()))?;
        self.recorder
            .seen
            .lock()
            .unwrap()
            .entry(session)
            .or_default()
            .push((step, self.name));
        self.recorder.running.fetch_sub(1, Ordering::SeqCst);
        Ok(Vec::new())
    }
}

/// Writes `steps` of `sessions` sessions, interleaving sessions, keyed by session.
pub async fn write_steps(
    kafka: &KafkaSettings,
    topic: &str,
    sessions: usize,
    steps: std::ops::Range<usize>,
) {
    let producer: FutureProducer = kafka
        .client_config("driver-test")
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for step in steps {
        for session in 0..sessions {
            let (key, payload) = (format!("session-{session}"), step.to_string());
            producer
                .send(
                    FutureRecord::to(topic).key(&key).payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
        }
    }
}

/// Starts a member of `group` on `topic`; it runs until `shutdown`.
pub fn start_member(
    kafka: &KafkaSettings,
    topic: &str,
    group: &str,
    member: Member,
    max_in_flight: usize,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<storefront_runtime::Result<()>> {
    let telemetry = Telemetry::local("driver-test");
    let producer = EventProducer::new(kafka, &telemetry).unwrap();
    let dead_letters = DeadLetters::new(producer.clone(), kafka.topics().dead_letters);
    let driver = Driver::new(
        kafka,
        &telemetry,
        &GroupOptions::at_least_once(group),
        &[topic],
        max_in_flight,
        readiness,
        None,
    )
    .unwrap();
    tokio::spawn(driver.run(Arc::new(member), producer, dead_letters, shutdown))
}

impl Recorder {
    /// Records handled so far.
    pub fn handled(&self) -> usize {
        self.seen.lock().unwrap().values().map(Vec::len).sum()
    }
}

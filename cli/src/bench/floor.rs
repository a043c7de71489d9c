//! The broker's own floor: how long one record takes from `send` to a
//! consumer with the services' client settings (the same producer, the
//! same `fetch.wait.max.ms`), at a fixed rate. A page crosses
//! [`CRITICAL_PATH_HOPS`] such hops, so no design on Kafka can beat that
//! many times the one-hop latency.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    Message, Offset, TopicPartitionList,
};
use serde::Serialize;
use storefront_runtime::{EventProducer, KafkaSettings, Outbound, Telemetry};
use storefront_schemas::{Product, RequestId};

/// page.requested, user.resolved, history.fetched (or ads.selected), page.completed.
pub const CRITICAL_PATH_HOPS: u32 = 4;

/// One hop's latency, and the floor it sets.
#[derive(Debug, Clone, Serialize)]
pub struct Floor {
    pub rate: f64,
    pub records: usize,
    pub hop_p50_ms: f64,
    pub hop_p99_ms: f64,
    /// [`CRITICAL_PATH_HOPS`] times the one-hop percentiles.
    pub floor_p50_ms: f64,
    pub floor_p99_ms: f64,
}

/// Sends `rate` records a second for `duration` to the request-path topic
/// `page.requested` of `kafka`'s namespace (a namespace of its own) and
/// times each from its intended send time to its arrival at a consumer.
pub async fn measure(
    kafka: &KafkaSettings,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<Floor> {
    storefront_runtime::topics::ensure_topics(kafka).await?;
    let topic = kafka.topics().page_requested;
    let producer = EventProducer::new(kafka, &Telemetry::local("storefront-bench"))?;
    producer.wait_until_warm(Duration::from_secs(10)).await?;

    let consumer: BaseConsumer = kafka
        .consumer_config("storefront-bench-floor")
        .set("group.id", kafka.group("storefront-bench-floor"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", kafka.fetch_wait_ms.to_string())
        .create()?;
    let partitions = storefront_runtime::topics::partition_counts(kafka, &[&topic]).await?[&topic];
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(&topic, p, Offset::End)?;
    }
    consumer.assign(&assignment)?;
    // Each record's key is its sequence number; its intended send time is known.
    let stop = Arc::new(AtomicBool::new(false));
    let arrivals = {
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || {
            let mut arrivals = HashMap::new();
            while !stop.load(Ordering::Relaxed) {
                if let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) {
                    if let Some(key) = message.key().and_then(|k| std::str::from_utf8(k).ok()) {
                        if let Ok(n) = key.parse::<usize>() {
                            arrivals.insert(n, std::time::Instant::now());
                        }
                    }
                }
            }
            arrivals
        })
    };
    // Let the assignment take effect before the first record.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let payload = Product {
        product_id: "p-floor".into(),
        name: "floor".into(),
        category: "bench".into(),
        price_cents: 1,
    };
    let interval = Duration::from_secs_f64(1.0 / rate);
    let count = (rate * duration.as_secs_f64()).round() as usize;
    let started = std::time::Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    for n in 0..count {
        let intended = started + interval * n as u32;
        tokio::time::sleep_until(intended.into()).await;
        // Keyed by its sequence number, with a request id like a request's.
        let mut record = Outbound::reference(&topic, &n.to_string(), &payload);
        record.headers.request_id = Some(RequestId::new());
        let producer = producer.clone();
        sends.spawn(async move { producer.send(&record).await.map(|_| ()) });
    }
    while let Some(sent) = sends.join_next().await {
        sent??;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let arrivals = arrivals.await?;
    let mut latencies: Vec<f64> = arrivals
        .iter()
        .map(|(n, at)| {
            let intended = started + interval * *n as u32;
            at.saturating_duration_since(intended).as_secs_f64() * 1000.0
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let rank = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len().max(1));
        latencies.get(rank - 1).copied().unwrap_or(f64::NAN)
    };
    let hops = f64::from(CRITICAL_PATH_HOPS);
    Ok(Floor {
        rate,
        records: latencies.len(),
        hop_p50_ms: at(0.5),
        hop_p99_ms: at(0.99),
        floor_p50_ms: at(0.5) * hops,
        floor_p99_ms: at(0.99) * hops,
    })
}

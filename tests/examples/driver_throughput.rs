//! How much the consume driver's concurrency across sessions buys: the same
//! keyed records (every session's steps in order) handled one at a time and
//! with more records at once, on the test broker, with a handler that waits
//! like a service calling out. Prints records per second for each bound.
//!
//!   cargo run --release -p storefront-e2e --example driver_throughput [sessions]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use storefront_e2e::{
    driver_load::{start_member, write_steps, Member, Recorder},
    fresh_namespace,
};
use storefront_runtime::{topics, Readiness};
use tokio_util::sync::CancellationToken;

const STEPS: usize = 5;
/// The handler takes a random while below this per record.
const MAX_DELAY_MS: u64 = 10;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sessions: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 200,
    };
    let kafka = fresh_namespace();
    topics::ensure_topics(&kafka).await?;
    let topic = kafka.topics().user_resolved;
    write_steps(&kafka, &topic, sessions, 0..STEPS).await;
    let total = sessions * STEPS;
    println!(
        "consume driver: {total} records ({sessions} sessions x {STEPS} steps in order), \
         handler 0-{MAX_DELAY_MS} ms per record, {} partitions",
        kafka.partitions
    );
    for max_in_flight in [1, 4, 16, 64] {
        let recorder = Arc::new(Recorder::default());
        let member = Member::new("bench", &recorder, MAX_DELAY_MS);
        let shutdown = CancellationToken::new();
        let group = format!("bench-{max_in_flight}");
        let started = Instant::now();
        let running = start_member(
            &kafka,
            &topic,
            &group,
            member,
            max_in_flight,
            Readiness::new(&[]),
            shutdown.clone(),
        );
        // Timed from the first record handled: joining the group is not the driver's work.
        while recorder.handled() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let first = Instant::now();
        while recorder.handled() < total {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let elapsed = first.elapsed();
        shutdown.cancel();
        running.await??;
        println!(
            "max_in_flight {max_in_flight:>3}: {:>7.0} records/s ({:.2} s; most at once {}; joined in {:.1} s)",
            total as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64(),
            recorder.most_at_once.load(std::sync::atomic::Ordering::SeqCst),
            (first - started).as_secs_f64(),
        );
    }
    Ok(())
}

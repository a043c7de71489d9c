//! A partition's low and high watermarks, asked again while the partition
//! is between leaders.

use std::time::{Duration, Instant};

use rdkafka::{
    consumer::Consumer,
    error::{KafkaError, KafkaResult},
    types::RDKafkaErrorCode,
};

/// The low and high watermarks of `topic`/`partition`. A partition just
/// created, or whose leader just moved, answers "not leader" for a moment
/// (Kafka elects leaders after it acknowledges the topic, and metadata can
/// name a leader before that broker serves it): such answers are retried
/// until `timeout`, librdkafka's query is not.
pub fn fetch<C: Consumer<X>, X: rdkafka::consumer::ConsumerContext>(
    consumer: &C,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> KafkaResult<(i64, i64)> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match consumer.fetch_watermarks(topic, partition, left) {
            Err(e) if is_transient(&e) && Instant::now() + RETRY_AFTER < deadline => {
                std::thread::sleep(RETRY_AFTER);
            }
            answer => return answer,
        }
    }
}

const RETRY_AFTER: Duration = Duration::from_millis(100);

fn is_transient(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::NotCoordinator
        )
    )
}

//! A partition's low and high watermarks, asked again while the partition
//! is between leaders.

use std::time::{Duration, Instant};

use rdkafka::{
    consumer::Consumer,
    error::{KafkaError, KafkaResult},
    types::RDKafkaErrorCode,
};

use crate::retry::{retry_blocking, Failure, GaveUp, Policy};

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
    let attempt = |_| {
        let left = deadline.saturating_duration_since(Instant::now());
        consumer
            .fetch_watermarks(topic, partition, left)
            .map_err(|e| match is_transient(&e) {
                true => Failure::Transient(e),
                false => Failure::Permanent(e),
            })
    };
    retry_blocking(Policy::BROKER, deadline, attempt).map_err(GaveUp::into_inner)
}

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

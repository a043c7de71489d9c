//! Which partition a key lands in: the murmur2 hash that Kafka's Java
//! client and librdkafka's `murmur2_random` partitioner use, so a service
//! can find a session's records without reading every partition.

/// The partition of `key` among `partitions` (at least 1).
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % partitions.max(1) as u32) as i32
}

/// Kafka's murmur2 (seed 0x9747b28c).
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes(chunk.try_into().expect("four bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, byte) in tail.iter().enumerate().rev() {
            h ^= u32::from(*byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rdkafka::{
        mocking::MockCluster,
        producer::{FutureProducer, FutureRecord},
        ClientConfig,
    };

    use super::*;

    #[test]
    fn matches_the_java_clients_test_vectors() {
        // From Kafka's UtilsTest.testMurmur2 (signed 32-bit results).
        let cases: [(&str, i32); 6] = [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key.as_bytes()) as i32, expected, "{key}");
        }
    }

    #[tokio::test]
    async fn agrees_with_librdkafkas_murmur2_partitioner() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("keys", 7, 1).unwrap();
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("partitioner", "murmur2_random")
            .create()
            .unwrap();
        for i in 0..50 {
            let key = storefront_schemas::SessionId::new().to_string() + &"x".repeat(i % 4);
            let delivery = producer
                .send(
                    FutureRecord::<_, ()>::to("keys").key(&key),
                    Duration::from_secs(5),
                )
                .await
                .unwrap();
            assert_eq!(
                partition_for_key(key.as_bytes(), 7),
                delivery.partition,
                "{key}"
            );
        }
    }
}

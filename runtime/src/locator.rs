//! Where one session's requests are on the topics, for whoever looks one up
//! (the gateway's status lookup, `storefront trace`). Every record of a
//! request is keyed by its session and the request-path topics are
//! co-partitioned, so a session names one partition number on each; the
//! request's page is on the reply partition its request named; and an ID
//! (UUIDv7) says from when to read.

use storefront_schemas::SessionId;

use crate::{
    partitioner::partition_for_key,
    snapshot::{PartitionReader, Since, TopicPartition},
    Error, Result, Topics,
};

/// How far a record's timestamp may precede the time in its request's ID
/// (clocks of two gateways, producer batching).
pub const CLOCK_SKEW_MS: i64 = 5_000;

/// The partitions that hold a session's records, on one namespace's topics.
#[derive(Debug, Clone)]
pub struct Locator {
    topics: Topics,
    /// Partitions of every request-path topic.
    partitions: i32,
}

impl Locator {
    /// Reads how many partitions the request-path topics have (they agree).
    pub fn discover(reader: &PartitionReader, topics: Topics) -> Result<Self> {
        let partitions = reader.partitions_of(&topics.page_requested)?.len() as i32;
        if partitions == 0 {
            return Err(Error::TimedOut("the partitions of page.requested"));
        }
        Ok(Self { topics, partitions })
    }

    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// How many partitions each request-path topic has.
    pub fn partitions(&self) -> i32 {
        self.partitions
    }

    /// The partition number of `session_id` on every co-partitioned topic.
    pub fn partition_of(&self, session_id: SessionId) -> i32 {
        partition_for_key(session_id.to_string().as_bytes(), self.partitions)
    }

    /// The session's partition of the request topic, the three part topics
    /// and `callback.reported`: every record of its requests but the pages.
    pub fn request_records(&self, session_id: SessionId) -> Vec<TopicPartition> {
        let t = &self.topics;
        self.session_partitions(
            session_id,
            [
                &t.page_requested,
                &t.user_resolved,
                &t.history_fetched,
                &t.ads_selected,
                &t.callback_reported,
            ],
        )
    }

    /// The session's partition of each of `topics`.
    pub fn session_partitions<'a>(
        &self,
        session_id: SessionId,
        topics: impl IntoIterator<Item = &'a String>,
    ) -> Vec<TopicPartition> {
        let partition = self.partition_of(session_id);
        topics
            .into_iter()
            .map(|topic| TopicPartition::new(topic, partition))
            .collect()
    }

    /// The `page.completed` partitions that requests named as their reply address.
    pub fn replies(&self, reply_partitions: impl IntoIterator<Item = i32>) -> Vec<TopicPartition> {
        reply_partitions
            .into_iter()
            .map(|p| TopicPartition::new(&self.topics.page_completed, p))
            .collect()
    }

    /// Where to start reading for the records of an ID made at `created_ms`.
    pub fn since_created(created_ms: i64) -> Since {
        Since::Timestamp(created_ms - CLOCK_SKEW_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_names_the_same_partition_on_every_topic_and_its_replies_are_named() {
        let locator = Locator {
            topics: Topics::with_prefix("p."),
            partitions: 3,
        };
        let session = SessionId::parse("01a232cd-ffda-77e5-b09b-826009d0401e").unwrap();
        let records = locator.request_records(session);
        assert_eq!(records.len(), 5);
        let partition = locator.partition_of(session);
        assert!(records.iter().all(|tp| tp.partition == partition));
        assert_eq!(records[0].topic, "p.page.requested");
        assert_eq!(
            locator.replies([2]),
            [TopicPartition::new("p.page.completed", 2)]
        );
        assert_eq!(Locator::since_created(10_000), Since::Timestamp(5_000));
    }
}

//! Records and the input offsets they consume, written in one Kafka
//! transaction: a reader with `isolation.level=read_committed` sees both or
//! neither. The offsets are committed for a consumer group as of its current
//! generation, so a member the group has since left behind (frozen, cut off,
//! declared dead) cannot commit: the broker refuses its offsets and the
//! transaction aborts, its records never visible.

use std::time::Duration;

use rdkafka::{
    consumer::ConsumerGroupMetadata, error::KafkaError, producer::Producer, TopicPartitionList,
};

use crate::{EventProducer, Outbound};

/// Why a transaction did not commit.
#[derive(Debug, thiserror::Error)]
pub enum TransactionError {
    /// Aborted: nothing of it is visible, and the producer can try again.
    #[error("transaction aborted: {0}")]
    Aborted(String),
    /// The producer can write no more, and whether the transaction
    /// committed is not known (another instance took its transactional id,
    /// the broker timed the transaction out, or its commit could not be
    /// confirmed): start a new producer and read the inputs anew from the
    /// committed offsets.
    #[error("transactional producer failed for good: {0}")]
    Fatal(String),
}

impl EventProducer {
    /// Registers this producer's transactional id with the broker, which
    /// aborts whatever an earlier producer with the id left open. Blocking.
    pub fn init_transactions(&self, timeout: Duration) -> crate::Result<()> {
        self.raw()
            .init_transactions(timeout)
            .map_err(|source| crate::Error::Kafka {
                action: "initialise transactions",
                source,
            })
    }

    /// Writes `records` and commits `offsets` for `group` in one transaction,
    /// within `timeout` as a whole (and half of it again to abort): a
    /// broker that does not answer cannot hold the caller, and whoever
    /// waits for it (a revoke), much longer. Blocking: call it from a
    /// blocking thread of the runtime.
    pub fn commit_atomically(
        &self,
        records: &[Outbound],
        offsets: &TopicPartitionList,
        group: &ConsumerGroupMetadata,
        timeout: Duration,
    ) -> Result<(), TransactionError> {
        let producer = self.raw();
        let runtime = tokio::runtime::Handle::current();
        let kafka = |action| move |source| crate::Error::Kafka { action, source };
        let deadline = std::time::Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(std::time::Instant::now());
        let abort_within = timeout / 2;
        let written = (|| -> crate::Result<()> {
            producer
                .begin_transaction()
                .map_err(kafka("begin a transaction"))?;
            let mut pending = Vec::with_capacity(records.len());
            for record in records {
                pending.push(runtime.block_on(self.enqueue(record))?);
            }
            if offsets.count() > 0 {
                producer
                    .send_offsets_to_transaction(offsets, group, left())
                    .map_err(kafka("commit offsets in the transaction"))?;
            }
            for queued in pending {
                runtime
                    .block_on(tokio::time::timeout(left(), Self::acknowledged(queued)))
                    .map_err(|_| {
                        crate::Error::TimedOut("the transaction's records to be acknowledged")
                    })??;
            }
            // rdkafka's commit_transaction flushes first, and its flush,
            // finding anything outstanding, polls for the whole of its
            // timeout (at least 100 ms); flushed in short steps here, the
            // commit's own flush finds nothing left.
            while producer.flush(FLUSH_STEP).is_err() && !left().is_zero() {}
            Ok(())
        })();
        match written {
            Ok(()) => {}
            Err(error) if is_fatal(&error) => {
                return Err(TransactionError::Fatal(error.to_string()))
            }
            Err(error) => {
                return match producer.abort_transaction(abort_within) {
                    Ok(()) => Err(TransactionError::Aborted(error.to_string())),
                    Err(abort) => Err(TransactionError::Fatal(format!("{error}; then {abort}"))),
                }
            }
        }
        // A commit that timed out may have reached the broker: it is asked
        // again (the broker answers for the same transaction), never aborted
        // and redone. Only the broker's own refusal makes it abortable.
        loop {
            match producer.commit_transaction(left()) {
                Ok(()) => break,
                Err(KafkaError::Transaction(e)) if e.txn_requires_abort() && !e.is_fatal() => {
                    return match producer.abort_transaction(abort_within) {
                        Ok(()) => Err(TransactionError::Aborted(e.to_string())),
                        Err(abort) => Err(TransactionError::Fatal(format!("{e}; then {abort}"))),
                    };
                }
                Err(KafkaError::Transaction(e)) if e.is_retriable() && !left().is_zero() => {
                    tracing::warn!(error = %e, "transaction commit not confirmed yet; asking again");
                }
                Err(error) => return Err(TransactionError::Fatal(error.to_string())),
            }
        }
        Ok(())
    }
}

/// How long one step of the flush before a commit polls.
const FLUSH_STEP: Duration = Duration::from_millis(2);

fn is_fatal(error: &crate::Error) -> bool {
    matches!(error, crate::Error::Kafka { source: KafkaError::Transaction(e), .. } if e.is_fatal())
}

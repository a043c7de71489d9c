//! The driver of a consumer whose records all change one state, in the
//! order they arrive (the aggregator's joins): it takes records off the
//! group consumer, wakes the handler at the times it names (deadlines,
//! commits due), hands it back what its background work (a transaction)
//! ended with, and has it take in every rebalance before anything else.
//! The handler says what each of these does; it writes no loop.

use std::{future::Future, sync::Arc, time::Duration};

use rdkafka::consumer::StreamConsumer;
use storefront_schemas::now_ms;
use tokio_util::sync::CancellationToken;

use super::{
    driver::commit_and_close,
    group::{self, Commits, GroupContext, GroupListener, GroupOptions},
};
use crate::{Inbound, KafkaSettings, Readiness, Result};

/// The group consumer a stateful handler is driven by.
pub type GroupConsumer = StreamConsumer<GroupContext>;

/// What a stateful consumer does with its records, at its deadlines and
/// when partitions change hands. Called from one task, one call at a time.
pub trait StatefulHandler: Send + 'static {
    /// What the handler's background work ends with.
    type Done: Send;

    /// Takes in the rebalances since the last call (partitions revoked,
    /// assigned anew). Called before anything is due and before each
    /// record, so nothing of a partition revoked is acted on after the revoke.
    fn rebalanced(&mut self, consumer: &GroupConsumer) -> impl Future<Output = Result<()>> + Send;

    /// One record, in the order the partition holds it.
    fn record(&mut self, record: Inbound) -> impl Future<Output = ()> + Send;

    /// The time (Unix ms) something is due, if anything is: a deadline, a
    /// commit. `due` is called once it has come.
    fn next_due_ms(&self) -> Option<i64>;

    /// Does what is due at `now_ms`; may start background work.
    fn due(&mut self, consumer: &Arc<GroupConsumer>, now_ms: i64);

    /// The end of the background work under way; pending while none is.
    fn background(&mut self) -> impl Future<Output = Self::Done> + Send;

    /// Takes in how background work ended.
    fn background_done(
        &mut self,
        done: Self::Done,
        consumer: &GroupConsumer,
    ) -> impl Future<Output = Result<()>> + Send;

    /// At shutdown: ends the work under way and hands back the rest.
    fn finish(self, consumer: &Arc<GroupConsumer>) -> impl Future<Output = Result<()>> + Send;
}

/// One consumer group member driving a [`StatefulHandler`].
pub struct StatefulDriver {
    consumer: Arc<GroupConsumer>,
    commits: Commits,
}

impl StatefulDriver {
    /// Joins the group `options` names on `topics`; `listeners` are told of
    /// rebalances from the consumer's thread.
    pub fn new(
        settings: &KafkaSettings,
        telemetry: &crate::Telemetry,
        options: &GroupOptions,
        topics: &[&str],
        readiness: Readiness,
        listeners: Vec<Arc<dyn GroupListener>>,
    ) -> Result<Self> {
        let consumer =
            group::group_consumer(settings, telemetry, options, topics, readiness, listeners)?;
        Ok(Self {
            consumer: Arc::new(consumer),
            commits: options.commits,
        })
    }

    /// Runs until `shutdown`, then lets the handler finish and leaves the
    /// group (committing the stored offsets, if the consumer commits).
    pub async fn run<H: StatefulHandler>(
        self,
        mut handler: H,
        shutdown: CancellationToken,
    ) -> Result<()> {
        let consumer = self.consumer;
        loop {
            handler.rebalanced(&consumer).await?;
            let now = now_ms();
            if handler.next_due_ms().is_some_and(|at| at <= now) {
                handler.due(&consumer, now);
            }
            let wait = handler
                .next_due_ms()
                .map(|at| Duration::from_millis((at - now_ms()).max(0) as u64));
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                done = handler.background() => handler.background_done(done, &consumer).await?,
                _ = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {}
                record = crate::next_record(&consumer, &shutdown) => match record {
                    Some(record) => {
                        handler.rebalanced(&consumer).await?;
                        handler.record(record).await;
                    }
                    None => break,
                },
            }
        }
        handler.finish(&consumer).await?;
        match self.commits {
            Commits::Stored => commit_and_close(consumer).await,
            // Leaves the group; the offsets went with the transactions.
            Commits::InTransactions => {
                let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
            }
        }
        Ok(())
    }
}

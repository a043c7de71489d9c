//! aggregator: the stream processor that joins each request's parts
//! (`page.requested`, `user.resolved`, `history.fetched`, `ads.selected`)
//! into one `page.completed`, written to the reply partition the gateway
//! named. Complete when all parts are in, rejected at once when
//! authentication failed, partial at the request's wall-clock deadline on
//! its own timer. Pages go out in Kafka transactions together with the
//! input offsets they consume, committed for the consumer group's current
//! generation: after a crash the uncommitted inputs come back and rebuild
//! the joins that were pending, and an instance the group has left behind
//! (frozen, cut off) cannot commit a page for a partition it lost. Only the
//! current owner of a partition writes its pages (`ownership.rs`); what was
//! already answered is read back from `page.completed` at every assignment,
//! so no request is answered twice.

pub mod join;
mod ownership;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use opentelemetry::{trace::TraceContextExt, Context};
use rdkafka::{consumer::Consumer, Offset, TopicPartitionList};
use storefront_runtime::{
    consume::{self, Commits, GroupConsumer, GroupOptions, StatefulDriver, StatefulHandler},
    health,
    offsets::OffsetTracker,
    retry::{retry, Failure, GaveUp, Policy, Until},
    service::{self, PRODUCER_WARM},
    snapshot::{self, Since},
    topics, trace,
    transaction::TransactionError,
    DeadLetters, EventProducer, Inbound, KafkaSettings, Outbound, Readiness, RunningService,
    Telemetry, TelemetrySettings, Topics,
};
use storefront_schemas::{now_ms, EventSet, Milestone, RequestEvent};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    join::{Added, Arrival, Joins, Part, ReadyPage, Source},
    ownership::Ownership,
};

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "aggregator",
    about = "Joins each request's parts into the completed page"
)]
pub struct Settings {
    #[command(flatten)]
    pub kafka: KafkaSettings,
    #[command(flatten)]
    pub telemetry: TelemetrySettings,
    /// Address of /healthz and /readyz.
    #[arg(long, env = "STOREFRONT_HTTP_ADDR", default_value = "127.0.0.1:8084")]
    pub http_addr: SocketAddr,
    /// This instance's name, unique among the running aggregators and kept
    /// across its restarts (its transactional id): a restarted instance
    /// then aborts what it left open at once. Default: the host name and
    /// the HTTP port (a random name when the port is 0).
    #[arg(long, env = "STOREFRONT_INSTANCE_ID")]
    pub instance_id: Option<String>,
}

const SERVICE: &str = "aggregator";

/// How long one transaction (pages and offsets) may take before it is aborted.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);

/// A transaction that takes longer than this is logged: it held up the
/// pages of its partitions for longer than a page's budget.
const SLOW_TRANSACTION: Duration = Duration::from_millis(250);

/// How often input offsets are committed when no page goes out with them
/// (parts that arrived late, records dead-lettered).
const OFFSETS_ALONE_EVERY: Duration = Duration::from_secs(1);

/// Starts the aggregator; it runs until `shutdown` is cancelled.
pub async fn start(
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningService> {
    topics::ensure_topics(&settings.kafka).await?;
    let topics = settings.kafka.topics();
    let reply_partitions = topics::partition_counts(&settings.kafka, &[&topics.page_completed])
        .await?[&topics.page_completed];
    let readiness = Readiness::new(&[PRODUCER_WARM, consume::PARTITIONS_ASSIGNED]);
    let telemetry = Telemetry::new(SERVICE, &settings.telemetry)?;
    // Pages go out in transactions with the input offsets they consume;
    // dead letters are at-least-once, outside them.
    let instance = settings
        .instance_id
        .clone()
        .unwrap_or_else(|| default_instance_id(settings.http_addr));
    let transactional_id = format!("{}.{instance}", settings.kafka.group(SERVICE));
    let pages = EventProducer::transactional(&settings.kafka, &telemetry, &transactional_id)?;
    tokio::task::spawn_blocking({
        let pages = pages.clone();
        move || pages.init_transactions(Duration::from_secs(30))
    })
    .await??;
    let producer = EventProducer::new(&settings.kafka, &telemetry)?;
    let ownership = Arc::new(Ownership::new(&topics.page_requested));
    let options = GroupOptions {
        commits: Commits::InTransactions,
        ..GroupOptions::at_least_once(SERVICE)
    };
    let driver = StatefulDriver::new(
        &settings.kafka,
        &telemetry,
        &options,
        &inputs(&topics),
        readiness.clone(),
        vec![ownership.clone()],
    )?;

    let mut tasks = JoinSet::new();
    tasks.spawn(service::warm_up(producer.clone(), readiness.clone()));
    let aggregator = Aggregator {
        dead_letters: DeadLetters::new(producer, topics.dead_letters.clone()),
        telemetry: telemetry.clone(),
        pages,
        transactional_id: transactional_id.clone(),
        ownership,
        topics,
        reply_partitions,
        joins: Joins::default(),
        tracker: OffsetTracker::default(),
        outbox: Vec::new(),
        to_commit: BTreeMap::new(),
        committing: JoinSet::new(),
        rejoining: false,
        retry: Retry::default(),
        last_commit: Instant::now(),
        settings: settings.kafka.clone(),
        loaded_generation: 0,
        shutdown: shutdown.clone(),
    };
    tasks.spawn(driver.run(aggregator, shutdown.clone()));
    let router = health::router(readiness.clone());
    let http_addr = service::serve_http(
        &mut tasks,
        settings.http_addr,
        router,
        &storefront_runtime::HttpLimits::default(),
        &telemetry,
        shutdown.clone(),
    )
    .await?;
    tracing::info!(service = SERVICE, %http_addr, %transactional_id, "started");
    Ok(RunningService::new(
        telemetry, http_addr, readiness, shutdown, tasks,
    ))
}

/// The topics the aggregator joins.
fn inputs(topics: &Topics) -> [&str; 4] {
    [
        &topics.page_requested,
        &topics.user_resolved,
        &topics.history_fetched,
        &topics.ads_selected,
    ]
}

/// The host name and HTTP port: unique among instances on one host, and
/// the same after a restart.
fn default_instance_id(http_addr: SocketAddr) -> String {
    if http_addr.port() == 0 {
        return uuid::Uuid::new_v4().to_string();
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}-{}", http_addr.port())
}

struct Aggregator {
    /// Writes pages, in transactions with the offsets they consume.
    pages: EventProducer,
    transactional_id: String,
    ownership: Arc<Ownership>,
    telemetry: Telemetry,
    dead_letters: DeadLetters,
    topics: Topics,
    reply_partitions: i32,
    joins: Joins,
    tracker: OffsetTracker,
    /// Pages waiting for the next transaction.
    outbox: Vec<Outgoing>,
    /// Input offsets safe to commit (the next offset to read), not yet committed.
    to_commit: BTreeMap<(String, i32), i64>,
    /// The transaction under way, at most one.
    committing: JoinSet<Committed>,
    /// After a failed producer, until the group assigns partitions anew:
    /// nothing is taken or committed, everything is read again.
    rejoining: bool,
    retry: Retry,
    last_commit: Instant,
    settings: KafkaSettings,
    /// The assignment whose answered requests were last read back.
    loaded_generation: u64,
    /// Ends the retries of a new producer.
    shutdown: CancellationToken,
}

/// A page on its way out.
struct Outgoing {
    record: Outbound,
    /// The `aggregate page` span, ended once the page is committed.
    span: Context,
    /// The partition of the request (every part's) and the ownership epoch
    /// the page was made in: it is written only if both still hold.
    partition: i32,
    epoch: u64,
}

/// What a transaction did.
struct Committed {
    result: Result<(), TransactionError>,
    /// The pages it carried (dropped ones excluded).
    pages: Vec<Outgoing>,
    /// Pages left out: their partition changed hands since they were made.
    dropped: Vec<Outgoing>,
    /// The offsets it committed.
    offsets: Vec<((String, i32), i64)>,
}

/// When an aborted transaction may be tried again: the broker retry
/// policy's waits, started again after a success.
#[derive(Default)]
struct Retry {
    not_before: Option<Instant>,
    waits: Option<Box<dyn Iterator<Item = Duration> + Send + Sync>>,
}

impl Retry {
    fn after_failure(&mut self) {
        let policy = storefront_runtime::retry::Policy::BROKER;
        let wait = self
            .waits
            .get_or_insert_with(|| Box::new(policy.waits()))
            .next()
            .unwrap_or(policy.longest);
        self.not_before = Some(Instant::now() + wait);
    }

    fn after_success(&mut self) {
        *self = Self::default();
    }
}

impl Aggregator {
    /// A new transactional producer with this instance's id, its
    /// transactions initialised (which aborts what the failed one left
    /// open). Retried by the broker policy until shutdown: the coordinator
    /// may still be loading or moving, and an aggregator without a
    /// producer answers nothing.
    async fn renewed_producer(&self) -> storefront_runtime::Result<EventProducer> {
        let attempt = |_| {
            let (settings, telemetry, id) = (
                self.settings.clone(),
                self.telemetry.clone(),
                self.transactional_id.clone(),
            );
            async move {
                let pages = EventProducer::transactional(&settings, &telemetry, &id)
                    .map_err(Failure::Permanent)?;
                tokio::task::spawn_blocking(move || {
                    pages.init_transactions(TRANSACTION_TIMEOUT).map(|()| pages)
                })
                .await
                .map_err(|_| Failure::Permanent(storefront_runtime::Error::TaskPanicked(SERVICE)))?
                .map_err(|error| match error.is_permanent() {
                    true => Failure::Permanent(error),
                    false => Failure::Transient(error),
                })
            }
        };
        let on_retry = |error: &storefront_runtime::Error, attempt: u32, wait: Duration| {
            tracing::warn!(%error, attempt, ?wait, "a new transactional producer could not start; retrying");
        };
        retry(
            Policy::BROKER,
            &Until::shutdown(&self.shutdown),
            attempt,
            on_retry,
        )
        .await
        .map_err(GaveUp::into_inner)
    }
}

/// The longest budget a request may give itself: a join never stays open
/// longer than this, so pending state is bounded in time.
const MAX_PAGE_BUDGET_MS: i64 = 60_000;

impl StatefulHandler for Aggregator {
    type Done = storefront_runtime::Result<Committed>;

    /// Before handling anything after a rebalance: drops the joins, pages
    /// and offsets of partitions revoked (even if given back since: another
    /// owner may have answered their requests meanwhile), and after a new
    /// assignment reads back what was answered lately (by this instance
    /// before a restart, or by the partitions' earlier owner), so that
    /// redelivered parts are not answered again.
    async fn rebalanced(&mut self, consumer: &GroupConsumer) -> storefront_runtime::Result<()> {
        self.drop_revoked();
        let generation = consumer.context().assignment_generation();
        if generation != self.loaded_generation {
            self.read_back_answered().await?;
            self.loaded_generation = generation;
            self.rejoining = false;
        }
        Ok(())
    }

    async fn record(&mut self, record: Inbound) {
        self.take(record).await;
    }

    /// The next deadline, or the next transaction (unless one is under
    /// way: the next one waits for it, not for a timer).
    fn next_due_ms(&self) -> Option<i64> {
        let next_commit = (self.committing.is_empty() && !self.rejoining)
            .then(|| self.next_commit_ms())
            .flatten();
        [self.joins.next_deadline(), next_commit]
            .into_iter()
            .flatten()
            .min()
    }

    /// Answers the requests whose deadline has come with what they have,
    /// and starts a transaction if one is due.
    fn due(&mut self, consumer: &Arc<GroupConsumer>, now_ms: i64) {
        for ready in self.joins.expire(now_ms) {
            self.telemetry.metrics().expired_joins.inc();
            tracing::info!(request_id = %ready.page.context.request_id, status = ?ready.page.status, missing = ?ready.page.missing, "deadline reached");
            self.emit(ready);
        }
        self.telemetry
            .metrics()
            .pending_joins
            .set(self.joins.pending() as i64);
        if self.committing.is_empty() && self.commit_due() {
            self.start_commit(consumer);
        }
    }

    async fn background(&mut self) -> Self::Done {
        match self.committing.join_next().await {
            Some(done) => done.map_err(|_| storefront_runtime::Error::TaskPanicked(SERVICE)),
            None => std::future::pending().await,
        }
    }

    async fn background_done(
        &mut self,
        done: Self::Done,
        consumer: &GroupConsumer,
    ) -> storefront_runtime::Result<()> {
        self.committed(done?, consumer).await
    }

    /// Stops: the transaction under way ends, what is ready goes out in a
    /// last one, and the group is left without committing anything else.
    async fn finish(mut self, consumer: &Arc<GroupConsumer>) -> storefront_runtime::Result<()> {
        let last = async {
            if !self.committing.is_empty() {
                let done = self.background().await;
                self.background_done(done, consumer).await?;
            }
            if !self.outbox.is_empty() || !self.to_commit.is_empty() {
                self.retry.after_success();
                self.start_commit(consumer);
                let done = self.background().await;
                self.background_done(done, consumer).await?;
            }
            Ok::<_, storefront_runtime::Error>(())
        };
        match tokio::time::timeout(TRANSACTION_TIMEOUT, last).await {
            Ok(result) => result?,
            Err(_) => tracing::warn!(
                "the last transaction did not end in time; its inputs will be redelivered"
            ),
        }
        if !self.outbox.is_empty() || self.joins.pending() > 0 {
            tracing::info!(
                unsent = self.outbox.len(),
                pending = self.joins.pending(),
                "handing back pages and joins; their inputs are uncommitted and will be redelivered"
            );
        }
        Ok(())
    }
}

impl Aggregator {
    /// Joins one record, or dead-letters it.
    async fn take(&mut self, record: Inbound) {
        if self.rejoining {
            // Read again once the partitions are assigned anew.
            return;
        }
        self.tracker
            .begin(&record.topic, record.partition, record.offset);
        let span = self.telemetry.process_span(&record, now_ms());
        let outcome = self.accept(&record);
        trace::end(&span, outcome.as_ref().err().map(String::as_str));
        self.telemetry
            .metrics()
            .pending_joins
            .set(self.joins.pending() as i64);
        match outcome {
            Ok(Added::Waiting) => {}
            Ok(Added::Emit(ready)) => self.emit(*ready),
            Ok(Added::Late(source)) => self.done(&source),
            Ok(Added::Expired(source)) => {
                self.telemetry.metrics().stale_requests.inc();
                tracing::info!(topic = %record.topic, offset = record.offset, "dropped a part of a long-expired request");
                self.done(&source);
            }
            Err(reason) => {
                let dead_lettered = self
                    .dead_letters
                    .send(&record, &reason)
                    .instrument(consume::log_span(&record))
                    .await;
                match dead_lettered {
                    Ok(_) => self.done(&source_of(&record)),
                    // Left uncommitted: it comes back after a restart.
                    Err(error) => {
                        tracing::error!(%error, "dead-lettering failed; the record will be redelivered")
                    }
                }
            }
        }
    }

    /// Decodes, validates and joins one record.
    fn accept(&mut self, record: &Inbound) -> Result<Added, String> {
        let t = &self.topics;
        let now = now_ms();
        // Each part's milestone: when its service picked up the request.
        let picked_up_by = |service| (service, record.headers.picked_up_at_ms);
        let (context, part, picked_up) = match record.event::<RequestEvent>(t)? {
            RequestEvent::PageRequested(e) => (
                e.context,
                Part::Requested {
                    callback_url: e.callback_url,
                },
                (SERVICE, Some(now)),
            ),
            RequestEvent::UserResolved(e) => (
                e.context,
                Part::User {
                    status: e.status,
                    rejection: e.rejection,
                    user: e.user,
                },
                picked_up_by("user-svc"),
            ),
            RequestEvent::HistoryFetched(e) => (
                e.context,
                Part::History(e.purchases),
                picked_up_by("history-svc"),
            ),
            RequestEvent::AdsSelected(e) => (e.context, Part::Ads(e.ads), picked_up_by("ads-svc")),
            other => {
                return Err(format!(
                    "{} is not an input of the aggregator",
                    other.event_type()
                ))
            }
        };
        let (service, at_ms) = picked_up;
        let arrival = Arrival {
            sent_by: trace::span_context(&record.trace),
            milestone: at_ms.map(|at_ms| Milestone {
                stage: "picked_up".into(),
                service: service.into(),
                at_ms,
            }),
        };
        if context.reply_topic != t.page_completed {
            return Err(format!(
                "reply topic {:?} is not {}",
                context.reply_topic, t.page_completed
            ));
        }
        let budget = context.budget_ms();
        if !(0..=MAX_PAGE_BUDGET_MS).contains(&budget) {
            return Err(format!(
                "deadline {budget} ms after the request is outside 0..={MAX_PAGE_BUDGET_MS}"
            ));
        }
        if !(0..self.reply_partitions).contains(&context.reply_partition) {
            return Err(format!(
                "reply partition {} does not exist",
                context.reply_partition
            ));
        }
        Ok(self
            .joins
            .add(context, part, arrival, source_of(record), now))
    }

    /// Drops the joins, pages and offsets of the partitions revoked since
    /// last asked.
    fn drop_revoked(&mut self) {
        let revoked = self.ownership.take_revoked();
        if revoked.is_empty() {
            return;
        }
        let kept = |p: i32| !revoked.contains(&p);
        let handed_back = self.joins.retain_partitions(kept);
        self.tracker.retain_partitions(|_, p| kept(p));
        self.to_commit.retain(|(_, p), _| kept(*p));
        let unsent = self.outbox.len();
        let (outbox, given_up) = std::mem::take(&mut self.outbox)
            .into_iter()
            .partition(|page| kept(page.partition));
        self.outbox = outbox;
        self.give_up(given_up, "its partition was revoked");
        tracing::info!(
            handed_back,
            unsent_dropped = unsent - self.outbox.len(),
            ?revoked,
            "joins of revoked partitions handed back"
        );
    }

    /// Reads back from `page.completed` the requests answered lately, and
    /// forgets their joins.
    async fn read_back_answered(&mut self) -> storefront_runtime::Result<()> {
        let (settings, topic) = (self.settings.clone(), self.topics.page_completed.clone());
        let since = Since::Timestamp(now_ms() - join::REMEMBER_EMITTED_MS);
        let answered = tokio::task::spawn_blocking(move || {
            let mut answered = Vec::new();
            snapshot::read_topic(
                &settings,
                SERVICE,
                &topic,
                since,
                Duration::from_secs(60),
                |record| {
                    if let (Some(id), Some(at)) = (record.headers.request_id, record.timestamp_ms) {
                        answered.push((id, at));
                    }
                },
            )
            .map(|()| answered)
        })
        .await
        .map_err(|_| storefront_runtime::Error::TaskPanicked(SERVICE))??;
        let count = answered.len();
        for (request_id, at_ms) in answered {
            for source in self.joins.mark_emitted(request_id, at_ms) {
                self.done(&source);
            }
        }
        tracing::info!(answered = count, "read back the requests answered lately");
        Ok(())
    }

    /// A record's work is done: its offset goes with the next transaction
    /// once everything before it is done too.
    fn done(&mut self, source: &Source) {
        if let Some(safe) = self
            .tracker
            .finish(&source.topic, source.partition, source.offset)
        {
            self.to_commit
                .insert((source.topic.clone(), source.partition), safe + 1);
        }
    }

    /// Queues a page for the next transaction, with its inputs' offsets.
    fn emit(&mut self, ready: ReadyPage) {
        let partition = ready.sources.first().map_or(0, |s| s.partition);
        for source in &ready.sources {
            self.done(source);
        }
        let (record, span) = page_record(&self.pages, ready);
        self.outbox.push(Outgoing {
            record,
            span,
            partition,
            epoch: self.ownership.epoch(),
        });
    }

    /// Pages that will not be written: their requests are not answered by
    /// them, so whoever owns their partition next answers them from their
    /// inputs (uncommitted, read again).
    fn give_up(&mut self, pages: Vec<Outgoing>, why: &str) {
        if pages.is_empty() {
            return;
        }
        tracing::info!(
            pages = pages.len(),
            why,
            "pages given up; their inputs will be read again"
        );
        for page in pages {
            if let Some(request_id) = page.record.headers.request_id {
                self.joins.forget_emitted(request_id);
            }
            trace::end(&page.span, Some(why));
        }
    }

    /// Whether a transaction should start now: pages are waiting, or
    /// offsets have waited long enough on their own.
    fn commit_due(&self) -> bool {
        !self.rejoining && self.next_commit_ms().is_some_and(|at| at <= now_ms())
    }

    /// When the next transaction is due (Unix ms), if anything waits.
    fn next_commit_ms(&self) -> Option<i64> {
        let now = Instant::now();
        let at = if !self.outbox.is_empty() {
            self.retry.not_before.unwrap_or(now)
        } else if !self.to_commit.is_empty() {
            let alone = self.last_commit + OFFSETS_ALONE_EVERY;
            self.retry.not_before.map_or(alone, |r| r.max(alone))
        } else {
            return None;
        };
        Some(now_ms() + at.saturating_duration_since(now).as_millis() as i64)
    }

    /// Starts one transaction with every waiting page and offset.
    fn start_commit(&mut self, consumer: &Arc<GroupConsumer>) {
        let pages = std::mem::take(&mut self.outbox);
        let offsets: Vec<((String, i32), i64)> = self
            .to_commit
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let (producer, ownership, consumer) =
            (self.pages.clone(), self.ownership.clone(), consumer.clone());
        self.committing
            .spawn_blocking(move || commit(&producer, &ownership, &consumer, pages, offsets));
    }

    /// Takes in how a transaction ended.
    async fn committed(
        &mut self,
        done: Committed,
        consumer: &GroupConsumer,
    ) -> storefront_runtime::Result<()> {
        self.give_up(done.dropped, "its partition changed hands");
        match done.result {
            Ok(()) => {
                self.retry.after_success();
                self.last_commit = Instant::now();
                for (key, offset) in done.offsets {
                    if self.to_commit.get(&key) == Some(&offset) {
                        self.to_commit.remove(&key);
                    }
                }
                for page in done.pages {
                    trace::end(&page.span, None);
                }
                Ok(())
            }
            Err(TransactionError::Aborted(reason)) => {
                self.telemetry
                    .metrics()
                    .retries
                    .with_label_values(&[&self.topics.page_completed])
                    .inc();
                tracing::warn!(%reason, pages = done.pages.len(), "transaction aborted; trying again");
                let mut pages = done.pages;
                pages.append(&mut self.outbox);
                self.outbox = pages;
                self.retry.after_failure();
                Ok(())
            }
            Err(TransactionError::Fatal(reason)) => {
                // Whether its pages were committed is not known. A new
                // producer with the same id ends what the broker still holds
                // open; leaving and rejoining the group then drops every join
                // (at the revoke) and reads the inputs again from the offsets
                // committed, and what was answered from page.completed.
                tracing::warn!(%reason, pages = done.pages.len(), "transactional producer failed; starting a new one and taking the partitions anew");
                // Forgotten as answers: those that did commit are read
                // back from page.completed once the partitions return.
                let mut given_up = done.pages;
                given_up.append(&mut self.outbox);
                self.give_up(given_up, &reason);
                self.pages = self.renewed_producer().await?;
                self.rejoining = true;
                self.joins.retain_partitions(|_| false);
                self.tracker.retain_partitions(|_, _| false);
                self.to_commit.clear();
                self.outbox.clear();
                consumer.unsubscribe();
                consumer
                    .subscribe(&inputs(&self.topics))
                    .map_err(|source| storefront_runtime::Error::Kafka {
                        action: "subscribe again",
                        source,
                    })?;
                self.retry.after_failure();
                Ok(())
            }
        }
    }
}

/// One transaction, on a blocking thread: the pages of partitions this
/// instance still owns (since the epoch they were made in) and their
/// offsets, under the ownership lock, so a revoke waits for it to end and
/// none begins for a partition revoked. A member the group left behind
/// (frozen, cut off) is refused the offsets by the broker, and the whole
/// transaction aborts.
fn commit(
    producer: &EventProducer,
    ownership: &Ownership,
    consumer: &GroupConsumer,
    pages: Vec<Outgoing>,
    offsets: Vec<((String, i32), i64)>,
) -> Committed {
    let owned = ownership.lock();
    let (pages, dropped): (Vec<Outgoing>, Vec<Outgoing>) = pages
        .into_iter()
        .partition(|p| owned.holds(p.partition, p.epoch));
    let offsets: Vec<((String, i32), i64)> = offsets
        .into_iter()
        .filter(|((_, p), _)| owned.owns(*p))
        .collect();
    let mut committed = Committed {
        result: Ok(()),
        pages: Vec::new(),
        dropped,
        offsets: Vec::new(),
    };
    if pages.is_empty() && offsets.is_empty() {
        return committed;
    }
    let mut list = TopicPartitionList::new();
    for ((topic, partition), offset) in &offsets {
        if let Err(error) = list.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
            tracing::warn!(%error, topic, partition, "offset left out of the transaction");
        }
    }
    let records: Vec<Outbound> = pages.iter().map(|p| p.record.clone()).collect();
    let began = Instant::now();
    committed.result = match consumer.group_metadata() {
        Some(group) => producer.commit_atomically(&records, &list, &group, TRANSACTION_TIMEOUT),
        None => Err(TransactionError::Aborted("no group membership yet".into())),
    };
    let metrics = producer.telemetry().metrics();
    let outcome = match &committed.result {
        Ok(()) => {
            metrics.transaction_pages.inc_by(records.len() as u64);
            "committed"
        }
        Err(TransactionError::Aborted(_)) => "aborted",
        Err(TransactionError::Fatal(_)) => "failed",
    };
    let took = began.elapsed();
    metrics
        .transaction_duration
        .with_label_values(&[outcome])
        .observe(took.as_secs_f64());
    if took > SLOW_TRANSACTION {
        // Every page of the transaction, and every later page on its
        // partitions, waited this long to be readable (read_committed).
        tracing::warn!(
            took_ms = took.as_millis() as u64,
            outcome,
            pages = records.len(),
            "slow transaction"
        );
    }
    committed.pages = pages;
    committed.offsets = offsets;
    committed
}

fn source_of(record: &Inbound) -> Source {
    Source {
        topic: record.topic.clone(),
        partition: record.partition,
        offset: record.offset,
    }
}

/// The page record for the gateway's reply partition, under a new
/// `aggregate page` span linked to every part joined.
fn page_record(producer: &EventProducer, ready: ReadyPage) -> (Outbound, Context) {
    let context = &ready.page.context;
    let parent = ready
        .parent
        .map(|sent_by| Context::new().with_remote_span_context(sent_by))
        .unwrap_or_default();
    let span = producer
        .telemetry()
        .joined_span("aggregate page", &parent, ready.links);
    let record = Outbound::event(
        &context.reply_topic,
        context.session_id,
        context.request_id,
        &span,
        &ready.page,
    )
    .to_partition(context.reply_partition);
    (record, span)
}

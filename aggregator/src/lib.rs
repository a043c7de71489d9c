//! aggregator: the stream processor that joins each request's parts
//! (`page.requested`, `user.resolved`, `history.fetched`, `ads.selected`)
//! into one `page.completed`, written to the reply partition the gateway
//! named. Complete when all parts are in, rejected at once when
//! authentication failed, partial at the request's wall-clock deadline on
//! its own timer. Input offsets are committed only once their page is out,
//! so after a crash the uncommitted inputs come back and rebuild the joins
//! that were pending; what was already answered is read back from
//! `page.completed` at every assignment, so no request is answered twice.

pub mod join;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use opentelemetry::{trace::TraceContextExt, Context};
use rdkafka::consumer::{Consumer, StreamConsumer};
use storefront_runtime::{
    health,
    offsets::OffsetTracker,
    processor,
    processor::GroupContext,
    service::{self, PRODUCER_WARM},
    snapshot::{self, Since},
    topics, trace, DeadLetters, EventProducer, Inbound, KafkaSettings, Outbound, Readiness,
    RunningService, Telemetry, TelemetrySettings, Topics,
};
use storefront_schemas::{
    now_ms, AdsSelected, HistoryFetched, Milestone, PageRequested, RequestContext, UserResolved,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::join::{Added, Arrival, Joins, Part, ReadyPage, Source};

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
}

const SERVICE: &str = "aggregator";

/// Starts the aggregator; it runs until `shutdown` is cancelled.
pub async fn start(
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningService> {
    topics::ensure_topics(&settings.kafka).await?;
    let topics = settings.kafka.topics();
    let reply_partitions = topics::partition_counts(&settings.kafka, &[&topics.page_completed])
        .await?[&topics.page_completed];
    let readiness = Readiness::new(&[PRODUCER_WARM, processor::PARTITIONS_ASSIGNED]);
    let telemetry = Telemetry::new(SERVICE, &settings.telemetry)?;
    let producer = EventProducer::new(&settings.kafka, &telemetry)?;
    let consumer = Arc::new(processor::group_consumer(
        &settings.kafka,
        &telemetry,
        &settings.kafka.group(SERVICE),
        readiness.clone(),
    )?);
    consumer.subscribe(&[
        &topics.page_requested,
        &topics.user_resolved,
        &topics.history_fetched,
        &topics.ads_selected,
    ])?;

    let mut tasks = JoinSet::new();
    tasks.spawn(service::warm_up(producer.clone(), readiness.clone()));
    let aggregator = Aggregator {
        dead_letters: DeadLetters::new(producer.clone(), topics.dead_letters.clone()),
        telemetry: telemetry.clone(),
        producer,
        topics,
        reply_partitions,
        joins: Joins::default(),
        tracker: OffsetTracker::default(),
        settings: settings.kafka.clone(),
        loaded_generation: 0,
    };
    tasks.spawn(aggregator.run(consumer, shutdown.clone()));
    let router = health::router(readiness.clone());
    let http_addr = service::serve_http(
        &mut tasks,
        settings.http_addr,
        router,
        &telemetry,
        shutdown.clone(),
    )
    .await?;
    tracing::info!(service = SERVICE, %http_addr, "started");
    Ok(RunningService::new(
        telemetry, http_addr, readiness, shutdown, tasks,
    ))
}

struct Aggregator {
    producer: EventProducer,
    telemetry: Telemetry,
    dead_letters: DeadLetters,
    topics: Topics,
    reply_partitions: i32,
    joins: Joins,
    tracker: OffsetTracker,
    settings: KafkaSettings,
    /// The assignment whose answered requests were last read back.
    loaded_generation: u64,
}

/// The longest budget a request may give itself: a join never stays open
/// longer than this, so pending state is bounded in time.
const MAX_PAGE_BUDGET_MS: i64 = 60_000;

type Sent = Vec<Source>;

impl Aggregator {
    async fn run(
        mut self,
        consumer: Arc<StreamConsumer<GroupContext>>,
        shutdown: CancellationToken,
    ) -> storefront_runtime::Result<()> {
        let mut sending: JoinSet<Option<Sent>> = JoinSet::new();
        loop {
            let next_deadline = self.joins.next_deadline();
            let wait = next_deadline.map(|d| Duration::from_millis((d - now_ms()).max(0) as u64));
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(sent) = sending.join_next(), if !sending.is_empty() => {
                    if let Ok(Some(sources)) = sent {
                        for source in sources {
                            self.done(&consumer, &source);
                        }
                    }
                }
                _ = tokio::time::sleep(wait.unwrap_or(Duration::ZERO)), if wait.is_some() => {
                    for ready in self.joins.expire(now_ms()) {
                        self.telemetry.metrics().expired_joins.inc();
                        tracing::info!(request_id = %ready.page.context.request_id, status = ?ready.page.status, missing = ?ready.page.missing, "deadline reached");
                        sending.spawn(send_page(self.producer.clone(), ready, shutdown.clone()));
                    }
                    self.telemetry.metrics().pending_joins.set(self.joins.pending() as i64);
                }
                message = consumer.recv() => match message {
                    Ok(message) => {
                        let record = Inbound::from_message(&message);
                        drop(message);
                        if consumer.context().assignment_generation() != self.loaded_generation {
                            self.on_assignment(&consumer).await?;
                        }
                        self.tracker.begin(&record.topic, record.partition, record.offset);
                        let span = self.telemetry.process_span(&record, now_ms());
                        let outcome = self.accept(&record);
                        trace::end(&span, outcome.as_ref().err().map(String::as_str));
                        self.telemetry.metrics().pending_joins.set(self.joins.pending() as i64);
                        match outcome {
                            Ok(Added::Waiting) => {}
                            Ok(Added::Emit(ready)) => {
                                sending.spawn(send_page(self.producer.clone(), *ready, shutdown.clone()));
                            }
                            Ok(Added::Late(source)) => self.done(&consumer, &source),
                            Ok(Added::Expired(source)) => {
                                self.telemetry.metrics().stale_requests.inc();
                                tracing::info!(topic = %record.topic, offset = record.offset, "dropped a part of a long-expired request");
                                self.done(&consumer, &source);
                            }
                            Err(reason) => {
                                let dead_lettered = self.dead_letters.send(&record, &reason)
                                    .instrument(processor::log_span(&record))
                                    .await;
                                if let Err(error) = dead_lettered {
                                    tracing::error!(%error, "dead-lettering failed; the record will be redelivered");
                                    continue;
                                }
                                self.done(&consumer, &source_of(&record));
                            }
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "consumer error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        let drain = async {
            while let Some(sent) = sending.join_next().await {
                if let Ok(Some(sources)) = sent {
                    for source in sources {
                        self.done(&consumer, &source);
                    }
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), drain)
            .await
            .is_err()
        {
            tracing::warn!("pages still unsent at shutdown; their inputs will be redelivered");
        }
        if self.joins.pending() > 0 {
            tracing::info!(
                pending = self.joins.pending(),
                "handing back pending joins; their inputs are uncommitted and will be redelivered"
            );
        }
        processor::commit_and_close(consumer).await;
        Ok(())
    }

    /// Decodes, validates and joins one record.
    fn accept(&mut self, record: &Inbound) -> Result<Added, String> {
        let t = &self.topics;
        let now = now_ms();
        // Each part's milestone: when its service picked up the request.
        let (context, part, picked_up): (RequestContext, Part, _) =
            if record.topic == t.page_requested {
                let e: PageRequested = record.decode().map_err(|e| e.to_string())?;
                (
                    e.context,
                    Part::Requested {
                        callback_url: e.callback_url,
                    },
                    (SERVICE, Some(now)),
                )
            } else if record.topic == t.user_resolved {
                let e: UserResolved = record.decode().map_err(|e| e.to_string())?;
                let part = Part::User {
                    status: e.status,
                    rejection: e.rejection,
                    user: e.user,
                };
                (
                    e.context,
                    part,
                    ("user-svc", record.headers.picked_up_at_ms),
                )
            } else if record.topic == t.history_fetched {
                let e: HistoryFetched = record.decode().map_err(|e| e.to_string())?;
                let picked_up = ("history-svc", record.headers.picked_up_at_ms);
                (e.context, Part::History(e.purchases), picked_up)
            } else if record.topic == t.ads_selected {
                let e: AdsSelected = record.decode().map_err(|e| e.to_string())?;
                let picked_up = ("ads-svc", record.headers.picked_up_at_ms);
                (e.context, Part::Ads(e.ads), picked_up)
            } else {
                return Err(format!("unexpected topic {}", record.topic));
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
        let budget = context.deadline_ms - context.requested_at_ms;
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

    /// After a (re)assignment: hands back the joins of partitions this
    /// instance no longer owns, and reads back what was answered lately (by
    /// this instance before a restart, or by the one that had these
    /// partitions before), so that redelivered parts are not answered again.
    async fn on_assignment(
        &mut self,
        consumer: &StreamConsumer<GroupContext>,
    ) -> storefront_runtime::Result<()> {
        let generation = consumer.context().assignment_generation();
        if let Ok(assignment) = consumer.assignment() {
            let owned: std::collections::HashSet<(String, i32)> = assignment
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            let requests = self.topics.page_requested.clone();
            let handed_back = self
                .joins
                .retain_partitions(|p| owned.contains(&(requests.clone(), p)));
            self.tracker
                .retain_partitions(|topic, p| owned.contains(&(topic.to_owned(), p)));
            if handed_back > 0 {
                tracing::info!(handed_back, "joins of revoked partitions handed back");
            }
        }
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
            for source in self.joins.mark_emitted(&request_id, at_ms) {
                self.done(consumer, &source);
            }
        }
        tracing::info!(answered = count, "read back the requests answered lately");
        self.loaded_generation = generation;
        Ok(())
    }

    fn done(&mut self, consumer: &StreamConsumer<GroupContext>, source: &Source) {
        self.tracker
            .finish_and_store(consumer, &source.topic, source.partition, source.offset);
    }
}

fn source_of(record: &Inbound) -> Source {
    Source {
        topic: record.topic.clone(),
        partition: record.partition,
        offset: record.offset,
    }
}

/// Sends a page to the gateway's reply partition, retrying until it is
/// acknowledged or the aggregator stops (then its inputs are redelivered).
async fn send_page(
    producer: EventProducer,
    ready: ReadyPage,
    shutdown: CancellationToken,
) -> Option<Sent> {
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
        &context.session_id,
        &context.request_id,
        &span,
        &ready.page,
    )
    .to_partition(context.reply_partition);
    let log = tracing::info_span!(
        "page",
        request_id = %context.request_id,
        session_id = %context.session_id,
        trace_id = %trace::trace_id(&span),
    );
    let mut backoff = Duration::from_millis(50);
    let sent = async {
        loop {
            match producer.send(&record).await {
                Ok(_) => return Some(ready.sources),
                Err(error) => {
                    producer
                        .telemetry()
                        .metrics()
                        .retries
                        .with_label_values(&[&context.reply_topic])
                        .inc();
                    tracing::warn!(%error, "page not sent; retrying")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
    .instrument(log)
    .await;
    trace::end(&span, sent.is_none().then_some("not sent before shutdown"));
    sent
}

//! The idempotent producer every service writes with (`acks=all`, the Java
//! client's murmur2 partitioner, so any client agrees where a session lives).

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use rdkafka::{
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, OwnedHeaders},
    producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer},
    statistics::Statistics,
    ClientContext,
};
use storefront_schemas::{Contract, RequestId, SessionId};
use tokio::sync::watch;

use opentelemetry::{trace::TraceContextExt, Context, KeyValue};

use crate::{
    error::KafkaContext,
    retry::{retry, Failure, GaveUp, Policy, Until},
    trace, Error, EventHeaders, Inbound, KafkaSettings, Result, Telemetry,
};

/// A record to produce.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub topic: String,
    pub key: String,
    /// Set only for replies, which go to the partition the requester named.
    pub partition: Option<i32>,
    pub headers: EventHeaders,
    /// The span this record is sent under; its `send` span becomes the
    /// record's `traceparent`. Empty for reference records.
    pub trace: Context,
    pub payload: Vec<u8>,
    /// The request's deadline (epoch ms), for request-path events: what
    /// could not be written by then is of no use to its page, so retrying
    /// stops there. Not written to the topic.
    pub deadline_ms: Option<i64>,
}

impl Outbound {
    /// A request-path event, keyed by session ID.
    pub fn event<T: Contract>(
        topic: &str,
        session_id: SessionId,
        request_id: RequestId,
        trace: &Context,
        event: &T,
    ) -> Self {
        Self {
            topic: topic.to_owned(),
            key: session_id.to_string(),
            partition: None,
            headers: EventHeaders::request(T::EVENT_TYPE, request_id),
            trace: trace.clone(),
            payload: storefront_schemas::encode(event),
            deadline_ms: None,
        }
    }

    /// The next event of a request: keyed by its session, stamped with its
    /// request id and `trace`.
    pub fn for_request<T: Contract>(
        topic: &str,
        context: &storefront_schemas::RequestContext,
        trace: &Context,
        event: &T,
    ) -> Self {
        Self {
            deadline_ms: Some(context.deadline_ms),
            ..Self::event(topic, context.session_id, context.request_id, trace, event)
        }
    }

    /// A reference record, keyed by its entity's id.
    pub fn reference<T: Contract>(topic: &str, key: &str, record: &T) -> Self {
        Self {
            topic: topic.to_owned(),
            key: key.to_owned(),
            partition: None,
            headers: EventHeaders::reference(T::EVENT_TYPE),
            trace: Context::new(),
            payload: storefront_schemas::encode(record),
            deadline_ms: None,
        }
    }

    /// Sends the record to this exact partition instead of the key's.
    pub fn to_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }
}

/// Watches librdkafka's statistics for the idempotent producer's id and
/// for a connection to a broker.
pub struct ProducerContext {
    producer_id_assigned: watch::Sender<bool>,
    broker_up: Arc<AtomicBool>,
}

impl ClientContext for ProducerContext {
    fn stats(&self, statistics: Statistics) {
        let up = statistics.brokers.values().any(|b| b.state == "UP");
        self.broker_up.store(up, Ordering::Relaxed);
        if statistics
            .eos
            .is_some_and(|eos| eos.idemp_state == "Assigned")
        {
            self.producer_id_assigned
                .send_if_modified(|assigned| !std::mem::replace(assigned, true));
        }
    }
}

/// A cheap-to-clone handle on one idempotent producer.
#[derive(Clone)]
pub struct EventProducer {
    inner: FutureProducer<ProducerContext>,
    producer_id_assigned: watch::Receiver<bool>,
    broker_up: Arc<AtomicBool>,
    telemetry: Telemetry,
}

impl EventProducer {
    /// A producer named for `telemetry`'s service, tracing what it sends.
    pub fn new(settings: &KafkaSettings, telemetry: &Telemetry) -> Result<Self> {
        Self::build(settings, telemetry, None)
    }

    /// A producer that writes only inside transactions, as `transactional_id`
    /// (see [`crate::transaction`]). One id per live instance: a producer
    /// that starts with the id of another fences it.
    pub fn transactional(
        settings: &KafkaSettings,
        telemetry: &Telemetry,
        transactional_id: &str,
    ) -> Result<Self> {
        Self::build(settings, telemetry, Some(transactional_id))
    }

    fn build(
        settings: &KafkaSettings,
        telemetry: &Telemetry,
        transactional_id: Option<&str>,
    ) -> Result<Self> {
        let (tx, rx) = watch::channel(false);
        let broker_up = Arc::new(AtomicBool::new(true));
        let mut config = settings.client_config(telemetry.service());
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", settings.linger_ms.to_string())
            .set("message.timeout.ms", "30000")
            .set("statistics.interval.ms", "250");
        if let Some(id) = transactional_id {
            // A transaction left open by a crashed instance holds back every
            // read_committed reader of its partitions until this passes, unless
            // the instance restarts with the same id first (that aborts it).
            config
                .set("transactional.id", id)
                .set("transaction.timeout.ms", TRANSACTION_TIMEOUT_MS)
                .set("message.timeout.ms", TRANSACTION_TIMEOUT_MS)
                // A transaction begun right after the last one finds the
                // coordinator still writing that one's markers, and is told
                // to retry (CONCURRENT_TRANSACTIONS): librdkafka's 100 ms
                // backoff then adds 100 ms to every page.
                .set("retry.backoff.ms", "5");
        }
        let inner = config
            .create_with_context(ProducerContext {
                producer_id_assigned: tx,
                broker_up: broker_up.clone(),
            })
            .context("create a producer")?;
        Ok(Self {
            inner,
            producer_id_assigned: rx,
            broker_up,
            telemetry: telemetry.clone(),
        })
    }

    /// Whether the producer was connected to a broker at its last
    /// statistics (every 250 ms): without one nothing can be published.
    pub fn broker_reachable(&self) -> bool {
        self.broker_up.load(Ordering::Relaxed)
    }

    /// The telemetry of the service this producer writes for.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// The underlying rdkafka producer, for records outside the event contracts.
    pub(crate) fn raw(&self) -> &FutureProducer<ProducerContext> {
        &self.inner
    }

    /// Waits until the broker has given this producer its idempotent
    /// producer id; until then the first send stalls for about half a second.
    pub async fn wait_until_warm(&self, timeout: Duration) -> Result<()> {
        let mut assigned = self.producer_id_assigned.clone();
        tokio::time::timeout(timeout, assigned.wait_for(|a| *a))
            .await
            .map_err(|_| Error::TimedOut("the idempotent producer id"))?
            .map_err(|_| Error::TimedOut("the idempotent producer id"))?;
        Ok(())
    }

    /// Produces one record and waits for `acks=all`; returns (partition, offset).
    pub async fn send(&self, record: &Outbound) -> Result<(i32, i64)> {
        let pending = self.enqueue(record).await?;
        Self::acknowledged(pending).await
    }

    /// Produces several records at once and waits until all are acknowledged.
    pub async fn send_all(&self, records: &[Outbound]) -> Result<()> {
        let mut pending = Vec::with_capacity(records.len());
        for record in records {
            pending.push(self.enqueue(record).await?);
        }
        for queued in pending {
            Self::acknowledged(queued).await?;
        }
        Ok(())
    }

    /// Writes `records` unchanged (partition, key, payload, headers and
    /// timestamp) to the topics `destination` names for theirs, many in
    /// flight at once, and waits until all are acknowledged.
    pub async fn copy_all(
        &self,
        records: &[Inbound],
        destination: impl Fn(&str) -> String,
    ) -> Result<()> {
        const IN_FLIGHT: usize = 10_000;
        for chunk in records.chunks(IN_FLIGHT) {
            let mut pending = Vec::with_capacity(chunk.len());
            for record in chunk {
                let topic = destination(&record.topic);
                let headers =
                    record
                        .raw_headers
                        .iter()
                        .fold(OwnedHeaders::new(), |headers, (key, value)| {
                            headers.insert(Header {
                                key,
                                value: Some(value),
                            })
                        });
                let delivery = self
                    .queue(|| {
                        let mut copy = FutureRecord::to(&topic)
                            .partition(record.partition)
                            .payload(record.payload.as_deref().unwrap_or_default())
                            .headers(headers.clone());
                        if let Some(key) = &record.key {
                            copy = copy.key(key);
                        }
                        if let Some(at) = record.timestamp_ms {
                            copy = copy.timestamp(at);
                        }
                        copy
                    })
                    .await
                    .context("enqueue a copy")?;
                pending.push(Pending {
                    delivery,
                    span: None,
                });
            }
            for queued in pending {
                Self::acknowledged(queued).await?;
            }
        }
        Ok(())
    }

    /// Waits until everything queued is delivered, off the async threads.
    pub async fn flush(&self, timeout: Duration) -> Result<()> {
        let producer = self.inner.clone();
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .expect("flush does not panic")
            .context("flush the producer")
    }

    /// Queues a record under its own `send` span (if it belongs to a trace).
    pub(crate) async fn enqueue(&self, record: &Outbound) -> Result<Pending> {
        let span = record.trace.has_active_span().then(|| {
            self.telemetry
                .send_span(&record.trace, &record.topic, record.partition)
        });
        let trace_headers = span.as_ref().map(trace::inject).unwrap_or_default();
        let headers = record.headers.to_owned_headers(&trace_headers);
        let queued = self
            .queue(|| {
                let mut future_record = FutureRecord::to(&record.topic)
                    .key(record.key.as_bytes())
                    .payload(&record.payload)
                    .headers(headers.clone());
                if let Some(partition) = record.partition {
                    future_record = future_record.partition(partition);
                }
                future_record
            })
            .await;
        match queued {
            Ok(delivery) => Ok(Pending { delivery, span }),
            Err(source) => {
                if let Some(span) = &span {
                    trace::end(span, Some(&source.to_string()));
                }
                Err(Error::Kafka {
                    action: "enqueue a record",
                    source,
                })
            }
        }
    }

    /// Queues the record `build` makes, waiting while librdkafka's queue is
    /// full (it empties as the broker acknowledges, or as records time out).
    async fn queue<'a, K, P>(
        &self,
        build: impl Fn() -> FutureRecord<'a, K, P>,
    ) -> std::result::Result<DeliveryFuture, KafkaError>
    where
        K: rdkafka::message::ToBytes + ?Sized + 'a,
        P: rdkafka::message::ToBytes + ?Sized + 'a,
    {
        let attempt = |_| {
            std::future::ready(match self.inner.send_result(build()) {
                Ok(delivery) => Ok(delivery),
                Err((error @ KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    Err(Failure::Transient(error))
                }
                Err((error, _)) => Err(Failure::Permanent(error)),
            })
        };
        retry(Policy::QUEUE_FULL, &Until::default(), attempt, |_, _, _| {})
            .await
            .map_err(GaveUp::into_inner)
    }

    pub(crate) async fn acknowledged(pending: Pending) -> Result<(i32, i64)> {
        let outcome = match pending.delivery.await {
            Ok(Ok(delivery)) => Ok((delivery.partition, delivery.offset)),
            Ok(Err((source, _))) => Err(source),
            Err(_) => Err(KafkaError::Canceled),
        };
        if let Some(span) = &pending.span {
            if let Ok((partition, offset)) = outcome {
                span.span().set_attributes([
                    KeyValue::new("messaging.destination.partition.id", partition.to_string()),
                    KeyValue::new("messaging.kafka.offset", offset),
                ]);
            }
            trace::end(
                span,
                outcome.as_ref().err().map(ToString::to_string).as_deref(),
            );
        }
        outcome.map_err(|source| Error::Kafka {
            action: "deliver a record",
            source,
        })
    }
}

/// How long a transaction may stay open (Kafka's default is 60 s).
pub const TRANSACTION_TIMEOUT_MS: &str = "10000";

/// A queued record and its open `send` span.
pub(crate) struct Pending {
    delivery: DeliveryFuture,
    span: Option<Context>,
}

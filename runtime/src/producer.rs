//! The idempotent producer every service writes with (`acks=all`, the Java
//! client's murmur2 partitioner, so any client agrees where a session lives).

use std::time::Duration;

use rdkafka::{
    error::{KafkaError, RDKafkaErrorCode},
    producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer},
    statistics::Statistics,
    ClientContext,
};
use storefront_schemas::Contract;
use tokio::sync::watch;

use crate::{error::KafkaContext, Error, EventHeaders, KafkaSettings, Result, TraceParent};

/// A record to produce.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub topic: String,
    pub key: String,
    /// Set only for replies, which go to the partition the requester named.
    pub partition: Option<i32>,
    pub headers: EventHeaders,
    pub payload: Vec<u8>,
}

impl Outbound {
    /// A request-path event, keyed by session ID.
    pub fn event<T: Contract>(
        topic: &str,
        session_id: &str,
        request_id: &str,
        trace: TraceParent,
        event: &T,
    ) -> Self {
        Self {
            topic: topic.to_owned(),
            key: session_id.to_owned(),
            partition: None,
            headers: EventHeaders::request(T::EVENT_TYPE, request_id, trace),
            payload: storefront_schemas::encode(event),
        }
    }

    /// The next event of a request: keyed by its session, stamped with its
    /// request id and `trace`.
    pub fn for_request<T: Contract>(
        topic: &str,
        context: &storefront_schemas::RequestContext,
        trace: TraceParent,
        event: &T,
    ) -> Self {
        Self::event(
            topic,
            &context.session_id,
            &context.request_id,
            trace,
            event,
        )
    }

    /// A reference record, keyed by its entity's id.
    pub fn reference<T: Contract>(topic: &str, key: &str, record: &T) -> Self {
        Self {
            topic: topic.to_owned(),
            key: key.to_owned(),
            partition: None,
            headers: EventHeaders::reference(T::EVENT_TYPE),
            payload: storefront_schemas::encode(record),
        }
    }

    /// Sends the record to this exact partition instead of the key's.
    pub fn to_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }
}

/// Watches librdkafka's statistics for the idempotent producer's id.
pub struct ProducerContext {
    producer_id_assigned: watch::Sender<bool>,
}

impl ClientContext for ProducerContext {
    fn stats(&self, statistics: Statistics) {
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
}

impl EventProducer {
    pub fn new(settings: &KafkaSettings, client_id: &str) -> Result<Self> {
        let (tx, rx) = watch::channel(false);
        let inner = settings
            .client_config(client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "1")
            .set("message.timeout.ms", "30000")
            .set("statistics.interval.ms", "250")
            .create_with_context(ProducerContext {
                producer_id_assigned: tx,
            })
            .context("create a producer")?;
        Ok(Self {
            inner,
            producer_id_assigned: rx,
        })
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
        let future = self.enqueue(record).await?;
        Self::acknowledged(future).await
    }

    /// Produces several records at once and waits until all are acknowledged.
    pub async fn send_all(&self, records: &[Outbound]) -> Result<()> {
        let mut pending = Vec::with_capacity(records.len());
        for record in records {
            pending.push(self.enqueue(record).await?);
        }
        for future in pending {
            Self::acknowledged(future).await?;
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

    async fn enqueue(&self, record: &Outbound) -> Result<DeliveryFuture> {
        let headers = record.headers.to_owned_headers();
        loop {
            let mut future_record = FutureRecord::to(&record.topic)
                .key(record.key.as_bytes())
                .payload(&record.payload)
                .headers(headers.clone());
            if let Some(partition) = record.partition {
                future_record = future_record.partition(partition);
            }
            match self.inner.send_result(future_record) {
                Ok(future) => return Ok(future),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((source, _)) => {
                    return Err(Error::Kafka {
                        action: "enqueue a record",
                        source,
                    })
                }
            }
        }
    }

    async fn acknowledged(future: DeliveryFuture) -> Result<(i32, i64)> {
        match future.await {
            Ok(Ok(delivery)) => Ok((delivery.partition, delivery.offset)),
            Ok(Err((source, _))) => Err(Error::Kafka {
                action: "deliver a record",
                source,
            }),
            Err(_) => Err(Error::Kafka {
                action: "deliver a record",
                source: KafkaError::Canceled,
            }),
        }
    }
}

//! history-svc: on every authenticated `user.resolved`, looks up the user's
//! most recent distinct purchases in its read model (built from the catalog
//! and orders topics) and emits `history.fetched`.

use std::{
    net::SocketAddr,
    sync::{Arc, RwLock},
};

use storefront_read_models::{decode_order, decode_product, recent_purchases, Catalog, OrderBook};
use storefront_runtime::{
    service::StreamService, HandlerError, Inbound, KafkaSettings, Outbound, RecordHandler,
    RunningService, Topics,
};
use storefront_schemas::{now_ms, HistoryFetched, Resolution, UserResolved};
use tokio_util::sync::CancellationToken;

/// How many recent purchases a page shows.
pub const RECENT_PURCHASES: usize = 5;

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "history-svc",
    about = "Finds each user's recent purchases for the storefront page"
)]
pub struct Settings {
    #[command(flatten)]
    pub kafka: KafkaSettings,
    /// Address of /healthz and /readyz.
    #[arg(long, env = "STOREFRONT_HTTP_ADDR", default_value = "127.0.0.1:8082")]
    pub http_addr: SocketAddr,
}

#[derive(Default)]
struct ReadModel {
    catalog: Catalog,
    orders: OrderBook,
}

struct HistoryHandler {
    model: Arc<RwLock<ReadModel>>,
    topics: Topics,
}

impl RecordHandler for HistoryHandler {
    async fn handle(&self, record: Inbound) -> Result<Vec<Outbound>, HandlerError> {
        let resolved: UserResolved = record
            .decode()
            .map_err(|e| HandlerError::Invalid(e.to_string()))?;
        let context = resolved.context;
        let user = match (resolved.status, resolved.user) {
            (Resolution::Authenticated, Some(user)) => user,
            _ => return Ok(vec![]),
        };
        if context.deadline_ms < now_ms() {
            tracing::debug!(request_id = %context.request_id, "past its deadline; skipped");
            return Ok(vec![]);
        }
        let purchases = {
            let model = self.model.read().expect("read model lock");
            recent_purchases(
                &model.catalog,
                &model.orders,
                &user.customer_id,
                RECENT_PURCHASES,
            )
        };
        let event = HistoryFetched {
            context,
            customer_id: user.customer_id,
            purchases,
        };
        Ok(vec![Outbound::event(
            &self.topics.history_fetched,
            &event.context.session_id,
            &event.context.request_id,
            record.trace_child(),
            &event,
        )])
    }
}

/// Starts history-svc; it runs until `shutdown` is cancelled.
pub async fn start(
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningService> {
    let topics = settings.kafka.topics();
    let model = Arc::new(RwLock::new(ReadModel::default()));
    let (fold, catalog_topic) = (model.clone(), topics.catalog.clone());
    let apply_reference = move |record: &Inbound| -> Result<(), String> {
        let mut model = fold.write().expect("read model lock");
        if record.topic == catalog_topic {
            model.catalog.apply(decode_product(record)?);
        } else {
            model.orders.apply(&decode_order(record)?);
        }
        Ok(())
    };
    let service = StreamService {
        name: "history-svc",
        http_addr: settings.http_addr,
        inputs: vec![topics.user_resolved.clone()],
        reference_topics: vec![topics.catalog.clone(), topics.orders.clone()],
        apply_reference,
        handler: Arc::new(HistoryHandler { model, topics }),
        max_in_flight: 64,
    };
    Ok(service.start(&settings.kafka, shutdown).await?)
}

//! history-svc: on every authenticated `user.resolved`, looks up the user's
//! most recent distinct purchases in its read model (built from the catalog
//! and orders topics) and emits `history.fetched`.

use std::{
    net::SocketAddr,
    sync::{Arc, RwLock},
};

use storefront_read_models::{authenticated_user, recent_purchases, PurchaseHistory};
use storefront_runtime::{
    service::StreamService, HandlerError, Inbound, InstanceSettings, KafkaSettings, Outbound,
    RecordHandler, RunningService, Telemetry, TelemetrySettings, Topics,
};
use storefront_schemas::HistoryFetched;
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
    #[command(flatten)]
    pub telemetry: TelemetrySettings,
    /// Address of /healthz and /readyz.
    #[arg(long, env = "STOREFRONT_HTTP_ADDR", default_value = "127.0.0.1:8082")]
    pub http_addr: SocketAddr,
    #[command(flatten)]
    pub instance: InstanceSettings,
}

struct HistoryHandler {
    model: Arc<RwLock<PurchaseHistory>>,
    topics: Topics,
}

impl RecordHandler for HistoryHandler {
    async fn handle(&self, record: Inbound) -> Result<Vec<Outbound>, HandlerError> {
        let Some((context, user)) = authenticated_user(&record)? else {
            return Ok(vec![]);
        };
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
        Ok(vec![Outbound::for_request(
            &self.topics.history_fetched,
            &event.context,
            &record.trace,
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
    let model = Arc::new(RwLock::new(PurchaseHistory::default()));
    let service = StreamService {
        name: "history-svc",
        http_addr: settings.http_addr,
        inputs: vec![topics.user_resolved.clone()],
        reference_topics: vec![topics.catalog.clone(), topics.orders.clone()],
        model: model.clone(),
        instance: settings.instance,
        handler: Arc::new(HistoryHandler { model, topics }),
        max_in_flight: 64,
        telemetry: Telemetry::new("history-svc", &settings.telemetry)?,
    };
    Ok(service.start(&settings.kafka, shutdown).await?)
}

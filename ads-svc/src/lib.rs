//! ads-svc: on every authenticated `user.resolved`, picks products to
//! advertise (co-purchase counts from the orders topic, best-sellers as a
//! fallback), says why each was chosen, and emits `ads.selected`. Runs in
//! parallel with history-svc.

pub mod ranking;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use storefront_read_models::{authenticated_user, PurchaseHistory};
use storefront_runtime::{
    service::StreamService, HandlerError, Inbound, KafkaSettings, Outbound, RecordHandler,
    RunningService, Telemetry, TelemetrySettings, Topics,
};
use storefront_schemas::AdsSelected;
use tokio_util::sync::CancellationToken;

use crate::ranking::{select_ads, CoPurchases};

/// Ads on one page.
pub const ADS_PER_PAGE: usize = 4;
/// Recent purchases the ranking starts from.
const ANCHORS: usize = 5;

#[derive(Debug, Clone, clap::Parser)]
#[command(name = "ads-svc", about = "Chooses ads for the storefront page")]
pub struct Settings {
    #[command(flatten)]
    pub kafka: KafkaSettings,
    #[command(flatten)]
    pub telemetry: TelemetrySettings,
    /// Address of /healthz and /readyz.
    #[arg(long, env = "STOREFRONT_HTTP_ADDR", default_value = "127.0.0.1:8083")]
    pub http_addr: SocketAddr,
}

#[derive(Default)]
struct ReadModel {
    history: PurchaseHistory,
    co_purchases: CoPurchases,
}

struct AdsHandler {
    model: Arc<Mutex<ReadModel>>,
    topics: Topics,
}

impl RecordHandler for AdsHandler {
    async fn handle(&self, record: Inbound) -> Result<Vec<Outbound>, HandlerError> {
        let Some((context, user)) = authenticated_user(&record)? else {
            return Ok(vec![]);
        };
        let ads = {
            let mut guard = self.model.lock().expect("read model lock");
            let ReadModel {
                history,
                co_purchases,
            } = &mut *guard;
            let recent: Vec<String> = history
                .orders
                .recent_products(&user.customer_id, ANCHORS)
                .into_iter()
                .map(|(p, _)| p)
                .collect();
            select_ads(
                &user.customer_id,
                &recent,
                &history.catalog,
                &history.orders,
                co_purchases,
                ADS_PER_PAGE,
            )
        };
        let event = AdsSelected {
            context,
            customer_id: user.customer_id,
            ads,
        };
        Ok(vec![Outbound::for_request(
            &self.topics.ads_selected,
            &event.context,
            &record.trace,
            &event,
        )])
    }
}

/// Starts ads-svc; it runs until `shutdown` is cancelled.
pub async fn start(
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningService> {
    let topics = settings.kafka.topics();
    let model = Arc::new(Mutex::new(ReadModel::default()));
    let (fold, catalog_topic) = (model.clone(), topics.catalog.clone());
    let apply_reference = move |record: &Inbound| -> Result<(), String> {
        let mut model = fold.lock().expect("read model lock");
        if let Some(new_order) = model.history.apply(record, &catalog_topic)? {
            model.co_purchases.apply(&new_order);
        }
        Ok(())
    };
    let service = StreamService {
        name: "ads-svc",
        http_addr: settings.http_addr,
        inputs: vec![topics.user_resolved.clone()],
        reference_topics: vec![topics.catalog.clone(), topics.orders.clone()],
        apply_reference,
        handler: Arc::new(AdsHandler { model, topics }),
        max_in_flight: 64,
        telemetry: Telemetry::new("ads-svc", &settings.telemetry)?,
    };
    Ok(service.start(&settings.kafka, shutdown).await?)
}

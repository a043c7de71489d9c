//! ads-svc: on every authenticated `user.resolved`, picks products to
//! advertise (bought together with the user's recent purchases more than
//! their popularity explains, from the orders topic; best-sellers as a
//! fallback), says why each was chosen, and emits `ads.selected`. Runs in
//! parallel with history-svc.

pub mod ranking;

use std::{
    net::SocketAddr,
    sync::{Arc, RwLock},
};

use storefront_read_models::{authenticated_user, PurchaseHistory};
use storefront_runtime::{
    service::StreamService, HandlerError, Inbound, InstanceSettings, KafkaSettings, Outbound,
    ReadModel, RecordHandler, RunningService, Telemetry, TelemetrySettings, Topics,
};
use storefront_schemas::{Ad, AdsSelected, Order, Product};
use tokio_util::sync::CancellationToken;

use crate::ranking::{rank, CoPurchases, Method, Pick};

/// Ads on one page.
pub const ADS_PER_PAGE: usize = 4;
/// Recent purchases the ranking starts from.
pub const ANCHORS: usize = 5;

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
    #[command(flatten)]
    pub instance: InstanceSettings,
    #[command(flatten)]
    pub inject_delay: InjectDelay,
}

/// Fault injection for benchmarks, off by default: a fraction of requests
/// is answered late (an async sleep, so other requests are not held up).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct InjectDelay {
    /// Fault injection for benchmarks: answer this many milliseconds late
    /// (for --inject-delay-fraction of requests); 0, the default, is off.
    #[arg(
        long = "inject-delay-ms",
        env = "STOREFRONT_ADS_INJECT_DELAY_MS",
        value_name = "MS",
        default_value_t = 0
    )]
    pub delay_ms: u64,
    /// Fault injection for benchmarks: the fraction of requests (0.0 to 1.0)
    /// answered --inject-delay-ms late; 0.0, the default, is off.
    #[arg(
        long = "inject-delay-fraction",
        env = "STOREFRONT_ADS_INJECT_DELAY_FRACTION",
        value_name = "FRACTION",
        default_value_t = 0.0,
        value_parser = parse_fraction
    )]
    pub fraction: f64,
}

impl InjectDelay {
    /// Sleeps the injected delay if this request is one of the delayed fraction.
    pub async fn apply(&self) {
        if self.delay_ms > 0 && self.fraction > 0.0 && rand::random::<f64>() < self.fraction {
            tokio::time::sleep(std::time::Duration::from_millis(self.delay_ms)).await;
        }
    }
}

fn parse_fraction(value: &str) -> Result<f64, String> {
    let fraction: f64 = value.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&fraction) {
        Ok(fraction)
    } else {
        Err("expected a fraction from 0.0 to 1.0".to_owned())
    }
}

/// What ads are chosen from: the purchase history and co-purchases,
/// folded from the catalog and orders topics.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct AdsModel {
    history: PurchaseHistory,
    co_purchases: CoPurchases,
}

impl ReadModel for AdsModel {
    const LAYOUT: &'static str = "ads: purchase history 2, co-purchases 1";

    /// Folds a record of the catalog or the
    /// orders topic; says why a record is bad.
    fn apply(&mut self, record: &Inbound, topics: &Topics) -> Result<(), String> {
        if let Some(new_order) = self.history.apply(record, topics)? {
            self.co_purchases.apply(&new_order);
        }
        Ok(())
    }

    fn restored(&mut self) {
        self.co_purchases.restored();
    }
}

impl AdsModel {
    /// Adds a product to the catalog.
    pub fn add_product(&mut self, product: Product) {
        self.history.catalog.apply(product);
    }

    /// Adds an order; one already known changes nothing.
    pub fn add_order(&mut self, order: &Order) {
        if self.history.orders.apply(order) {
            self.co_purchases.apply(order);
        }
    }

    /// The page's ads for `customer_id`, ranked from their recent purchases.
    pub fn select(&mut self, customer_id: &str) -> Vec<Ad> {
        self.rank(Method::Lists, customer_id)
            .into_iter()
            .map(|pick| pick.ad)
            .collect()
    }

    /// The page's ads for `customer_id` ranked by `method`, with the
    /// purchase each is shown for.
    pub fn rank(&mut self, method: Method, customer_id: &str) -> Vec<Pick> {
        let recent: Vec<String> = self
            .history
            .orders
            .recent_products(customer_id, ANCHORS)
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        rank(
            method,
            customer_id,
            &recent,
            &self.history.catalog,
            &self.history.orders,
            &mut self.co_purchases,
            ADS_PER_PAGE,
        )
    }

    /// Pages ranked by scanning every partner because the lists could not
    /// prove their answer.
    pub fn scans(&self) -> u64 {
        self.co_purchases.scans()
    }
}

struct AdsHandler {
    model: Arc<RwLock<AdsModel>>,
    topics: Topics,
    inject_delay: InjectDelay,
}

impl RecordHandler for AdsHandler {
    async fn handle(&self, record: Inbound) -> Result<Vec<Outbound>, HandlerError> {
        let Some((context, user)) = authenticated_user(&record)? else {
            return Ok(vec![]);
        };
        let ads = self
            .model
            .write()
            .expect("read model lock")
            .select(&user.customer_id);
        self.inject_delay.apply().await;
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
    let model = Arc::new(RwLock::new(AdsModel::default()));
    let service = StreamService {
        name: "ads-svc",
        http_addr: settings.http_addr,
        inputs: vec![topics.user_resolved.clone()],
        reference_topics: vec![topics.catalog.clone(), topics.orders.clone()],
        model: model.clone(),
        instance: settings.instance,
        handler: Arc::new(AdsHandler {
            model,
            topics,
            inject_delay: settings.inject_delay,
        }),
        max_in_flight: 64,
        telemetry: Telemetry::new("ads-svc", &settings.telemetry)?,
    };
    Ok(service.start(&settings.kafka, shutdown).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ads_layout_names_the_purchase_history_layout_it_holds() {
        // A new form of the history is a new form of the ads model too.
        assert!(AdsModel::LAYOUT.contains(PurchaseHistory::LAYOUT));
    }
}

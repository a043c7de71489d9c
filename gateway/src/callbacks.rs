//! Callbacks on a path of their own: every gateway is a member of one more
//! consumer group on `page.completed` (`gateway-callbacks`), apart from the
//! reply group, and delivers the callbacks of the partitions that group
//! gives it. No page waits on a callback: replies are handed to their
//! requests by the reply group whatever the callbacks do. Deliveries run
//! in one lane per receiver host (the lanes driver), a few at once per
//! host with a bounded backlog, so a receiver that is down or slow holds up
//! only its own callbacks. A reply's offset in this group is committed
//! only once its callback ended and was reported, so when a gateway dies
//! the one that takes its partitions over delivers what was pending.

use std::sync::Arc;

use rdkafka::{consumer::BaseConsumer, TopicPartitionList};
use storefront_runtime::{
    consume::{
        GroupContext, GroupListener, GroupOptions, LaneDriver, LaneHandler, LaneLimits,
        LaneOutcome, StartAt,
    },
    Inbound, KafkaSettings, Readiness, Telemetry,
};
use storefront_schemas::{now_ms, PageCompleted};
use tokio_util::sync::CancellationToken;

use crate::{
    page::result_of, progress::Progress, replies::commit_start_positions, replies::Results,
    webhooks::Webhooks,
};

/// Readiness condition: this gateway has joined the callbacks group (it may
/// own none of its partitions: others deliver those).
pub const CALLBACK_GROUP: &str = "callback group joined";

/// Deliveries to one receiver host at once.
pub const CALLBACKS_PER_HOST: usize = 16;
/// Callbacks to one host waiting for a place; past this, a callback to that
/// host is given up at once (reported `failed`, with the reason).
pub const BACKLOG_PER_HOST: usize = 2_000;
/// Callbacks taken and not yet ended, over every host: past this the
/// callbacks consumer pauses (it goes on polling).
pub const MAX_CALLBACKS_TAKEN: usize = 20_000;

/// Joins the callbacks group on the reply topic. A partition new to the
/// group is read from its end, and that end is committed at once, so if
/// this gateway dies its successor starts there and misses nothing.
pub fn callback_driver(
    settings: &KafkaSettings,
    telemetry: &Telemetry,
    readiness: Readiness,
) -> storefront_runtime::Result<LaneDriver> {
    let topic = settings.topics().page_completed;
    let options = GroupOptions {
        start: StartAt::Latest,
        ..GroupOptions::at_least_once("gateway-callbacks")
    };
    let joined = CallbackPartitions {
        readiness: readiness.clone(),
    };
    LaneDriver::new(
        settings,
        telemetry,
        &options,
        &[&topic],
        LaneLimits {
            per_lane: CALLBACKS_PER_HOST,
            backlog_per_lane: BACKLOG_PER_HOST,
            max_taken: MAX_CALLBACKS_TAKEN,
        },
        readiness,
        Some(Arc::new(joined)),
    )
}

/// Marks the gateway's readiness once its share of the callbacks group is
/// known and its start committed.
struct CallbackPartitions {
    readiness: Readiness,
}

impl GroupListener for CallbackPartitions {
    fn assigned(&self, consumer: &BaseConsumer<GroupContext>, assigned: &TopicPartitionList) {
        if let Err(error) = commit_start_positions(consumer, assigned) {
            tracing::warn!(%error, "could not commit the start of new callback partitions");
        }
        tracing::info!(assigned = assigned.count(), "callback partitions assigned");
        self.readiness.done(CALLBACK_GROUP);
    }
}

/// Delivers the callback a completed page names, if any.
pub struct CallbackHandling {
    pub webhooks: Webhooks,
    pub results: Results,
}

/// A page with a callback, and where to.
fn with_callback(record: &Inbound) -> Option<(PageCompleted, String)> {
    // A record that does not decode is the reply group's to dead-letter.
    let page = record.decode::<PageCompleted>().ok()?;
    let url = page.callback_url.clone()?;
    Some((page, url))
}

impl LaneHandler for CallbackHandling {
    /// The receiver's host (with its port): callbacks to one host share a lane.
    fn lane(&self, record: &Inbound) -> Option<String> {
        let (_, url) = with_callback(record)?;
        let host = reqwest::Url::parse(&url)
            .ok()
            .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)));
        // A URL that does not parse is refused by `deliver`, in a lane of its own.
        Some(host.unwrap_or_default())
    }

    async fn handle(&self, record: Inbound, stop: CancellationToken) -> LaneOutcome {
        let Some((page, url)) = with_callback(&record) else {
            return LaneOutcome::Done;
        };
        let body = webhook_body(&page);
        match self.webhooks.deliver(&page, &url, &body, &stop).await {
            Some(report) => {
                self.remember(page, &report);
                LaneOutcome::Done
            }
            None => LaneOutcome::Stopped,
        }
    }

    async fn overflow(
        &self,
        record: Inbound,
        lane: String,
        stop: CancellationToken,
    ) -> LaneOutcome {
        let Some((page, url)) = with_callback(&record) else {
            return LaneOutcome::Done;
        };
        let why = format!(
            "{BACKLOG_PER_HOST} callbacks to {lane} were waiting already; given up without an attempt"
        );
        match self.webhooks.give_up(&page, &url, why, &stop).await {
            Some(report) => {
                self.remember(page, &report);
                LaneOutcome::Done
            }
            None => LaneOutcome::Stopped,
        }
    }
}

impl CallbackHandling {
    /// Keeps the ended request for status lookups on this gateway.
    fn remember(&self, page: PageCompleted, report: &storefront_schemas::CallbackReported) {
        let request_id = page.context.request_id;
        self.results.insert(
            request_id,
            Progress::from_page(page, Some(report)),
            now_ms(),
        );
    }
}

/// What a callback receives: the result as the result endpoint gives it,
/// in the Standard Webhooks payload shape (`type`, `data`).
fn webhook_body(page: &PageCompleted) -> Vec<u8> {
    let (status, result) = result_of(page, None);
    let body = serde_json::json!({
        "type": "page.completed",
        "request_id": page.context.request_id,
        "http_status": status.as_u16(),
        "data": result,
    });
    serde_json::to_vec(&body).expect("JSON serialises")
}

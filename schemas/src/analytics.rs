//! What analytics jobs write back: the Kafka Streams job of
//! `examples/analytics-java` counts pages per minute onto
//! `analytics.pages-per-minute`, so `storefront tail` and any consumer read it
//! like the other topics.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `analytics.pages-per-minute`: one closed one-minute window of pages, by
/// the time each page was completed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename = "pages_per_minute")]
pub struct PagesPerMinute {
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    /// Every page completed in the window.
    pub pages: i64,
    pub complete: i64,
    pub partial: i64,
    /// Partial pages by missing part (`user`, `history`, `ads`).
    pub partial_missing: BTreeMap<String, i64>,
    pub rejected: i64,
    /// Status `unavailable`: not even the user was resolved by the deadline.
    pub timed_out: i64,
    /// Completion minus `requested_at_ms`, nearest rank.
    pub latency_p50_ms: i64,
    pub latency_p95_ms: i64,
    pub latency_max_ms: i64,
    pub ad_impressions: i64,
    pub ad_impressions_by_product: BTreeMap<String, i64>,
    /// By kind of reason: `bought_together`, `best_seller`, `popular`, `other`.
    pub ad_impressions_by_reason: BTreeMap<String, i64>,
}

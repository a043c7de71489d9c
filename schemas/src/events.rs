//! Request-path events, one per step of the flow.

use serde::{Deserialize, Serialize};

use crate::{RequestId, SessionId};

/// Copied onto every event of one request: who asked, where to answer, by when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "request_context")]
pub struct RequestContext {
    pub request_id: RequestId,
    pub session_id: SessionId,
    pub requested_at_ms: i64,
    pub deadline_ms: i64,
    pub reply_topic: String,
    pub reply_partition: i32,
}

/// The wall-clock budget a page request gets unless configured
/// (`STOREFRONT_PAGE_DEADLINE_MS`): by then the aggregator answers it,
/// complete or partial.
pub const DEFAULT_PAGE_DEADLINE_MS: u64 = 250;

impl RequestContext {
    /// Whether the request's deadline has passed at `now_ms`: nobody waits
    /// for its answer any more.
    pub fn expired(&self, now_ms: i64) -> bool {
        self.deadline_ms < now_ms
    }

    /// How long is left until the deadline at `now_ms` (zero once passed).
    pub fn remaining(&self, now_ms: i64) -> std::time::Duration {
        std::time::Duration::from_millis((self.deadline_ms - now_ms).max(0) as u64)
    }

    /// The time the request gave itself, from its start to its deadline.
    pub fn budget_ms(&self) -> i64 {
        self.deadline_ms - self.requested_at_ms
    }
}

/// Credentials of a login, the password sealed so only user-svc can open it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "login_attempt")]
pub struct LoginAttempt {
    pub username: String,
    #[serde(with = "apache_avro::serde::bytes")]
    pub sealed_password: Vec<u8>,
}

/// `page.requested`: the gateway asks for a page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "page_requested")]
pub struct PageRequested {
    pub context: RequestContext,
    pub login: Option<LoginAttempt>,
    /// Close the session rather than render a page.
    #[serde(default)]
    pub logout: bool,
    /// Where to POST the result (Standard Webhooks), if anywhere.
    #[serde(default)]
    pub callback_url: Option<String>,
    /// The client's `Idempotency-Key`, if it sent one.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[serde(rename = "resolution")]
pub enum Resolution {
    Authenticated,
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "user_profile")]
pub struct UserProfile {
    pub customer_id: String,
    pub name: String,
    pub city: String,
}

/// `user.resolved`: user-svc's verdict on who is asking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "user_resolved")]
pub struct UserResolved {
    pub context: RequestContext,
    pub status: Resolution,
    pub rejection: Option<String>,
    pub user: Option<UserProfile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "purchase")]
pub struct Purchase {
    pub product_id: String,
    pub name: String,
    pub category: String,
    pub price_cents: i64,
    pub purchased_at_ms: i64,
}

/// `history.fetched`: the user's most recent distinct purchases, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "history_fetched")]
pub struct HistoryFetched {
    pub context: RequestContext,
    pub customer_id: String,
    pub purchases: Vec<Purchase>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "ad")]
pub struct Ad {
    pub product_id: String,
    pub name: String,
    pub price_cents: i64,
    pub reason: String,
}

/// `ads.selected`: the products ads-svc picked for the user, best first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "ads_selected")]
pub struct AdsSelected {
    pub context: RequestContext,
    pub customer_id: String,
    pub ads: Vec<Ad>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[serde(rename = "page_status")]
pub enum PageStatus {
    Complete,
    Partial,
    Rejected,
    Unavailable,
}

/// `page.completed`: the aggregator's one answer to a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "page_completed")]
pub struct PageCompleted {
    pub context: RequestContext,
    pub status: PageStatus,
    pub missing: Vec<String>,
    pub rejection: Option<String>,
    pub user: Option<UserProfile>,
    pub recent_purchases: Vec<Purchase>,
    pub ads: Vec<Ad>,
    /// Added with a default, so the schema stays compatible with its first version.
    #[serde(default)]
    pub milestones: Vec<Milestone>,
    /// Copied from the request: where the result is POSTed.
    #[serde(default)]
    pub callback_url: Option<String>,
}

/// One step of a request through the services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename = "milestone")]
pub struct Milestone {
    /// `picked_up` or `completed`.
    pub stage: String,
    pub service: String,
    pub at_ms: i64,
}

/// How a callback delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[serde(rename = "callback_outcome")]
pub enum CallbackOutcome {
    Delivered,
    Failed,
}

/// `callback.reported`: the result reached the callback URL, or was given up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "callback_reported")]
pub struct CallbackReported {
    pub context: RequestContext,
    pub url: String,
    pub webhook_id: String,
    pub outcome: CallbackOutcome,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub reported_at_ms: i64,
}

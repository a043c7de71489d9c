//! The page JSON of the HTTP contract.

use serde::Serialize;
use storefront_schemas::{PageCompleted, PageStatus};

#[derive(Debug, Serialize)]
pub struct PageResponse {
    pub request_id: String,
    pub status: &'static str,
    pub missing: Vec<String>,
    pub page: PageBody,
    /// When the request was initiated, enqueued, picked up by each service,
    /// completed and delivered.
    pub milestones: Vec<MilestoneView>,
}

#[derive(Debug, Serialize)]
pub struct MilestoneView {
    pub stage: String,
    pub service: String,
    pub at_ms: i64,
}

#[derive(Debug, Serialize)]
pub struct PageBody {
    pub user: Option<UserView>,
    pub recent_purchases: Vec<PurchaseView>,
    pub ads: Vec<AdView>,
}

#[derive(Debug, Serialize)]
pub struct UserView {
    pub id: String,
    pub name: String,
    pub city: String,
}

#[derive(Debug, Serialize)]
pub struct PurchaseView {
    pub product_id: String,
    pub name: String,
    pub category: String,
    pub price_cents: i64,
    pub purchased_at_ms: i64,
}

#[derive(Debug, Serialize)]
pub struct AdView {
    pub product_id: String,
    pub name: String,
    pub price_cents: i64,
    pub reason: String,
}

impl PageResponse {
    /// The client's view of a complete or partial page.
    pub fn from_completed(page: PageCompleted) -> Self {
        Self {
            request_id: page.context.request_id,
            status: if page.status == PageStatus::Complete {
                "complete"
            } else {
                "partial"
            },
            missing: page.missing,
            page: PageBody {
                user: page.user.map(|u| UserView {
                    id: u.customer_id,
                    name: u.name,
                    city: u.city,
                }),
                recent_purchases: page
                    .recent_purchases
                    .into_iter()
                    .map(|p| PurchaseView {
                        product_id: p.product_id,
                        name: p.name,
                        category: p.category,
                        price_cents: p.price_cents,
                        purchased_at_ms: p.purchased_at_ms,
                    })
                    .collect(),
                ads: page
                    .ads
                    .into_iter()
                    .map(|a| AdView {
                        product_id: a.product_id,
                        name: a.name,
                        price_cents: a.price_cents,
                        reason: a.reason,
                    })
                    .collect(),
            },
            milestones: page
                .milestones
                .into_iter()
                .map(|m| MilestoneView {
                    stage: m.stage,
                    service: m.service,
                    at_ms: m.at_ms,
                })
                .collect(),
        }
    }
}

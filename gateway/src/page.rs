//! The page JSON of the HTTP contract, and the result of a finished
//! request as every channel gives it (result endpoint, event stream, webhook).

use axum::{http::StatusCode, response::IntoResponse};
use serde::Serialize;
use storefront_schemas::{PageCompleted, PageStatus};
use utoipa::ToSchema;

use crate::{error::ApiError, progress::CallbackState};

#[derive(Debug, Serialize, ToSchema)]
pub struct PageResponse {
    pub request_id: String,
    /// `complete`, or `partial` when some parts missed the deadline.
    #[schema(example = "complete")]
    pub status: &'static str,
    pub missing: Vec<String>,
    pub page: PageBody,
    /// When the request was initiated, enqueued, picked up by each service,
    /// completed and delivered.
    pub milestones: Vec<MilestoneView>,
    /// Where the delivery to the request's callback URL stands, if it named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback: Option<CallbackState>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MilestoneView {
    pub stage: String,
    pub service: String,
    pub at_ms: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PageBody {
    pub user: Option<UserView>,
    pub recent_purchases: Vec<PurchaseView>,
    pub ads: Vec<AdView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub name: String,
    pub city: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PurchaseView {
    pub product_id: String,
    pub name: String,
    pub category: String,
    pub price_cents: i64,
    pub purchased_at_ms: i64,
}

#[derive(Debug, Serialize, ToSchema)]
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
            request_id: page.context.request_id.to_string(),
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
            callback: None,
        }
    }
}

/// The result of a finished request: the page (200), or the error it
/// ended in (401 for a rejected login or session, 504 when the user could
/// not be resolved by the deadline), as a status and a JSON body.
pub fn result_of(
    page: &PageCompleted,
    callback: Option<&CallbackState>,
) -> (StatusCode, serde_json::Value) {
    let error = match page.status {
        PageStatus::Complete | PageStatus::Partial => {
            let mut response = PageResponse::from_completed(page.clone());
            response.callback = callback.cloned();
            let body = serde_json::to_value(response).expect("JSON serialises");
            return (StatusCode::OK, body);
        }
        PageStatus::Rejected
            if page.rejection.as_deref()
                == Some(storefront_schemas::rejection::INVALID_CREDENTIALS) =>
        {
            ApiError::InvalidCredentials
        }
        PageStatus::Rejected => ApiError::InvalidSession,
        PageStatus::Unavailable => ApiError::DeadlineExceeded,
    };
    let mut body = serde_json::json!({
        "request_id": page.context.request_id,
        "error": {"code": error.code(), "message": error.to_string()},
    });
    if let Some(callback) = callback {
        body["callback"] = serde_json::to_value(callback).expect("JSON serialises");
    }
    (error.status(), body)
}

impl IntoResponse for PageResponse {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self).into_response()
    }
}

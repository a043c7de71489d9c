//! Reference data: the topics the read models are built from.

use serde::{Deserialize, Serialize};

/// `customers`: a public profile, no credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "customer")]
pub struct Customer {
    pub customer_id: String,
    pub username: String,
    pub name: String,
    pub city: String,
    pub registered_at_ms: i64,
}

/// `credentials`: an argon2id hash, read by user-svc alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "credential")]
pub struct Credential {
    pub username: String,
    pub customer_id: String,
    pub password_hash: String,
}

/// `catalog`: one product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "product")]
pub struct Product {
    pub product_id: String,
    pub name: String,
    pub category: String,
    pub price_cents: i64,
}

/// `orders`: one basket bought by one customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "order")]
pub struct Order {
    pub order_id: String,
    pub customer_id: String,
    pub ordered_at_ms: i64,
    pub product_ids: Vec<String>,
}

/// `sessions`: a session user-svc opened at login.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "session")]
pub struct Session {
    pub session_id: crate::SessionId,
    pub customer_id: String,
    pub opened_at_ms: i64,
    pub expires_at_ms: i64,
}

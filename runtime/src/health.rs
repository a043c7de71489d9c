//! `/healthz` and `/readyz`, and what a service is still waiting for.

use std::{collections::BTreeSet, sync::Arc};

use axum::{extract::State, http::StatusCode, routing::get, Json, Router};
use serde_json::json;
use tokio::sync::watch;

/// The conditions a service waits for before it is ready (producer warm,
/// partitions assigned, reference data loaded...).
#[derive(Clone)]
pub struct Readiness {
    pending: Arc<watch::Sender<BTreeSet<&'static str>>>,
}

impl Readiness {
    pub fn new(conditions: &[&'static str]) -> Self {
        let (tx, _) = watch::channel(conditions.iter().copied().collect());
        Self {
            pending: Arc::new(tx),
        }
    }

    /// One condition is met.
    pub fn done(&self, condition: &'static str) {
        self.pending
            .send_if_modified(|pending| pending.remove(condition));
    }

    pub fn is_ready(&self) -> bool {
        self.pending.borrow().is_empty()
    }

    /// What is still awaited.
    pub fn pending(&self) -> Vec<&'static str> {
        self.pending.borrow().iter().copied().collect()
    }

    /// Resolves once every condition is met.
    pub async fn wait(&self) {
        let mut rx = self.pending.subscribe();
        let _ = rx.wait_for(BTreeSet::is_empty).await;
    }
}

/// `/healthz` (the process answers) and `/readyz` (it can do its job).
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .with_state(readiness)
}

async fn readyz(State(readiness): State<Readiness>) -> (StatusCode, Json<serde_json::Value>) {
    if readiness.is_ready() {
        (StatusCode::OK, Json(json!({"status": "ready"})))
    } else {
        let message = format!("waiting for: {}", readiness.pending().join(", "));
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": {"code": "not_ready", "message": message}})),
        )
    }
}

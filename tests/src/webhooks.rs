//! A webhook receiver for the tests. It records every delivery and answers
//! as its path says: `/ok` takes everything, `/flaky/N` fails the first N
//! deliveries of each webhook-id with 503, `/slow/N` answers 200 after N
//! seconds, `/down` always fails. A [`BlackHole`] accepts connections and
//! never answers; [`refused_url`] names a port nothing listens on.
//! Signatures are checked with the Standard Webhooks reference library
//! (Python).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    routing::post,
    Router,
};

const VERIFY: &str = include_str!("../python/verify_webhooks.py");

/// One POST the receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: String,
    pub status: u16,
}

impl Delivery {
    pub fn webhook_id(&self) -> &str {
        self.headers.get("webhook-id").map_or("", String::as_str)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<Vec<Delivery>>>);

/// A receiver listening on 127.0.0.1.
pub struct Receiver {
    pub addr: SocketAddr,
    recorded: Recorded,
}

impl Receiver {
    /// Starts the receiver on the current runtime.
    pub async fn start() -> Self {
        let recorded = Recorded::default();
        let app = Router::new()
            .route("/{*path}", post(receive))
            .with_state(recorded.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, recorded }
    }

    /// The URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every delivery so far, oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.recorded.0.lock().unwrap().clone()
    }

    /// The deliveries of one request (webhook-id `msg_<request_id>`).
    pub fn deliveries_of(&self, request_id: &str) -> Vec<Delivery> {
        let id = format!("msg_{request_id}");
        self.deliveries()
            .into_iter()
            .filter(|d| d.webhook_id() == id)
            .collect()
    }
}

async fn receive(
    State(recorded): State<Recorded>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    if let Some(seconds) = path.strip_prefix("slow/") {
        let seconds = seconds.parse().unwrap_or(30);
        tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
    }
    let mut deliveries = recorded.0.lock().unwrap();
    let id = headers.get("webhook-id").cloned().unwrap_or_default();
    let earlier = deliveries
        .iter()
        .filter(|d| d.headers.get("webhook-id") == Some(&id))
        .count();
    let status = match path.split('/').collect::<Vec<_>>().as_slice() {
        ["ok"] => StatusCode::NO_CONTENT,
        ["slow", _] => StatusCode::OK,
        ["flaky", n] if earlier >= n.parse().unwrap_or(0) => StatusCode::OK,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    deliveries.push(Delivery {
        path: format!("/{path}"),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        status: status.as_u16(),
    });
    status
}

/// Checks each delivery's signature with the reference library: "ok" or why not.
pub fn verify(secret: &str, deliveries: &[Delivery]) -> Vec<String> {
    let input: Vec<serde_json::Value> = deliveries
        .iter()
        .map(|d| serde_json::json!({"headers": d.headers, "body": d.body}))
        .collect();
    let input = serde_json::to_string(&input).unwrap();
    let output = super::python::run_script(VERIFY, &[secret], input.as_bytes());
    assert!(
        output.status.success(),
        "the verifier failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the verifier prints JSON")
}

/// A receiver that accepts every connection and never answers: what a
/// partner whose server hangs looks like.
pub struct BlackHole {
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl BlackHole {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((connection, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(connection);
            }
        });
        Self { addr, accepted }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// A URL on 127.0.0.1 whose port nothing listens on: connections are refused.
pub fn refused_url(path: &str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}{path}")
}

//! Prometheus metrics: one registry per service, served at `/metrics`.
//! Every service registers the same families, so one dashboard fits all.

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request, State},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use rdkafka::{consumer::ConsumerContext, statistics::Statistics, ClientContext};

/// Latency buckets in seconds, from 1 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One service's metric families.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub http_duration: HistogramVec,
    pub http_in_flight: IntGauge,
    pub hop_latency: HistogramVec,
    pub page_latency: HistogramVec,
    pub consumer_lag: IntGaugeVec,
    pub records_in_flight: IntGauge,
    pub dead_letters: IntCounterVec,
    pub retries: IntCounterVec,
    pub shed: IntCounter,
    pub expired_joins: IntCounter,
    pub stale_requests: IntCounter,
    pub pending_joins: IntGauge,
    pub transaction_duration: HistogramVec,
    pub transaction_pages: IntCounter,
    pub read_model_starts: IntCounterVec,
    pub http_connections: IntGauge,
    pub http_connections_refused: IntCounter,
    pub http_timeouts: IntCounterVec,
    pub streams_open: IntGauge,
    pub streams_refused: IntCounterVec,
    pub followed_partitions: IntGauge,
}

impl Metrics {
    /// Registers every family in a new registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let family = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                labels,
            )
            .expect("valid histogram");
            registry
                .register(Box::new(family.clone()))
                .expect("unique metric");
            family
        };
        let http_duration = histogram(
            "http_request_duration_seconds",
            "HTTP request duration by route, method and status",
            &["route", "method", "status"],
        );
        let hop_latency = histogram(
            "storefront_hop_latency_seconds",
            "From a record's timestamp until a service picked it up, by topic",
            &["topic"],
        );
        let page_latency = histogram(
            "storefront_page_latency_seconds",
            "From a page request until its answer, by outcome (complete, partial, rejected, unavailable, timeout)",
            &["status"],
        );
        let transaction_duration = histogram(
            "storefront_transaction_duration_seconds",
            "How long a transaction took from begin to commit or abort, by outcome (committed, aborted, failed)",
            &["outcome"],
        );
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "storefront_consumer_lag",
                "Records behind the end of each consumed partition",
            ),
            &["topic", "partition"],
        )
        .expect("valid gauge");
        let counter_vec = |name: &str, help: &str| {
            IntCounterVec::new(Opts::new(name, help), &["topic"]).expect("valid counter")
        };
        let dead_letters = counter_vec(
            "storefront_dead_letters_total",
            "Records sent to the dead-letter topic, by source topic",
        );
        let retries = counter_vec(
            "storefront_retries_total",
            "Retries after transient failures, by the topic being handled or written",
        );
        let shed = IntCounter::new(
            "storefront_shed_total",
            "Requests refused with 429 because too many were in flight",
        )
        .expect("valid counter");
        let expired_joins = IntCounter::new(
            "storefront_expired_joins_total",
            "Joins that reached their deadline before every part arrived",
        )
        .expect("valid counter");
        let stale_requests = IntCounter::new(
            "storefront_stale_requests_total",
            "Request parts dropped unanswered: their deadline passed longer ago than answers are remembered",
        )
        .expect("valid counter");
        let pending_joins = IntGauge::new(
            "storefront_pending_joins",
            "Requests the aggregator is still joining",
        )
        .expect("valid gauge");
        let transaction_pages = IntCounter::new(
            "storefront_transaction_pages_total",
            "Pages written in committed transactions",
        )
        .expect("valid counter");
        let read_model_starts = IntCounterVec::new(
            Opts::new(
                "storefront_read_model_starts_total",
                "Read models started, by where from (checkpoint: restored from the local checkpoint; topics: rebuilt from the beginning)",
            ),
            &["from"],
        )
        .expect("valid counter");
        let http_in_flight =
            IntGauge::new("http_requests_in_flight", "HTTP requests being served now")
                .expect("valid gauge");
        let records_in_flight = IntGauge::new(
            "storefront_records_in_flight",
            "Input records being handled now",
        )
        .expect("valid gauge");
        let http_connections = IntGauge::new("http_connections_open", "HTTP connections open now")
            .expect("valid gauge");
        let http_connections_refused = IntCounter::new(
            "http_connections_refused_total",
            "HTTP connections answered 503 and closed because as many as allowed were open",
        )
        .expect("valid counter");
        let http_timeouts = IntCounterVec::new(
            Opts::new(
                "http_timeouts_total",
                "HTTP connections or requests ended by a bound, by kind (headers: not sent in time; body: not sent in time, 408; idle: no byte moved)",
            ),
            &["kind"],
        )
        .expect("valid counter");
        let streams_open = IntGauge::new(
            "storefront_event_streams_open",
            "Server-Sent Events streams of request status open now",
        )
        .expect("valid gauge");
        let streams_refused = IntCounterVec::new(
            Opts::new(
                "storefront_event_streams_refused_total",
                "Event streams refused with 429, by the limit reached (session, total)",
            ),
            &["limit"],
        )
        .expect("valid counter");
        let followed_partitions = IntGauge::new(
            "storefront_followed_partitions",
            "Partitions the gateway follows for its open event streams",
        )
        .expect("valid gauge");
        for family in [
            Box::new(http_connections.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_connections_refused.clone()),
            Box::new(http_timeouts.clone()),
            Box::new(streams_open.clone()),
            Box::new(streams_refused.clone()),
            Box::new(followed_partitions.clone()),
            Box::new(consumer_lag.clone()),
            Box::new(dead_letters.clone()),
            Box::new(retries.clone()),
            Box::new(shed.clone()),
            Box::new(expired_joins.clone()),
            Box::new(stale_requests.clone()),
            Box::new(pending_joins.clone()),
            Box::new(transaction_pages.clone()),
            Box::new(http_in_flight.clone()),
            Box::new(records_in_flight.clone()),
            Box::new(read_model_starts.clone()),
        ] {
            registry.register(family).expect("unique metric");
        }
        Self {
            registry,
            http_duration,
            http_in_flight,
            hop_latency,
            page_latency,
            consumer_lag,
            records_in_flight,
            dead_letters,
            retries,
            shed,
            expired_joins,
            stale_requests,
            pending_joins,
            transaction_duration,
            transaction_pages,
            read_model_starts,
            http_connections,
            http_connections_refused,
            http_timeouts,
            streams_open,
            streams_refused,
            followed_partitions,
        }
    }

    /// The text exposition format of every family.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding does not fail");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }

    /// Records how long a record waited between its timestamp and `now_ms`.
    pub fn observe_hop(&self, topic: &str, record_timestamp_ms: Option<i64>, now_ms: i64) {
        if let Some(timestamp) = record_timestamp_ms {
            let seconds = (now_ms - timestamp).max(0) as f64 / 1000.0;
            self.hop_latency
                .with_label_values(&[topic])
                .observe(seconds);
        }
    }

    /// Sets consumer lag from librdkafka statistics: the partitions this
    /// client consumes get a value, the ones it let go lose theirs.
    pub fn record_consumer_lag(&self, statistics: &Statistics) {
        for (topic, stats) in &statistics.topics {
            for partition in stats.partitions.values() {
                if partition.partition < 0 {
                    continue;
                }
                let label = partition.partition.to_string();
                if !partition.desired {
                    let _ = self.consumer_lag.remove_label_values(&[topic, &label]);
                    continue;
                }
                // Behind the committed offset; readers that never commit
                // (reference data) are measured from what they consumed.
                let lag = if partition.consumer_lag >= 0 {
                    partition.consumer_lag
                } else if partition.app_offset >= 0 && partition.hi_offset >= 0 {
                    partition.hi_offset - partition.app_offset
                } else {
                    continue;
                };
                self.consumer_lag
                    .with_label_values(&[topic, &label])
                    .set(lag);
            }
        }
    }
}

/// `GET /metrics`.
pub(crate) async fn serve(State(metrics): State<Metrics>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
        .into_response()
}

/// Middleware: HTTP duration by matched route, and requests in flight.
pub(crate) async fn track_http(
    State(metrics): State<Metrics>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    // The client picks the method: only the standard ones get a series of
    // their own, or made-up methods would grow `/metrics` without bound.
    let method = match request.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => m.to_owned(),
        _ => "other".to_owned(),
    };
    metrics.http_in_flight.inc();
    let response = next.run(request).await;
    metrics.http_in_flight.dec();
    let status = response.status();
    metrics
        .http_duration
        .with_label_values(&[&route, &method, status.as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// A consumer context that only reports lag, for clients with no other hooks.
pub struct LagReporter(pub Metrics);

impl ClientContext for LagReporter {
    fn stats(&self, statistics: Statistics) {
        self.0.record_consumer_lag(&statistics);
    }
}

impl ConsumerContext for LagReporter {}

/// How often consumers publish statistics (lag), in milliseconds.
pub const STATISTICS_INTERVAL_MS: &str = "1000";

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, routing::any};
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn made_up_methods_share_one_series() {
        let metrics = Metrics::new();
        let router = axum::Router::new()
            .route("/", any(|| async { "ok" }))
            .route_layer(axum::middleware::from_fn_with_state(
                metrics.clone(),
                track_http,
            ));
        for method in ["GET", "FOO", "BAR"] {
            let request = axum::http::Request::builder()
                .method(method)
                .uri("/")
                .body(Body::empty())
                .unwrap();
            router.clone().oneshot(request).await.unwrap();
        }
        let rendered = metrics.render();
        assert!(rendered.contains(r#"method="GET""#), "{rendered}");
        assert!(rendered.contains(r#"method="other""#), "{rendered}");
        assert!(!rendered.contains("FOO") && !rendered.contains("BAR"));
    }
}

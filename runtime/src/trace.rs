//! Traces: W3C trace context in the `traceparent` header of every
//! request-path record (OpenTelemetry's propagator), and spans named and
//! attributed as the OpenTelemetry messaging conventions say.

use opentelemetry::{
    propagation::{Extractor, TextMapPropagator},
    trace::{Link, SpanContext, SpanKind, Status, TraceContextExt, Tracer},
    Context, KeyValue,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;

use crate::Telemetry;

/// The trace context a record carries in its headers (empty if none).
pub fn extract(raw_headers: &[(String, Vec<u8>)]) -> Context {
    struct Headers<'a>(&'a [(String, Vec<u8>)]);
    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.iter().map(|(k, _)| k.as_str()).collect()
        }
    }
    TraceContextPropagator::new().extract(&Headers(raw_headers))
}

/// The headers (`traceparent`, and `tracestate` if any) that carry `cx`.
pub fn inject(cx: &Context) -> Vec<(String, String)> {
    let mut headers = std::collections::HashMap::new();
    TraceContextPropagator::new().inject_context(cx, &mut headers);
    let mut headers: Vec<_> = headers.into_iter().collect();
    headers.sort();
    headers
}

/// The trace id of `cx` as 32 hex digits (all zeros when there is none).
pub fn trace_id(cx: &Context) -> String {
    cx.span().span_context().trace_id().to_string()
}

/// The span context of `cx`, if it holds a valid one.
pub fn span_context(cx: &Context) -> Option<SpanContext> {
    let span_context = cx.span().span_context().clone();
    span_context.is_valid().then_some(span_context)
}

/// Attributes shared by every messaging span.
fn destination(topic: &str, partition: Option<i32>) -> Vec<KeyValue> {
    let mut attributes = vec![
        KeyValue::new("messaging.system", "kafka"),
        KeyValue::new("messaging.destination.name", topic.to_owned()),
    ];
    if let Some(partition) = partition {
        attributes.push(KeyValue::new(
            "messaging.destination.partition.id",
            partition.to_string(),
        ));
    }
    attributes
}

impl Telemetry {
    /// A `process {topic}` consumer span for a record, child of the span
    /// that produced it. Also observes the record's hop latency.
    pub fn process_span(&self, record: &crate::Inbound, now_ms: i64) -> Context {
        self.metrics()
            .observe_hop(&record.topic, record.timestamp_ms, now_ms);
        let mut attributes = destination(&record.topic, Some(record.partition));
        attributes.extend([
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.operation.name", "process"),
            KeyValue::new("messaging.operation", "process"),
            KeyValue::new("messaging.kafka.offset", record.offset),
            KeyValue::new("messaging.consumer.group.name", self.service()),
        ]);
        if let Some(key) = record.key_str() {
            attributes.push(KeyValue::new("messaging.kafka.message.key", key.to_owned()));
        }
        if let Some(request_id) = &record.headers.request_id {
            attributes.push(KeyValue::new(
                "storefront.request_id",
                request_id.to_string(),
            ));
        }
        let span = self
            .tracer()
            .span_builder(format!("process {}", record.topic))
            .with_kind(SpanKind::Consumer)
            .with_attributes(attributes)
            .start_with_context(self.tracer(), &record.trace);
        record.trace.with_span(span)
    }

    /// A `send {topic}` producer span, child of `parent`.
    pub fn send_span(&self, parent: &Context, topic: &str, partition: Option<i32>) -> Context {
        let mut attributes = destination(topic, partition);
        attributes.extend([
            KeyValue::new("messaging.operation.type", "send"),
            KeyValue::new("messaging.operation.name", "send"),
            KeyValue::new("messaging.operation", "publish"),
        ]);
        let span = self
            .tracer()
            .span_builder(format!("send {topic}"))
            .with_kind(SpanKind::Producer)
            .with_attributes(attributes)
            .start_with_context(self.tracer(), parent);
        parent.with_span(span)
    }

    /// An internal span child of `parent` and linked to every context in
    /// `links` (the aggregator's join of several records).
    pub fn joined_span(&self, name: &str, parent: &Context, links: Vec<SpanContext>) -> Context {
        let span = self
            .tracer()
            .span_builder(name.to_owned())
            .with_kind(SpanKind::Internal)
            .with_links(links.into_iter().map(Link::with_context).collect())
            .start_with_context(self.tracer(), parent);
        parent.with_span(span)
    }

    /// A server span for an HTTP request: the root of a request's trace.
    pub fn http_span(&self, method: &str, route: &str) -> Context {
        let span = self
            .tracer()
            .span_builder(format!("{method} {route}"))
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("http.request.method", method.to_owned()),
                KeyValue::new("http.route", route.to_owned()),
            ])
            .start_with_context(self.tracer(), &Context::new());
        Context::new().with_span(span)
    }
}

/// Ends the span of `cx`, marking it failed with `error` if there is one.
pub fn end(cx: &Context, error: Option<&str>) {
    let span = cx.span();
    if let Some(error) = error {
        span.set_status(Status::error(error.to_owned()));
    }
    span.end();
}

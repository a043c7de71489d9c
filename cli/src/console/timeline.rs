//! One request's timeline: `storefront trace`'s records (the same locator
//! reads them), with what the page draws added: who wrote each record, the
//! deadline, the outcome and its missing parts, the trace ID and its link.
//! Secrets are redacted here, before anything is sent.

use axum::{
    extract::{rejection::QueryRejection, Path, Query, State},
    Json,
};
use serde::Deserialize;
use serde_json::{json, Value};
use storefront_runtime::dead_letter;
use storefront_schemas::RequestId;

use super::{
    error::bad_query,
    redact::{is_secret, redact, REDACTED},
    time_range, ApiError, AppState,
};
use crate::trace::{self, Step, Trace};

/// The services, in the order of the flow: one lane each.
pub(super) const SERVICES: [&str; 5] = [
    "gateway",
    "user-svc",
    "history-svc",
    "ads-svc",
    "aggregator",
];

#[derive(Debug, Default, Deserialize)]
pub(super) struct Range {
    since: Option<String>,
    until: Option<String>,
}

/// `GET /api/requests/{id}/timeline`.
pub(super) async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
    range: Result<Query<Range>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let range = range.map_err(bad_query)?.0;
    let request_id = RequestId::parse(&id)
        .ok()
        .filter(|id| id.created_at_ms().is_some())
        .ok_or_else(|| {
            ApiError::invalid("bad_id", format!("{id:?} is not a request ID (a UUIDv7)"))
        })?;
    let (since, until) = time_range(range.since, range.until)?;
    let kafka = state.kafka.clone();
    let id = request_id.to_string();
    let trace = tokio::task::spawn_blocking(move || trace::trace(&kafka, &id, since, until))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| match e.downcast_ref::<trace::NotFound>() {
            Some(not_found) => ApiError::NotFound(not_found.to_string()),
            None => ApiError::Kafka(format!("{e:#}")),
        })?;
    Ok(Json(timeline(
        &trace,
        state.trace_url.as_deref(),
        state.page_deadline_ms,
    )))
}

/// The trace as the page draws it.
pub(super) fn timeline(trace: &Trace, trace_url: Option<&str>, default_deadline_ms: u64) -> Value {
    let field = |suffix: &str, path: &[&str]| -> Option<Value> {
        trace
            .steps
            .iter()
            .filter(|s| s.record.topic.ends_with(suffix))
            .find_map(|s| {
                let trace::Step { record, .. } = s;
                let crate::decoded::Decoded::Value(value) = &record.value else {
                    return None;
                };
                path.iter().try_fold(value, |v, name| v.get(name)).cloned()
            })
    };
    let requested_at_ms = field("page.requested", &["context", "requested_at_ms"])
        .and_then(|v| v.as_i64())
        .or_else(|| trace.steps.first().and_then(|s| s.record.timestamp_ms));
    let deadline_ms = field("page.requested", &["context", "deadline_ms"])
        .and_then(|v| v.as_i64())
        .or_else(|| requested_at_ms.map(|at| at + default_deadline_ms as i64));
    let status = field("page.completed", &["status"]);
    let missing = field("page.completed", &["missing"]).unwrap_or_else(|| json!([]));
    let trace_id = trace.steps.iter().find_map(|s| s.record.trace_id.clone());
    let link = match (trace_url, &trace_id) {
        (Some(template), Some(id)) => Some(template.replace("{trace_id}", id)),
        _ => None,
    };
    let steps: Vec<Value> = trace.steps.iter().map(step).collect();
    let mut out = serde_json::to_value(trace).expect("a trace serializes");
    let fields = out.as_object_mut().expect("a trace is an object");
    fields.insert("steps".into(), Value::Array(steps));
    fields.insert("requested_at_ms".into(), json!(requested_at_ms));
    fields.insert("deadline_ms".into(), json!(deadline_ms));
    fields.insert("status".into(), status.unwrap_or(Value::Null));
    fields.insert("missing".into(), missing);
    fields.insert("trace_id".into(), json!(trace_id));
    fields.insert("trace_url".into(), json!(link));
    fields.insert("services".into(), json!(SERVICES));
    out
}

/// One step, with who wrote it and no secret.
fn step(step: &Step) -> Value {
    let mut value = serde_json::to_value(step).expect("a step serializes");
    let service = service_of(step);
    let fields = value.as_object_mut().expect("a step is an object");
    fields.insert("service".into(), json!(service));
    if let Some(Value::Object(headers)) = fields.get_mut("headers") {
        for (name, header) in headers.iter_mut() {
            if is_secret(name) {
                *header = Value::String(REDACTED.into());
            }
        }
    }
    for payload in ["value", "dead_letter"] {
        if let Some(payload) = fields.get_mut(payload) {
            redact(payload);
        }
    }
    value
}

/// Who wrote the record: each topic has one writer; a dead letter was
/// written by the service that refused the record.
fn service_of(step: &Step) -> String {
    let record = &step.record;
    if let Some(service) = record.header(dead_letter::SERVICE) {
        return service.to_owned();
    }
    let writers = [
        ("page.requested", "gateway"),
        ("callback.reported", "gateway"),
        ("user.resolved", "user-svc"),
        ("sessions", "user-svc"),
        ("history.fetched", "history-svc"),
        ("ads.selected", "ads-svc"),
        ("page.completed", "aggregator"),
    ];
    writers
        .iter()
        .find(|(topic, _)| record.topic.ends_with(topic))
        .map_or("unknown", |(_, service)| service)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use storefront_schemas::{RequestId, SessionId};

    use super::*;
    use crate::{
        decoded::{Decoded, DecodedRecord},
        trace::Subject,
    };

    fn step(topic: &str, at: i64, headers: Value, value: Decoded) -> Step {
        Step {
            record: DecodedRecord {
                topic: format!("p.{topic}"),
                partition: 0,
                offset: at,
                timestamp_ms: Some(at),
                key: None,
                event_type: None,
                request_id: None,
                trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
                headers: headers.as_object().cloned().unwrap_or_default(),
                value,
            },
            since_start_ms: None,
            hop_ms: None,
        }
    }

    #[test]
    fn a_partial_page_names_its_missing_part_its_deadline_and_who_refused_what() {
        let context = json!({"requested_at_ms": 1_000, "deadline_ms": 1_250});
        let trace = Trace {
            subject: Subject::Request {
                request_id: RequestId::new(),
                session_id: SessionId::new(),
            },
            partition: 0,
            partitions_read: vec![],
            lookup: String::new(),
            since_ms: 0,
            until_ms: 0,
            steps: vec![
                step(
                    "page.requested",
                    1_000,
                    json!({}),
                    Decoded::Value(
                        json!({"context": context, "login": {"username": "demo", "sealed_password": [1, 2]}}),
                    ),
                ),
                step(
                    "dead-letters",
                    1_010,
                    json!({"dlq-service": "ads-svc", "dlq-reason": "no such product", "x-api-token": "t0p"}),
                    Decoded::DeadLetter(json!({"context": context})),
                ),
                step(
                    "page.completed",
                    1_251,
                    json!({}),
                    Decoded::Value(
                        json!({"context": context, "status": "partial", "missing": ["ads"]}),
                    ),
                ),
            ],
        };
        let drawn = timeline(&trace, Some("http://jaeger/trace/{trace_id}"), 250);
        assert_eq!(drawn["status"], "partial");
        assert_eq!(drawn["missing"], json!(["ads"]));
        assert_eq!(
            (
                drawn["requested_at_ms"].as_i64(),
                drawn["deadline_ms"].as_i64()
            ),
            (Some(1_000), Some(1_250))
        );
        assert_eq!(
            drawn["trace_url"],
            "http://jaeger/trace/4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let services: Vec<&str> = drawn["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["service"].as_str().unwrap())
            .collect();
        assert_eq!(services, ["gateway", "ads-svc", "aggregator"]);
        assert_eq!(
            drawn["steps"][0]["value"]["login"]["sealed_password"],
            REDACTED
        );
        assert_eq!(drawn["steps"][1]["headers"]["x-api-token"], REDACTED);
        assert_eq!(
            drawn["steps"][1]["headers"]["dlq-reason"],
            "no such product"
        );
    }
}

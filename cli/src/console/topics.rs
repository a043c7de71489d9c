//! The namespace's topics, and the latest records of one, decoded and
//! redacted: what a topic browser shows, for a record no request ID leads to.

use std::{
    collections::{HashMap, VecDeque},
    time::Duration,
};

use axum::{
    extract::{rejection::QueryRejection, Path, Query, State},
    Json,
};
use serde::Deserialize;
use serde_json::{json, Value};
use storefront_runtime::{
    snapshot::{PartitionReader, Since},
    Inbound,
};

use super::{blocking, error::bad_query, redact::redact, time_range, ApiError, AppState};
use crate::decoded::Decoder;

const CLIENT_ID: &str = "storefront-console";
const READ_DEADLINE: Duration = Duration::from_secs(60);
const MAX_RECORDS: usize = 500;

/// `GET /api/topics`: each topic of the namespace, its partitions and how
/// many records it holds now.
pub(super) async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let kafka = state.kafka.clone();
    let topics = blocking(move || {
        let reader = PartitionReader::new(&kafka, CLIENT_ID)?;
        let names = kafka.topics();
        let mut topics = Vec::new();
        for topic in names.all() {
            let partitions = reader.partitions_of(topic)?;
            let positions = reader.positions(&partitions, None)?;
            topics.push(json!({
                "name": topic.strip_prefix(kafka.topic_prefix.as_str()).unwrap_or(topic),
                "topic": topic,
                "partitions": partitions.len(),
                "records": positions.iter().map(|p| p.high - p.low).sum::<i64>(),
            }));
        }
        Ok(topics)
    })
    .await?;
    Ok(Json(json!({ "topics": topics })))
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RecordsQuery {
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/topics/{name}/records`: the latest records of one topic (its
/// name without the namespace's prefix) from `since` (default 15 minutes
/// ago) to `until`, at most `limit` (50, at most 500), oldest first.
pub(super) async fn records(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<RecordsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let query = query.map_err(bad_query)?.0;
    let topics = state.kafka.topics();
    let topic = format!("{}{name}", state.kafka.topic_prefix);
    if !topics.all().contains(&topic.as_str()) {
        return Err(ApiError::invalid(
            "unknown_topic",
            format!(
                "{name:?} is not a topic of the storefront: one of {}",
                topics
                    .all()
                    .iter()
                    .map(|t| t
                        .strip_prefix(state.kafka.topic_prefix.as_str())
                        .unwrap_or(t))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let (since, until) = time_range(
        Some(
            query
                .since
                .filter(|t| !t.trim().is_empty())
                .unwrap_or_else(|| "15m".into()),
        ),
        query.until,
    )?;
    let since = since.expect("a default");
    let limit = query.limit.unwrap_or(50).clamp(1, MAX_RECORDS);
    let kafka = state.kafka.clone();
    let records = blocking(move || {
        let reader = PartitionReader::new(&kafka, CLIENT_ID)?;
        let partitions = reader.partitions_of(&topic)?;
        // The latest `limit` of each partition hold the latest `limit` of all.
        let mut latest: HashMap<i32, VecDeque<Inbound>> = HashMap::new();
        reader.read(
            &partitions,
            Since::Timestamp(since),
            until,
            READ_DEADLINE,
            |record| {
                let kept = latest.entry(record.partition).or_default();
                if kept.len() == limit {
                    kept.pop_front();
                }
                kept.push_back(record);
            },
        )?;
        let mut records: Vec<Inbound> = latest.into_values().flatten().collect();
        records.sort_by_key(|r| (r.timestamp_ms, r.partition, r.offset));
        let skip = records.len().saturating_sub(limit);
        let decoder = Decoder::new();
        Ok(records[skip..]
            .iter()
            .map(|r| decoder.decode(r))
            .collect::<Vec<_>>())
    })
    .await?;
    let records: Vec<Value> = records
        .iter()
        .map(|record| {
            let mut value = serde_json::to_value(record).expect("a record serializes");
            redact(&mut value);
            value
        })
        .collect();
    Ok(Json(
        json!({ "topic": name, "since_ms": since, "until_ms": until, "records": records }),
    ))
}

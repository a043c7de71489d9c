//! The dead letters: how many, for which reasons, and re-publishing chosen
//! ones once what refused them is fixed (`storefront dlq`'s, behind a
//! confirmation).

use std::collections::BTreeMap;

use axum::{
    extract::{rejection::JsonRejection, State},
    Json,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use storefront_runtime::dead_letter::DeadLetter;

use super::{error::bad_body, ApiError, AppState};
use crate::dlq::{self, Selection};

/// The latest letters listed one by one; the counts cover all.
const LISTED: usize = 500;

#[derive(Debug, Serialize)]
struct Letter {
    position: String,
    timestamp_ms: Option<i64>,
    service: String,
    source_topic: String,
    source_partition: i32,
    source_offset: i64,
    reason: String,
    request_id: Option<String>,
}

impl Letter {
    fn of(letter: &DeadLetter) -> Self {
        Self {
            position: format!("{}:{}", letter.partition, letter.offset),
            timestamp_ms: letter.timestamp_ms,
            service: letter.service.clone(),
            source_topic: letter.source_topic.clone(),
            source_partition: letter.source_partition,
            source_offset: letter.source_offset,
            reason: letter.reason.clone(),
            request_id: letter
                .headers
                .iter()
                .find(|(name, _)| name == storefront_runtime::headers::REQUEST_ID)
                .map(|(_, value)| String::from_utf8_lossy(value).into_owned()),
        }
    }
}

/// `GET /api/dead-letters`.
pub(super) async fn show(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let letters = dlq::list(&state.kafka, &Selection::default())
        .await
        .map_err(|e| ApiError::Kafka(format!("{e:#}")))?;
    let mut by_reason: BTreeMap<(&str, &str, &str), usize> = BTreeMap::new();
    for letter in &letters {
        *by_reason
            .entry((&letter.service, &letter.source_topic, &letter.reason))
            .or_default() += 1;
    }
    let by_reason: Vec<Value> = by_reason
        .into_iter()
        .map(|((service, source_topic, reason), count)| {
            json!({"service": service, "source_topic": source_topic, "reason": reason, "count": count})
        })
        .collect();
    let mut latest: Vec<&DeadLetter> = letters.iter().collect();
    latest.sort_by_key(|l| std::cmp::Reverse((l.timestamp_ms, l.offset)));
    let listed: Vec<Letter> = latest.into_iter().take(LISTED).map(Letter::of).collect();
    Ok(Json(json!({
        "total": letters.len(),
        "by_reason": by_reason,
        "letters": listed,
    })))
}

#[derive(Debug, Deserialize)]
pub(super) struct Republish {
    positions: Vec<String>,
    #[serde(default)]
    confirm: bool,
}

/// `POST /api/dead-letters/republish`: the chosen letters back to their
/// source; nothing is written unless every one is found and `confirm` is true.
pub(super) async fn republish(
    State(state): State<AppState>,
    body: Result<Json<Republish>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body.map_err(bad_body)?;
    if body.positions.is_empty() {
        return Err(ApiError::invalid(
            "no_positions",
            "choose the dead letters to re-publish (positions such as \"0:12\")",
        ));
    }
    let positions = body
        .positions
        .iter()
        .map(|text| {
            dlq::parse_position(text)
                .map_err(|e| ApiError::invalid("bad_position", format!("{text:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !body.confirm {
        return Err(ApiError::invalid(
            "confirm",
            format!(
                "re-publishing writes {} records back to their source topics: send \"confirm\": true",
                positions.len()
            ),
        ));
    }
    let selection = Selection {
        positions: positions.clone(),
        ..Default::default()
    };
    let letters = dlq::list(&state.kafka, &selection)
        .await
        .map_err(|e| ApiError::Kafka(format!("{e:#}")))?;
    let unknown: Vec<String> = positions
        .iter()
        .filter(|(p, o)| !letters.iter().any(|l| l.partition == *p && l.offset == *o))
        .map(|(p, o)| format!("{p}:{o}"))
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no dead letter at {}; nothing was re-published",
            unknown.join(", ")
        )));
    }
    let republished = dlq::republish(&state.kafka, &letters)
        .await
        .map_err(|e| ApiError::Kafka(format!("{e:#}")))?;
    tracing::info!(republished, positions = ?body.positions, "console re-published dead letters");
    Ok(Json(
        json!({ "republished": republished, "positions": body.positions }),
    ))
}

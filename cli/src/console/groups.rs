//! Consumer groups and their lag: every group of the namespace that has
//! committed offsets on its topics, per partition of each topic it
//! committed on, against the partition's end. A partition it has not
//! committed on yet counts all it holds as lag. On a transactional topic
//! an idle partition shows a lag of 1: its last offset is the commit
//! marker, which no consumer reads.

use std::time::Duration;

use axum::{extract::State, Json};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    Offset, TopicPartitionList,
};
use serde::Serialize;
use storefront_runtime::{snapshot::PartitionReader, KafkaSettings};

use super::{blocking, ApiError, AppState};

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Serialize)]
pub(super) struct PartitionLag {
    topic: String,
    partition: i32,
    /// None: nothing committed on this partition yet.
    committed: Option<i64>,
    end: i64,
    lag: i64,
}

#[derive(Debug, Serialize)]
pub(super) struct GroupLag {
    group: String,
    /// As the broker says: `Stable`, `Empty`, `PreparingRebalance`...
    state: String,
    members: usize,
    lag: i64,
    partitions: Vec<PartitionLag>,
}

/// `GET /api/groups`.
pub(super) async fn show(
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let kafka = state.kafka.clone();
    let groups = blocking(move || lag(&kafka)).await?;
    Ok(Json(serde_json::json!({ "groups": groups })))
}

fn lag(kafka: &KafkaSettings) -> anyhow::Result<Vec<GroupLag>> {
    let client_id = "storefront-console";
    let reader = PartitionReader::new(kafka, client_id)?;
    let topics = kafka.topics();
    let mut partitions = Vec::new();
    for topic in topics.all() {
        partitions.extend(reader.partitions_of(topic)?);
    }
    let ends = reader.positions(&partitions, None)?;
    let mut wanted = TopicPartitionList::new();
    for tp in &partitions {
        wanted.add_partition(&tp.topic, tp.partition);
    }

    let lister: BaseConsumer = kafka.consumer_config(client_id).create()?;
    let list = lister.fetch_group_list(None, TIMEOUT)?;
    let mut groups = Vec::new();
    for group in list.groups() {
        let name = group.name();
        // Another namespace's, or a reader's that never commits.
        if !name.starts_with(&kafka.topic_prefix) || name.ends_with("-snapshot") {
            continue;
        }
        let asker: BaseConsumer = kafka
            .consumer_config(client_id)
            .set("group.id", name)
            .set("enable.auto.commit", "false")
            .create()?;
        let committed = asker.committed_offsets(wanted.clone(), TIMEOUT)?;
        let elements = committed.elements();
        let committed: Vec<(&str, i32, i64)> = elements
            .iter()
            .filter_map(|element| match element.offset() {
                Offset::Offset(offset) => Some((element.topic(), element.partition(), offset)),
                _ => None,
            })
            .collect();
        let mut lags: Vec<PartitionLag> = ends
            .iter()
            .filter(|end| {
                committed
                    .iter()
                    .any(|(topic, ..)| *topic == end.partition.topic)
            })
            .map(|end| {
                let tp = &end.partition;
                let offset = committed
                    .iter()
                    .find(|(topic, partition, _)| *topic == tp.topic && *partition == tp.partition)
                    .map(|(.., offset)| *offset);
                PartitionLag {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    committed: offset,
                    end: end.high,
                    lag: (end.high - offset.unwrap_or(end.low)).max(0),
                }
            })
            .collect();
        if lags.is_empty() {
            continue;
        }
        lags.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        groups.push(GroupLag {
            group: name.to_owned(),
            state: group.state().to_owned(),
            members: group.members().len(),
            lag: lags.iter().map(|p| p.lag).sum(),
            partitions: lags,
        });
    }
    groups.sort_by(|a, b| a.group.cmp(&b.group));
    Ok(groups)
}

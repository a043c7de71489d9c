//! `storefront tail`: follow topics live, decoded, keeping only the records
//! whose key, headers and fields match.

use std::ops::ControlFlow;

use anyhow::bail;
use storefront_runtime::{
    snapshot::{PartitionReader, Since},
    KafkaSettings, Topics,
};

use crate::{
    decoded::{DecodedRecord, Decoder},
    when::{format_time, parse_time},
};

/// Which records to show, and how.
#[derive(Debug, Clone, clap::Args)]
pub struct TailArgs {
    /// Topics to follow, without the prefix (page.requested, user.resolved, ...); `all` for every topic.
    #[arg(required = true)]
    pub topics: Vec<String>,
    /// Only records with this key (a session ID on the request path).
    #[arg(long)]
    pub key: Option<String>,
    /// Only records with this header value, as `name=value` (repeatable; all must match).
    #[arg(long = "header", value_parser = parse_pair)]
    pub headers: Vec<(String, String)>,
    /// Only records whose decoded value has this field value, as
    /// `path=value` with a dotted path, e.g. `status=Partial` or
    /// `context.session_id=...` (repeatable; all must match).
    #[arg(long = "field", value_parser = parse_pair)]
    pub fields: Vec<(String, String)>,
    /// Start from this time instead of from now (2026-12-01T10:00:00Z, 15m, Unix ms).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<i64>,
    /// Stop after this many matching records.
    #[arg(long)]
    pub max: Option<u64>,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected name=value"))?;
    Ok((name.to_owned(), value.to_owned()))
}

impl TailArgs {
    /// Whether `record` passes every filter.
    pub fn matches(&self, record: &DecodedRecord) -> bool {
        self.key
            .as_ref()
            .is_none_or(|key| record.key.as_ref() == Some(key))
            && self
                .headers
                .iter()
                .all(|(name, value)| record.header(name) == Some(value.as_str()))
            && self
                .fields
                .iter()
                .all(|(path, value)| record.field(path).as_ref() == Some(value))
    }
}

/// Follows the topics until `max` records matched (or forever), calling
/// `print` with each one that does. Says on stderr what it follows once
/// it is in place, so nothing sent after that line is missed. Blocking.
pub fn tail(
    kafka: &KafkaSettings,
    args: &TailArgs,
    mut print: impl FnMut(&DecodedRecord),
) -> anyhow::Result<()> {
    let topics = kafka.topics();
    let names: Vec<String> = if args.topics.iter().any(|t| t == "all") {
        topics.all().into_iter().map(str::to_owned).collect()
    } else {
        let known = topics.all();
        let mut names = Vec::new();
        for topic in &args.topics {
            let name = format!("{}{topic}", kafka.topic_prefix);
            if !known.contains(&name.as_str()) {
                bail!(
                    "no topic {topic:?}; the topics are: {}",
                    Topics::with_prefix("").all().join(", ")
                );
            }
            names.push(name);
        }
        names
    };
    let reader = PartitionReader::follower(kafka, "storefront-tail")?;
    let mut partitions = Vec::new();
    for name in &names {
        partitions.extend(reader.partitions_of(name)?);
    }
    let decoder = Decoder::new();
    let mut matched = 0;
    let start = args.since.map(Since::Timestamp);
    reader.follow(
        &partitions,
        start,
        || {
            eprintln!(
                "Following {} partitions of {} from {} (Ctrl-C stops).",
                partitions.len(),
                names.join(", "),
                args.since.map_or("now".to_owned(), format_time)
            )
        },
        |record| {
            let Some(record) = record else {
                return ControlFlow::Continue(());
            };
            let record = decoder.decode(&record);
            if args.matches(&record) {
                print(&record);
                matched += 1;
                if args.max.is_some_and(|max| matched >= max) {
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        },
    )?;
    Ok(())
}

/// One line for a terminal: time, topic, position, event, key, value.
pub fn render_line(record: &DecodedRecord) -> String {
    format!(
        "{}  {}  {}:{}  {}  key={}  {}",
        record.timestamp_ms.map_or("-".to_owned(), format_time),
        record.topic,
        record.partition,
        record.offset,
        record.event_type.as_deref().unwrap_or("-"),
        record.key.as_deref().unwrap_or("-"),
        record.value.display()
    )
}

//! `storefront trace`: one request or one session followed across every
//! topic, in time order, decoded. The request-path topics are co-partitioned
//! by session ID, so the session's partition number is the only one read on
//! each of them; page.completed is read at the reply partitions the
//! requests named, and the one-partition dead-letter topic whole.

use std::{collections::BTreeSet, time::Duration};

use anyhow::{bail, Context};
use serde::Serialize;
use storefront_runtime::{
    locator::{Locator, CLOCK_SKEW_MS},
    snapshot::{PartitionReader, Since, TopicPartition},
    KafkaSettings,
};
use storefront_schemas::{now_ms, PageRequested, RequestId, SessionId};

use crate::{
    decoded::{DecodedRecord, Decoder},
    when::format_time,
};

/// How long after an ID's time its first `page.requested` is looked for.
const FIND_WINDOW_MS: i64 = 60_000;
/// A request's trace ends this long after it began unless `--until` says
/// otherwise: long enough for a webhook to be given up (15 minutes by default).
const REQUEST_SPAN_MS: i64 = 20 * 60_000;
const READ_DEADLINE: Duration = Duration::from_secs(120);

/// No record of the topics is the ID's: it names no request or session
/// there (or is older than where the look began).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotFound(String);

/// What was traced.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Subject {
    Request {
        request_id: RequestId,
        session_id: SessionId,
    },
    Session {
        session_id: SessionId,
    },
}

impl Subject {
    pub fn session_id(&self) -> SessionId {
        match self {
            Self::Request { session_id, .. } | Self::Session { session_id } => *session_id,
        }
    }

    /// Whether `record` belongs to this subject.
    fn owns(&self, record: &DecodedRecord) -> bool {
        match self {
            Self::Request { request_id, .. } => record.request_id == Some(*request_id),
            Self::Session { session_id } => {
                record.key.as_deref() == Some(session_id.to_string().as_str())
            }
        }
    }
}

/// One record of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    #[serde(flatten)]
    pub record: DecodedRecord,
    /// Milliseconds since the first record of the same request.
    pub since_start_ms: Option<i64>,
    /// Milliseconds since the previous record of the same request: the hop's latency.
    pub hop_ms: Option<i64>,
}

/// A timeline, and what was read to make it.
#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    pub subject: Subject,
    /// The session's partition number on every co-partitioned topic.
    pub partition: i32,
    pub partitions_read: Vec<TopicPartition>,
    /// How the ID was found, in words.
    pub lookup: String,
    pub since_ms: i64,
    pub until_ms: i64,
    pub steps: Vec<Step>,
}

/// Traces `id`, a request or a session ID, between `since` and `until`
/// (defaults: from the ID's own time; a request for 20 minutes, a session
/// until now). Blocking.
pub fn trace(
    kafka: &KafkaSettings,
    id: &str,
    since: Option<i64>,
    until: Option<i64>,
) -> anyhow::Result<Trace> {
    // Either kind: which one it is, the topics say.
    let as_session = SessionId::parse(id).context("expected a request or session ID")?;
    let as_request = RequestId::parse(id)?;
    let id = as_session.to_string();
    let created_ms = as_session.created_at_ms();
    let Some(origin_ms) = created_ms.map(|ms| ms - CLOCK_SKEW_MS).or(since) else {
        bail!("{id} carries no time (not a UUIDv7): say where to look with --since");
    };
    let topics = kafka.topics();
    let reader = PartitionReader::new(kafka, "storefront-trace")?;
    let all_requested = reader.partitions_of(&topics.page_requested)?;
    if all_requested.is_empty() {
        bail!("there is no topic {}", topics.page_requested);
    }
    let locator = Locator::discover(&reader, topics.clone())?;
    let partitions = locator.partitions();

    // 1. What the ID is: a session's first request is keyed by it, in the
    //    partition its hash names; else a request carries it in a header,
    //    in any partition.
    let find_until = origin_ms + FIND_WINDOW_MS + CLOCK_SKEW_MS;
    let own = TopicPartition::new(&topics.page_requested, locator.partition_of(as_session));
    let mut subject = None;
    reader.read(
        std::slice::from_ref(&own),
        Since::Timestamp(origin_ms),
        Some(find_until),
        READ_DEADLINE,
        |r| {
            if subject.is_none() && r.key_str() == Some(id.as_str()) {
                subject = Some(Subject::Session {
                    session_id: as_session,
                });
            }
        },
    )?;
    let mut lookup = format!(
        "{id} is a session: its first page.requested is in partition {} (its key's partition)",
        own.partition
    );
    if subject.is_none() {
        reader.read(
            &all_requested,
            Since::Timestamp(origin_ms),
            Some(find_until),
            READ_DEADLINE,
            |r| {
                if subject.is_none() && r.headers.request_id == Some(as_request) {
                    if let Some(session_id) = r.key_str().and_then(|k| SessionId::parse(k).ok()) {
                        subject = Some(Subject::Request {
                            request_id: as_request,
                            session_id,
                        });
                    }
                }
            },
        )?;
        lookup = format!(
            "{id} is a request: found by its request-id header in the {partitions} partitions of {} between {} and {}",
            topics.page_requested,
            format_time(origin_ms),
            format_time(find_until)
        );
    }
    let Some(subject) = subject else {
        return Err(NotFound(format!(
            "no page.requested between {} and {} is keyed by {id} (a session) or carries it as request-id (a request); check --topic-prefix, or give --since if the ID is older than its first request",
            format_time(origin_ms),
            format_time(find_until)
        ))
        .into());
    };

    // 2. Every record of the subject on the partitions that can hold it.
    let since_ms = since.unwrap_or(origin_ms);
    let until_ms = until.unwrap_or_else(|| match (&subject, created_ms) {
        (Subject::Request { .. }, Some(created)) => created + REQUEST_SPAN_MS,
        _ => now_ms(),
    });
    let partition = locator.partition_of(subject.session_id());
    let decoder = Decoder::new();
    let mut records = Vec::new();
    let mut reply_partitions = BTreeSet::new();
    let requested = TopicPartition::new(&topics.page_requested, partition);
    reader.read(
        std::slice::from_ref(&requested),
        Since::Timestamp(since_ms),
        Some(until_ms),
        READ_DEADLINE,
        |r| {
            let record = decoder.decode(&r);
            if subject.owns(&record) {
                if let Ok(request) = r.decode::<PageRequested>() {
                    reply_partitions.insert(request.context.reply_partition);
                }
                records.push(record);
            }
        },
    )?;
    let mut rest = locator.session_partitions(
        subject.session_id(),
        [
            &topics.user_resolved,
            &topics.history_fetched,
            &topics.ads_selected,
            &topics.callback_reported,
            &topics.sessions,
        ],
    );
    rest.extend(locator.replies(reply_partitions));
    rest.push(TopicPartition::new(&topics.dead_letters, 0));
    reader.read(
        &rest,
        Since::Timestamp(since_ms),
        Some(until_ms),
        READ_DEADLINE,
        |r| {
            let record = decoder.decode(&r);
            if subject.owns(&record) {
                records.push(record);
            }
        },
    )?;
    let mut partitions_read = vec![requested];
    partitions_read.extend(rest);
    Ok(Trace {
        steps: timeline(records),
        subject,
        partition,
        partitions_read,
        lookup,
        since_ms,
        until_ms,
    })
}

/// Puts `records` in time order and measures each hop within its request.
fn timeline(mut records: Vec<DecodedRecord>) -> Vec<Step> {
    records.sort_by_key(|r| (r.timestamp_ms, topic_rank(&r.topic), r.offset));
    let mut last_of_request: std::collections::HashMap<RequestId, (i64, i64)> = Default::default();
    records
        .into_iter()
        .map(|record| {
            let (mut since_start_ms, mut hop_ms) = (None, None);
            if let (Some(request), Some(at)) = (record.request_id, record.timestamp_ms) {
                let (start, previous) = match last_of_request.get(&request) {
                    Some(&(start, previous)) => (start, Some(previous)),
                    None => (at, None),
                };
                since_start_ms = Some(at - start);
                hop_ms = previous.map(|previous| at - previous);
                last_of_request.insert(request, (start, at));
            }
            Step {
                record,
                since_start_ms,
                hop_ms,
            }
        })
        .collect()
}

/// The flow's order, for records stamped in the same millisecond.
fn topic_rank(topic: &str) -> usize {
    const ORDER: [&str; 7] = [
        "page.requested",
        "user.resolved",
        "history.fetched",
        "ads.selected",
        "sessions",
        "page.completed",
        "callback.reported",
    ];
    ORDER
        .iter()
        .position(|name| topic.ends_with(name))
        .unwrap_or(ORDER.len())
}

/// The trace as a table for a terminal: a header saying what was read,
/// then one line per record followed by its decoded value.
pub fn render(trace: &Trace) -> String {
    let mut out = String::new();
    let subject = match &trace.subject {
        Subject::Request {
            request_id,
            session_id,
        } => {
            format!("request {request_id} (session {session_id})")
        }
        Subject::Session { session_id } => format!("session {session_id}"),
    };
    out.push_str(&format!("Trace of {subject}\n{}.\n", trace.lookup));
    let names = |wanted: &dyn Fn(&TopicPartition) -> bool| -> Vec<String> {
        trace
            .partitions_read
            .iter()
            .filter(|tp| wanted(tp))
            .map(|tp| tp.topic.clone())
            .collect()
    };
    let is = |tp: &TopicPartition, suffix: &str| tp.topic.ends_with(suffix);
    let co_partitioned = names(&|tp| !is(tp, "page.completed") && !is(tp, "dead-letters"));
    let replies: Vec<&TopicPartition> = trace
        .partitions_read
        .iter()
        .filter(|tp| is(tp, "page.completed"))
        .collect();
    let dead_letters = names(&|tp| is(tp, "dead-letters"));
    out.push_str(&format!(
        "Read only partition {} of {} (the topics are co-partitioned by session ID)",
        trace.partition,
        co_partitioned.join(", ")
    ));
    if let Some(first) = replies.first() {
        let numbers: Vec<String> = replies.iter().map(|tp| tp.partition.to_string()).collect();
        out.push_str(&format!(
            ", partition {} of {} (the reply partitions the requests named)",
            numbers.join(", "),
            first.topic
        ));
    }
    out.push_str(&format!(
        " and {}, from {} to {}.\n\n",
        dead_letters.join(", "),
        format_time(trace.since_ms),
        format_time(trace.until_ms)
    ));
    if trace.steps.is_empty() {
        out.push_str("No records in that time range.\n");
        return out;
    }
    out.push_str(&format!(
        "{:<24}  {:>7}  {:>6}  {:<28}  {:<10}  {:<18}  {}\n",
        "TIME", "+MS", "HOP", "TOPIC", "P:OFFSET", "EVENT", "REQUEST"
    ));
    for step in &trace.steps {
        let r = &step.record;
        let ms = |v: Option<i64>| v.map_or("-".to_owned(), |v| v.to_string());
        out.push_str(&format!(
            "{:<24}  {:>7}  {:>6}  {:<28}  {:<10}  {:<18}  {}\n",
            r.timestamp_ms.map_or("-".to_owned(), format_time),
            ms(step.since_start_ms),
            ms(step.hop_ms),
            r.topic,
            format!("{}:{}", r.partition, r.offset),
            r.event_type.as_deref().unwrap_or("-"),
            r.request_id.map_or("-".to_owned(), |id| id.to_string()),
        ));
        out.push_str(&format!("    {}\n", r.value.display()));
    }
    out
}

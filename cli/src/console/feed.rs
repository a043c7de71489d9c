//! The live feed: one follower of `page.completed` (every partition, from
//! 15 minutes back) keeps the recent pages as summaries, sends each new one
//! to the open event streams, and counts pages and their latency per 10 s
//! for the charts.

use std::{
    collections::{BTreeMap, VecDeque},
    convert::Infallible,
    ops::ControlFlow,
    sync::{Arc, Mutex},
};

use axum::{
    extract::{rejection::QueryRejection, Query, State},
    response::sse::{Event, KeepAlive, Sse},
    Json,
};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use storefront_runtime::{
    snapshot::{PartitionReader, Since},
    Inbound, KafkaSettings, Readiness,
};
use storefront_schemas::{now_ms, PageCompleted, PageStatus, RequestId, SessionId, UserProfile};
use tokio::{sync::broadcast, task::JoinSet};
use tokio_util::sync::CancellationToken;

use super::{error::bad_query, time_range, ApiError, AppState};

/// How far back the feed reads when it starts, and how long it keeps counts.
const WINDOW_MS: i64 = 15 * 60_000;
/// Summaries kept for the list, newest last.
const KEPT: usize = 20_000;
/// The charts' resolution.
pub(super) const BUCKET_MS: i64 = 10_000;
/// Latencies kept per bucket for its percentiles.
const LATENCIES_PER_BUCKET: usize = 10_000;

/// How a page ended, as the console names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SummaryStatus {
    Complete,
    Partial,
    Rejected,
    /// The user was not resolved by the deadline (`unavailable` on the topic).
    TimedOut,
}

impl SummaryStatus {
    const ALL: [Self; 4] = [
        Self::Complete,
        Self::Partial,
        Self::Rejected,
        Self::TimedOut,
    ];

    fn of(status: PageStatus) -> Self {
        match status {
            PageStatus::Complete => Self::Complete,
            PageStatus::Partial => Self::Partial,
            PageStatus::Rejected => Self::Rejected,
            PageStatus::Unavailable => Self::TimedOut,
        }
    }

    fn parse(text: &str) -> Result<Self, ApiError> {
        Self::ALL
            .into_iter()
            .find(|s| {
                serde_json::to_value(s)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .as_deref()
                    == Some(text)
            })
            .ok_or_else(|| {
                ApiError::invalid(
                    "bad_status",
                    format!("status {text:?}: expected complete, partial, rejected or timed_out"),
                )
            })
    }
}

/// Where a page is on `page.completed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct At {
    pub partition: i32,
    pub offset: i64,
}

/// One completed page, as the list shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub request_id: RequestId,
    pub session_id: SessionId,
    pub status: SummaryStatus,
    pub requested_at_ms: i64,
    /// When the page was written (its record's timestamp).
    pub completed_at_ms: i64,
    pub latency_ms: i64,
    pub deadline_ms: i64,
    pub missing: Vec<String>,
    pub rejection: Option<String>,
    pub user: Option<UserProfile>,
    pub position: At,
}

impl Summary {
    pub fn of(record: &Inbound, page: &PageCompleted) -> Self {
        let context = &page.context;
        let completed_at_ms = record.timestamp_ms.unwrap_or_else(now_ms);
        Self {
            request_id: context.request_id,
            session_id: context.session_id,
            status: SummaryStatus::of(page.status),
            requested_at_ms: context.requested_at_ms,
            completed_at_ms,
            latency_ms: (completed_at_ms - context.requested_at_ms).max(0),
            deadline_ms: context.deadline_ms,
            missing: page.missing.clone(),
            rejection: page.rejection.clone(),
            user: page.user.clone(),
            position: At {
                partition: record.partition,
                offset: record.offset,
            },
        }
    }
}

/// The filters of the list and the live stream, as the query string gives them.
#[derive(Debug, Default, Deserialize)]
pub(super) struct FilterQuery {
    status: Option<String>,
    user: Option<String>,
    session: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
}

/// The filters, checked.
#[derive(Debug, Default)]
pub(super) struct Filter {
    status: Option<SummaryStatus>,
    user: Option<String>,
    session: Option<SessionId>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    limit: usize,
}

impl Filter {
    fn parse(query: FilterQuery) -> Result<Self, ApiError> {
        let present = |v: Option<String>| v.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let (since_ms, until_ms) = time_range(query.since, query.until)?;
        let filter = Self {
            status: present(query.status)
                .filter(|s| s != "all")
                .map(|s| SummaryStatus::parse(&s))
                .transpose()?,
            user: present(query.user).map(|u| u.to_lowercase()),
            session: present(query.session)
                .map(|s| {
                    SessionId::parse(&s).map_err(|_| {
                        ApiError::invalid(
                            "bad_session",
                            format!("session {s:?} is not a session ID (a UUID)"),
                        )
                    })
                })
                .transpose()?,
            since_ms,
            until_ms,
            limit: query.limit.unwrap_or(200).clamp(1, 1000),
        };
        Ok(filter)
    }

    fn matches(&self, summary: &Summary) -> bool {
        self.status.is_none_or(|s| s == summary.status)
            && self.session.is_none_or(|s| s == summary.session_id)
            && self.since_ms.is_none_or(|t| summary.completed_at_ms >= t)
            && self.until_ms.is_none_or(|t| summary.completed_at_ms <= t)
            && self.user.as_ref().is_none_or(|wanted| {
                summary.user.as_ref().is_some_and(|u| {
                    u.customer_id.to_lowercase().contains(wanted)
                        || u.name.to_lowercase().contains(wanted)
                })
            })
    }
}

/// The pages of one 10 s bucket.
#[derive(Debug, Default)]
struct Bucket {
    counts: [u64; 4],
    latencies_ms: Vec<i64>,
}

#[derive(Debug, Default)]
struct Recent {
    summaries: VecDeque<Summary>,
    buckets: BTreeMap<i64, Bucket>,
    /// When the feed began reading: the list holds nothing older.
    since_ms: i64,
}

impl Recent {
    fn add(&mut self, summary: Summary) {
        let bucket = self
            .buckets
            .entry(summary.completed_at_ms.div_euclid(BUCKET_MS) * BUCKET_MS)
            .or_default();
        bucket.counts[summary.status as usize] += 1;
        if bucket.latencies_ms.len() < LATENCIES_PER_BUCKET {
            bucket.latencies_ms.push(summary.latency_ms);
        }
        let oldest_kept = now_ms() - WINDOW_MS - BUCKET_MS;
        while self
            .buckets
            .first_key_value()
            .is_some_and(|(at, _)| *at < oldest_kept)
        {
            self.buckets.pop_first();
        }
        if self.summaries.len() == KEPT {
            self.summaries.pop_front();
        }
        self.summaries.push_back(summary);
    }
}

/// The recent pages and the stream of new ones.
#[derive(Clone)]
pub(super) struct Feed {
    recent: Arc<Mutex<Recent>>,
    new_pages: broadcast::Sender<Summary>,
}

impl Feed {
    /// Follows `page.completed` on a thread of `tasks` until `shutdown`;
    /// marks `caught_up` on `readiness` once it has read the last 15 minutes.
    pub(super) fn start(
        kafka: &KafkaSettings,
        tasks: &mut JoinSet<storefront_runtime::Result<()>>,
        readiness: Readiness,
        caught_up: &'static str,
        shutdown: CancellationToken,
    ) -> Self {
        let since_ms = now_ms() - WINDOW_MS;
        let feed = Self::new(since_ms);
        let (kafka, follower) = (kafka.clone(), feed.clone());
        tasks.spawn_blocking(move || {
            let reader = PartitionReader::follower(&kafka, "storefront-console")?;
            let topic = kafka.topics().page_completed;
            let partitions = reader.partitions_of(&topic)?;
            if partitions.is_empty() {
                return Err(storefront_runtime::Error::TimedOut(
                    "the partitions of page.completed (is the topic prefix right?)",
                ));
            }
            reader.follow(
                &partitions,
                Some(Since::Timestamp(since_ms)),
                || {},
                |record| {
                    match record {
                        Some(record) => follower.take(&record),
                        // A tenth of a second without a record: caught up.
                        None => readiness.done(caught_up),
                    }
                    if shutdown.is_cancelled() {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                },
            )
        });
        feed
    }

    /// A feed holding nothing, whose window begins at `since_ms`.
    pub(super) fn new(since_ms: i64) -> Self {
        Self {
            recent: Arc::new(Mutex::new(Recent {
                since_ms,
                ..Default::default()
            })),
            new_pages: broadcast::channel(1024).0,
        }
    }

    fn take(&self, record: &Inbound) {
        let Ok(page) = record.decode::<PageCompleted>() else {
            return;
        };
        let summary = Summary::of(record, &page);
        self.recent
            .lock()
            .expect("not poisoned")
            .add(summary.clone());
        // Nobody listening is fine.
        let _ = self.new_pages.send(summary);
    }
}

/// `GET /api/requests`: the recent pages that match, newest first.
pub(super) async fn list(
    State(state): State<AppState>,
    query: Result<Query<FilterQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let filter = Filter::parse(query.map_err(bad_query)?.0)?;
    let recent = state.feed.recent.lock().expect("not poisoned");
    let requests: Vec<&Summary> = recent
        .summaries
        .iter()
        .rev()
        .filter(|s| filter.matches(s))
        .take(filter.limit)
        .collect();
    Ok(Json(serde_json::json!({
        "requests": requests,
        // The list covers pages from here on (the feed's window).
        "window_since_ms": recent.since_ms,
    })))
}

/// `GET /api/requests/live`: each new page that matches, as it completes.
pub(super) async fn live(
    State(state): State<AppState>,
    query: Result<Query<FilterQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let filter = Filter::parse(query.map_err(bad_query)?.0)?;
    let pages = state.feed.new_pages.subscribe();
    let stream = futures_util::stream::unfold((pages, filter), |(mut pages, filter)| async move {
        loop {
            match pages.recv().await {
                Ok(summary) if filter.matches(&summary) => {
                    let event = Event::default()
                        .event("request")
                        .id(summary.request_id.to_string())
                        .json_data(&summary)
                        .expect("a summary serializes");
                    return Some((Ok(event), (pages, filter)));
                }
                Ok(_) => continue,
                // A slow reader missed some: say so, and go on.
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let event = Event::default().comment(format!("missed {missed} pages"));
                    return Some((Ok(event), (pages, filter)));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[derive(Debug, Serialize)]
struct BucketStats {
    at_ms: i64,
    pages: u64,
    complete: u64,
    partial: u64,
    rejected: u64,
    timed_out: u64,
    p50_ms: Option<i64>,
    p95_ms: Option<i64>,
}

/// `GET /api/stats`: pages and their latency per 10 s over the last 15 minutes.
pub(super) async fn stats(State(state): State<AppState>) -> Json<serde_json::Value> {
    let now = now_ms();
    let first = (now - WINDOW_MS).div_euclid(BUCKET_MS) * BUCKET_MS;
    let recent = state.feed.recent.lock().expect("not poisoned");
    let buckets: Vec<BucketStats> = (first..=now)
        .step_by(BUCKET_MS as usize)
        .map(|at_ms| {
            let empty = Bucket::default();
            let bucket = recent.buckets.get(&at_ms).unwrap_or(&empty);
            let mut latencies = bucket.latencies_ms.clone();
            latencies.sort_unstable();
            let [complete, partial, rejected, timed_out] = bucket.counts;
            BucketStats {
                at_ms,
                pages: bucket.counts.iter().sum(),
                complete,
                partial,
                rejected,
                timed_out,
                p50_ms: percentile(&latencies, 0.50),
                p95_ms: percentile(&latencies, 0.95),
            }
        })
        .collect();
    Json(serde_json::json!({"bucket_ms": BUCKET_MS, "buckets": buckets}))
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[i64], q: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(status: SummaryStatus, name: &str, completed_at_ms: i64) -> Summary {
        Summary {
            request_id: RequestId::new(),
            session_id: SessionId::new(),
            status,
            requested_at_ms: completed_at_ms - 40,
            completed_at_ms,
            latency_ms: 40,
            deadline_ms: completed_at_ms + 200,
            missing: vec![],
            rejection: None,
            user: Some(UserProfile {
                customer_id: "c-7".into(),
                name: name.into(),
                city: "Lyon".into(),
            }),
            position: At {
                partition: 0,
                offset: 0,
            },
        }
    }

    fn filter(query: &str) -> Result<Filter, ApiError> {
        Filter::parse(serde_urlencoded_query(query))
    }

    fn serde_urlencoded_query(query: &str) -> FilterQuery {
        let uri: axum::http::Uri = format!("/?{query}").parse().unwrap();
        Query::<FilterQuery>::try_from_uri(&uri).unwrap().0
    }

    #[test]
    fn filters_pick_by_status_user_session_and_time() {
        let page = summary(SummaryStatus::Partial, "Ada Lovelace", 10_000);
        assert!(filter("").unwrap().matches(&page));
        assert!(filter("status=partial&user=ada").unwrap().matches(&page));
        assert!(filter("status=all&user=C-7").unwrap().matches(&page));
        assert!(!filter("status=complete").unwrap().matches(&page));
        assert!(!filter("user=grace").unwrap().matches(&page));
        assert!(filter(&format!("session={}", page.session_id))
            .unwrap()
            .matches(&page));
        assert!(!filter(&format!("session={}", SessionId::new()))
            .unwrap()
            .matches(&page));
        assert!(filter("since=9000&until=10000").unwrap().matches(&page));
        assert!(!filter("since=10001").unwrap().matches(&page));
    }

    #[test]
    fn malformed_filters_are_refused_with_what_is_wrong() {
        let code = |q| match filter(q) {
            Err(ApiError::Invalid { code, .. }) => code,
            other => panic!("{q}: {other:?}"),
        };
        assert_eq!(code("status=lost"), "bad_status");
        assert_eq!(code("session=nope"), "bad_session");
        assert_eq!(code("since=yesterday-ish"), "bad_time");
        assert_eq!(code("since=2000&until=1000"), "bad_time");
    }

    #[test]
    fn buckets_count_by_status_and_percentiles_are_nearest_rank() {
        let mut recent = Recent::default();
        let now = now_ms();
        recent.add(summary(SummaryStatus::Complete, "a", now));
        recent.add(summary(SummaryStatus::TimedOut, "b", now));
        let bucket = &recent.buckets[&(now.div_euclid(BUCKET_MS) * BUCKET_MS)];
        assert_eq!(bucket.counts, [1, 0, 0, 1]);
        assert_eq!(percentile(&[10, 20, 30, 40], 0.5), Some(20));
        assert_eq!(percentile(&[10, 20, 30, 40], 0.95), Some(40));
        assert_eq!(percentile(&[], 0.5), None);
    }
}

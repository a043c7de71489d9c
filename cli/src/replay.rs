//! `storefront replay`: re-drive the page requests recorded in a time range
//! through a copy of the workflow in an isolated topic namespace, then
//! compare each replayed page with the recorded one.
//!
//! The copy starts from the reference data as it stood when the range
//! began (customers, credentials, catalog, orders and sessions recorded
//! before `--from`, copied unchanged), so the requests of the range rebuild
//! the sessions they opened and closed. Its services (user-svc, history-svc,
//! ads-svc, the aggregator) run in this process with the namespace as topic
//! prefix; no gateway runs there, so no webhook is called, and callback
//! URLs are dropped from the replayed requests. Each request keeps its IDs,
//! its login and its time budget (deadline minus request time), and is sent
//! now, with the copy's page.completed as its return address.

use std::{
    collections::HashMap,
    ops::ControlFlow,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{bail, Context as _};
use opentelemetry::Context;
use serde::Serialize;
use storefront_runtime::{
    partitioner::partition_for_key,
    snapshot::{PartitionReader, Since},
    topics::ensure_topics,
    EventProducer, Inbound, KafkaSettings, Outbound, Telemetry, Topics,
};
use storefront_schemas::UnsealKey;
use storefront_schemas::{now_ms, PageCompleted, PageRequested, RequestId, SessionId};

use crate::{
    stack::{Service, StackConfig},
    when::{format_time, parse_time},
};

/// How long after its deadline a replayed request's page may still come.
const REPLY_GRACE: Duration = Duration::from_secs(10);

/// Requests replayed at most, unless told.
pub const DEFAULT_MAX_REQUESTS: usize = 1_000;
/// Requests sent per second, unless told.
pub const DEFAULT_RATE: f64 = 20.0;

/// What to replay, where, and how fast.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Replay the requests made from this time (2026-12-01T10:00:00Z, 15m for 15 minutes ago, Unix ms).
    #[arg(long, value_parser = parse_time)]
    pub from: i64,
    /// ... up to this time.
    #[arg(long, value_parser = parse_time, default_value = "now")]
    pub to: i64,
    /// The topic prefix of the isolated copy, e.g. `replay-1.`; it must
    /// differ from the source's and hold no records yet.
    #[arg(long)]
    pub into: String,
    /// Say what would be done, and do nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replay at most this many requests, the earliest first.
    #[arg(long, default_value_t = DEFAULT_MAX_REQUESTS)]
    pub max_requests: usize,
    /// Requests sent per second.
    #[arg(long, default_value_t = DEFAULT_RATE)]
    pub rate: f64,
    /// The report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What a replay will do, found before it does anything.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub source_prefix: String,
    pub into: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub partitions: i32,
    /// Requests recorded in the range, and how many of them will be replayed.
    pub found: usize,
    pub logins: usize,
    pub logouts: usize,
    /// Of the selected requests, how many have a recorded page to compare with.
    pub with_recorded_page: usize,
    /// Records recorded before `from` on each reference topic, to be copied.
    pub reference_records: Vec<(String, i64)>,
    pub rate: f64,
    #[serde(skip)]
    requests: Vec<PageRequested>,
    #[serde(skip)]
    recorded: HashMap<RequestId, PageCompleted>,
}

impl Plan {
    pub fn selected(&self) -> usize {
        self.requests.len()
    }
}

/// What a page looked like, less what changes with every run (times, return address).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub status: String,
    pub missing: Vec<String>,
    pub rejection: Option<String>,
    pub user: Option<String>,
    pub recent_purchases: Vec<String>,
    pub ads: Vec<String>,
}

impl Outcome {
    fn of(page: &PageCompleted) -> Self {
        let mut missing = page.missing.clone();
        missing.sort();
        Self {
            status: serde_json::to_value(page.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            missing,
            rejection: page.rejection.clone(),
            user: page
                .user
                .as_ref()
                .map(|u| format!("{} ({}, {})", u.customer_id, u.name, u.city)),
            recent_purchases: page
                .recent_purchases
                .iter()
                .map(|p| p.product_id.clone())
                .collect(),
            ads: page.ads.iter().map(|a| a.product_id.clone()).collect(),
        }
    }

    /// `field: recorded X, replayed Y` for each field that differs.
    fn differences(recorded: &Self, replayed: &Self) -> Vec<String> {
        let (a, b) = (
            serde_json::to_value(recorded).unwrap_or_default(),
            serde_json::to_value(replayed).unwrap_or_default(),
        );
        let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
            return vec![];
        };
        a.iter()
            .filter(|(field, value)| b.get(*field) != Some(value))
            .map(|(field, value)| {
                format!(
                    "{field}: recorded {value}, replayed {}",
                    b.get(field).cloned().unwrap_or_default()
                )
            })
            .collect()
    }
}

/// One replayed request.
#[derive(Debug, Clone, Serialize)]
pub struct Replayed {
    pub request_id: String,
    pub session_id: String,
    /// `login`, `logout` or `page`.
    pub kind: &'static str,
    pub recorded: Option<Outcome>,
    pub replayed: Option<Outcome>,
    pub differences: Vec<String>,
}

/// The outcome of a replay.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub plan: Plan,
    pub same: usize,
    pub different: usize,
    pub no_recorded_page: usize,
    pub no_replayed_page: usize,
    pub requests: Vec<Replayed>,
}

/// A replay refused for what was asked (a range, a rate, a namespace), not
/// for a failure of the broker.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(String);

macro_rules! refuse {
    ($($arg:tt)*) => {
        return Err(Refused(format!($($arg)*)).into())
    };
}

/// Reads the range and checks the target, writing nothing. Blocking.
pub fn plan(kafka: &KafkaSettings, args: &ReplayArgs) -> anyhow::Result<Plan> {
    if args.to < args.from {
        refuse!("--to is before --from");
    }
    if !(args.rate > 0.0 && args.rate <= 1_000.0) {
        refuse!("--rate must be above 0 and at most 1000 requests per second");
    }
    if args.max_requests == 0 {
        refuse!("--max-requests must be at least 1");
    }
    check_namespace(&kafka.topic_prefix, &args.into)?;
    let topics = kafka.topics();
    let reader = PartitionReader::new(kafka, "storefront-replay")?;
    let target = Topics::with_prefix(&args.into);
    if let Ok(partitions) = reader.partitions_of(&target.page_requested) {
        let used = reader
            .positions(&partitions, Some(Since::Beginning))?
            .iter()
            .any(|p| p.high > 0);
        if used {
            refuse!(
                "namespace {:?} already holds records ({} is not empty): replay into a fresh one",
                args.into,
                target.page_requested
            );
        }
    }

    let requested = reader.partitions_of(&topics.page_requested)?;
    if requested.is_empty() {
        bail!("there is no topic {}", topics.page_requested);
    }
    let mut requests = Vec::new();
    reader.read(
        &requested,
        Since::Timestamp(args.from),
        Some(args.to),
        Duration::from_secs(300),
        |record| {
            if let Ok(request) = record.decode::<PageRequested>() {
                requests.push(request);
            }
        },
    )?;
    requests.sort_by_key(|r| (r.context.requested_at_ms, r.context.request_id));
    let found = requests.len();
    requests.truncate(args.max_requests);

    // The recorded pages: answers come within their request's deadline,
    // and late ones a little after it.
    let latest_deadline = requests.iter().map(|r| r.context.deadline_ms).max();
    let mut recorded = HashMap::new();
    if let Some(deadline) = latest_deadline {
        let wanted: std::collections::HashSet<RequestId> =
            requests.iter().map(|r| r.context.request_id).collect();
        let completed = reader.partitions_of(&topics.page_completed)?;
        reader.read(
            &completed,
            Since::Timestamp(args.from),
            Some(deadline + 60_000),
            Duration::from_secs(300),
            |record| {
                if let Ok(page) = record.decode::<PageCompleted>() {
                    if wanted.contains(&page.context.request_id) {
                        recorded.insert(page.context.request_id, page);
                    }
                }
            },
        )?;
    }

    let mut reference_records = Vec::new();
    for topic in topics.reference() {
        let partitions = reader.partitions_of(topic)?;
        let before_range: i64 = reader
            .positions(&partitions, Some(Since::Timestamp(args.from)))?
            .iter()
            .map(|p| p.start - p.low)
            .sum();
        reference_records.push((topic.to_owned(), before_range));
    }
    Ok(Plan {
        source_prefix: kafka.topic_prefix.clone(),
        into: args.into.clone(),
        from_ms: args.from,
        to_ms: args.to,
        partitions: requested.len() as i32,
        found,
        logins: requests.iter().filter(|r| r.login.is_some()).count(),
        logouts: requests.iter().filter(|r| r.logout).count(),
        with_recorded_page: recorded.len(),
        reference_records,
        rate: args.rate,
        requests,
        recorded,
    })
}

/// Refuses a namespace that is the source's, or whose topic names would
/// be any of the source's.
fn check_namespace(source: &str, into: &str) -> anyhow::Result<()> {
    if into.is_empty() {
        refuse!("--into must name a namespace (a topic prefix such as replay-1.), never the production one");
    }
    if into.len() > 100
        || !into
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        refuse!("--into {into:?}: a namespace is at most 100 letters, digits, '.', '_' and '-'");
    }
    let (source_topics, target_topics) = (Topics::with_prefix(source), Topics::with_prefix(into));
    let source_names = source_topics.all();
    if into == source || target_topics.all().iter().any(|t| source_names.contains(t)) {
        refuse!(
            "--into {into:?} would write into the topics being replayed; choose another namespace"
        );
    }
    Ok(())
}

/// What a plan will do, in words.
pub fn describe(plan: &Plan) -> String {
    let mut out = format!(
        "Replay {} of the {} requests recorded from {} to {} (namespace {:?}) into namespace {:?}:\n",
        plan.selected(),
        plan.found,
        format_time(plan.from_ms),
        format_time(plan.to_ms),
        plan.source_prefix,
        plan.into
    );
    out.push_str(&format!(
        "  1. create its topics ({} partitions on the request path), copying the reference records stamped before {}:\n",
        plan.partitions,
        format_time(plan.from_ms)
    ));
    for (topic, count) in &plan.reference_records {
        out.push_str(&format!("       {count:>8}  {topic}\n"));
    }
    out.push_str(
        "  2. start user-svc, history-svc, ads-svc and the aggregator on it (no gateway: no webhook is called)\n",
    );
    out.push_str(&format!(
        "  3. send the {} requests ({} logins, {} logouts, {} page views) at {} per second, about {} s, each with its recorded IDs and time budget, a session's next request after its previous one answered\n",
        plan.selected(),
        plan.logins,
        plan.logouts,
        plan.selected() - plan.logins - plan.logouts,
        plan.rate,
        (plan.selected() as f64 / plan.rate).ceil()
    ));
    out.push_str(&format!(
        "  4. compare each replayed page with the recorded one ({} of them have one)\n",
        plan.with_recorded_page
    ));
    if plan.found > plan.selected() {
        out.push_str(&format!(
            "  {} later requests are left out (--max-requests)\n",
            plan.found - plan.selected()
        ));
    }
    out
}

/// Carries out `plan`; `unseal_key` opens the recorded logins' passwords
/// (the source's user-svc key). Leaves the namespace's topics in place.
pub async fn run(
    kafka: &KafkaSettings,
    plan: Plan,
    unseal_key: UnsealKey,
) -> anyhow::Result<Report> {
    let mut target = kafka.clone();
    target.topic_prefix = plan.into.clone();
    target.partitions = plan.partitions;
    ensure_topics(&target)
        .await
        .context("create the namespace's topics")?;
    copy_reference(kafka, &target, plan.from_ms).await?;

    let config = StackConfig {
        unseal_key,
        ..StackConfig::new(target.clone())
    };
    let services = [
        Service::User,
        Service::History,
        Service::Ads,
        Service::Aggregator,
    ];
    let stack = config
        .start_all(&services, Duration::from_secs(300))
        .await?;
    let outcome = drive(&target, &plan).await;
    stack.stop().await;
    let replayed = outcome?;

    let mut requests = Vec::new();
    let (mut same, mut different, mut no_recorded_page, mut no_replayed_page) = (0, 0, 0, 0);
    for request in &plan.requests {
        let id = &request.context.request_id;
        let recorded = plan.recorded.get(id).map(Outcome::of);
        let replayed = replayed.get(id).map(Outcome::of);
        let differences = match (&recorded, &replayed) {
            (Some(a), Some(b)) => Outcome::differences(a, b),
            _ => vec![],
        };
        match (&recorded, &replayed) {
            (None, _) => no_recorded_page += 1,
            (_, None) => no_replayed_page += 1,
            _ if differences.is_empty() => same += 1,
            _ => different += 1,
        }
        requests.push(Replayed {
            request_id: id.to_string(),
            session_id: request.context.session_id.to_string(),
            kind: if request.login.is_some() {
                "login"
            } else if request.logout {
                "logout"
            } else {
                "page"
            },
            recorded,
            replayed,
            differences,
        });
    }
    Ok(Report {
        plan,
        same,
        different,
        no_recorded_page,
        no_replayed_page,
        requests,
    })
}

/// Copies the source's reference records stamped before `before_ms`.
async fn copy_reference(
    source: &KafkaSettings,
    target: &KafkaSettings,
    before_ms: i64,
) -> anyhow::Result<()> {
    let producer = EventProducer::new(target, &Telemetry::local("storefront-replay"))?;
    let (from_topics, to_topics) = (source.topics(), target.topics());
    let renames: HashMap<String, String> = from_topics
        .reference()
        .iter()
        .zip(to_topics.reference())
        .map(|(from, to)| (from.to_string(), to.to_owned()))
        .collect();
    for topic in from_topics.reference() {
        let (source, topic) = (source.clone(), topic.to_owned());
        let records = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Inbound>> {
            let reader = PartitionReader::new(&source, "storefront-replay")?;
            let partitions = reader.partitions_of(&topic)?;
            let mut records = Vec::new();
            reader.read(
                &partitions,
                Since::Beginning,
                Some(before_ms - 1),
                Duration::from_secs(600),
                |record| records.push(record),
            )?;
            Ok(records)
        })
        .await??;
        producer
            .copy_all(&records, |topic| renames[topic].clone())
            .await?;
    }
    Ok(())
}

/// Sends the plan's requests into `target` at its rate, each session's in
/// turn, and collects the pages that come back until each has one or the
/// last deadline is well past.
async fn drive(
    target: &KafkaSettings,
    plan: &Plan,
) -> anyhow::Result<HashMap<RequestId, PageCompleted>> {
    let topics = target.topics();
    let (pages_tx, mut pages_rx) = tokio::sync::mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let collector = {
        let (target, stop, topic) = (target.clone(), stop.clone(), topics.page_completed.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let reader = PartitionReader::follower(&target, "storefront-replay")?;
            let partitions = reader.partitions_of(&topic)?;
            reader.follow(
                &partitions,
                Some(Since::Beginning),
                || {
                    let _ = ready_tx.send(());
                },
                |record| {
                    if let Some(page) = record.and_then(|r| r.decode::<PageCompleted>().ok()) {
                        let _ = pages_tx.send(page);
                    }
                    if stop.load(Ordering::Relaxed) {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                },
            )?;
            Ok(())
        })
    };
    let _ = ready_rx.await;

    let producer = EventProducer::new(target, &Telemetry::local("storefront-replay"))?;
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / plan.rate));
    let mut pages = HashMap::new();
    // Each session's request still waiting for its page, and until when.
    let mut outstanding: HashMap<SessionId, (RequestId, tokio::time::Instant)> = HashMap::new();
    let mut last_due = tokio::time::Instant::now();
    for recorded in &plan.requests {
        pace.tick().await;
        // A client sends its next request once the previous one answered
        // (a page view after its login): keep that order.
        if let Some((previous, due)) = outstanding.remove(&recorded.context.session_id) {
            while !pages.contains_key(&previous) {
                match tokio::time::timeout_at(due, pages_rx.recv()).await {
                    Ok(Some(page)) => {
                        pages.insert(page.context.request_id, page);
                    }
                    _ => break,
                }
            }
        }
        let budget_ms = recorded.context.budget_ms().max(0);
        let mut request = recorded.clone();
        let now = now_ms();
        request.context.requested_at_ms = now;
        request.context.deadline_ms = now + budget_ms;
        request.context.reply_topic = topics.page_completed.clone();
        request.context.reply_partition = partition_for_key(
            request.context.session_id.to_string().as_bytes(),
            plan.partitions,
        );
        request.callback_url = None;
        let record = Outbound::event(
            &topics.page_requested,
            request.context.session_id,
            request.context.request_id,
            &Context::new(),
            &request,
        );
        producer.send(&record).await?;
        let due =
            tokio::time::Instant::now() + Duration::from_millis(budget_ms as u64) + REPLY_GRACE;
        last_due = last_due.max(due);
        outstanding.insert(
            request.context.session_id,
            (request.context.request_id, due),
        );
    }
    while pages.len() < plan.requests.len() {
        match tokio::time::timeout_at(last_due, pages_rx.recv()).await {
            Ok(Some(page)) => {
                pages.insert(page.context.request_id, page);
            }
            _ => break,
        }
    }
    stop.store(true, Ordering::Relaxed);
    collector.await??;
    Ok(pages)
}

/// The report for a terminal: counts, then each request that differs or lacks a page.
pub fn render(report: &Report) -> String {
    let plan = &report.plan;
    let mut out = format!(
        "Replayed {} requests recorded from {} to {} into namespace {:?}.\n",
        plan.selected(),
        format_time(plan.from_ms),
        format_time(plan.to_ms),
        plan.into
    );
    out.push_str(&format!(
        "same: {}  different: {}  no recorded page: {}  no replayed page: {}\n",
        report.same, report.different, report.no_recorded_page, report.no_replayed_page
    ));
    for request in &report.requests {
        let note = match (&request.recorded, &request.replayed) {
            (None, _) => vec!["no recorded page to compare with".to_owned()],
            (_, None) => vec!["no page came back from the replay".to_owned()],
            _ => request.differences.clone(),
        };
        if note.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "\n{} {} (session {}):\n",
            request.kind, request.request_id, request.session_id
        ));
        for line in note {
            out.push_str(&format!("    {line}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_namespace_and_lookalikes_are_refused() {
        assert!(check_namespace("", "").is_err());
        assert!(check_namespace("prod.", "prod.").is_err());
        assert!(check_namespace("", "replay 1").is_err());
        assert!(check_namespace("prod.", "").is_err());
        assert!(check_namespace("", "replay-1.").is_ok());
        assert!(check_namespace("prod.", "prod.replay.").is_ok());
    }
}

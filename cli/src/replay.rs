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
//! its login and its time budget (deadline minus request time, times
//! `--budget-scale`), and is sent now, with the copy's page.completed as
//! its return address, once every service of the copy can take a record at
//! once (readiness) and the replay's producer has its id.
//!
//! Each replayed page gets a verdict: `same` (everything the recorded page
//! showed, the replayed page shows alike; it may hold a part the recorded
//! one missed), `timing` (it lacks a part the recorded page had, or its
//! session's login came back late, and nothing else differs: the copy was
//! slower, not the workflow changed) or `different` (another user, other
//! purchases, other ads, another rejection).

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
/// Each replayed request's budget, as a multiple of its recorded one, unless told.
pub const DEFAULT_BUDGET_SCALE: f64 = 1.0;

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
    /// Give each replayed request this many times its recorded time budget
    /// (a slower machine than the recording's, a copy under load).
    #[arg(long, default_value_t = DEFAULT_BUDGET_SCALE)]
    pub budget_scale: f64,
    /// Widen the range back to the logins of sessions whose pages it holds
    /// but whose login is before it (the copy would not know them).
    #[arg(long)]
    pub with_logins: bool,
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
    pub budget_scale: f64,
    /// The range began later (`--from`), and was widened back to this many
    /// sessions' logins (`--with-logins`).
    pub widened_from_ms: Option<i64>,
    pub widened_for_sessions: usize,
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

    /// Whether the page holds `part` (the aggregator names what it lacks).
    fn has(&self, part: &str) -> bool {
        !self.missing.iter().any(|m| m == part)
    }
}

/// The parts of a page, each from its service.
const PARTS: [&str; 3] = ["user", "history", "ads"];

/// How a replayed page compares with its recorded one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// What the recorded page showed, the replayed page shows alike.
    Same,
    /// It lacks a part the recorded page had (or its session's login came
    /// back late), and nothing else differs: the copy was slower.
    Timing,
    /// Another user, other purchases, other ads or another rejection.
    Different,
    NoRecordedPage,
    NoReplayedPage,
}

/// A verdict with its reasons.
struct Judged {
    verdict: Verdict,
    /// Content that differs: `field: recorded X, replayed Y`.
    differences: Vec<String>,
    /// Why it is a timing difference.
    timing: Vec<String>,
    /// What else is worth knowing (a part the replay has and the recording lacked).
    notes: Vec<String>,
}

impl Judged {
    fn only(verdict: Verdict) -> Self {
        Self {
            verdict,
            differences: vec![],
            timing: vec![],
            notes: vec![],
        }
    }

    /// Compares the parts both pages hold; a part only the recorded page
    /// holds is a timing difference, one only the replayed page holds a
    /// note. `late_login`: the session's replayed login came back late, so
    /// a rejection of the session is its consequence, not a change.
    fn of(recorded: &Outcome, replayed: &Outcome, late_login: bool) -> Self {
        let mut differences = Vec::new();
        let mut differ = |field: &str, a: &dyn erased::Show, b: &dyn erased::Show| {
            let (a, b) = (a.show(), b.show());
            if a != b {
                differences.push(format!("{field}: recorded {a}, replayed {b}"));
            }
        };
        let both = |part: &str| recorded.has(part) && replayed.has(part);
        if both("user") {
            differ("rejection", &recorded.rejection, &replayed.rejection);
            differ("user", &recorded.user, &replayed.user);
        }
        let served = recorded.rejection.is_none() && replayed.rejection.is_none();
        if both("history") && served {
            differ(
                "recent_purchases",
                &recorded.recent_purchases,
                &replayed.recent_purchases,
            );
        }
        if both("ads") && served {
            differ("ads", &recorded.ads, &replayed.ads);
        }
        let lacking: Vec<&str> = PARTS
            .into_iter()
            .filter(|p| recorded.has(p) && !replayed.has(p))
            .collect();
        let extra: Vec<&str> = PARTS
            .into_iter()
            .filter(|p| !recorded.has(p) && replayed.has(p))
            .collect();
        let mut timing = Vec::new();
        if !lacking.is_empty() {
            timing.push(format!(
                "came back without {} (not in by its deadline), which the recorded page had",
                lacking.join(", ")
            ));
        }
        let rejected_for_a_late_login = late_login
            && replayed.rejection.as_deref()
                == Some(storefront_schemas::rejection::UNKNOWN_SESSION)
            && recorded.rejection != replayed.rejection;
        if rejected_for_a_late_login {
            timing.push(
                "its session's replayed login came back late, so the copy never opened the session"
                    .to_owned(),
            );
            differences.clear();
        }
        let notes = if extra.is_empty() {
            vec![]
        } else {
            vec![format!(
                "the replay also has {}, missing from the recorded page",
                extra.join(", ")
            )]
        };
        let verdict = if !differences.is_empty() {
            Verdict::Different
        } else if !timing.is_empty() {
            Verdict::Timing
        } else {
            Verdict::Same
        };
        Self {
            verdict,
            differences,
            timing,
            notes,
        }
    }
}

/// Fields of different types, shown as JSON to compare and print them.
mod erased {
    pub(super) trait Show {
        fn show(&self) -> String;
    }

    impl<T: serde::Serialize> Show for T {
        fn show(&self) -> String {
            serde_json::to_string(self).unwrap_or_default()
        }
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
    pub verdict: Verdict,
    /// Content that differs (`different`).
    pub differences: Vec<String>,
    /// Why it is a timing difference (`timing`).
    pub timing: Vec<String>,
    pub notes: Vec<String>,
}

/// The outcome of a replay.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub plan: Plan,
    pub same: usize,
    pub timing: usize,
    pub different: usize,
    pub no_recorded_page: usize,
    pub no_replayed_page: usize,
    /// How long the copy's services took to start and be ready.
    pub copy_ready_ms: u64,
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
    if !(args.budget_scale > 0.0 && args.budget_scale <= 100.0) {
        refuse!("--budget-scale must be above 0 and at most 100");
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
    let read_requests = |from: i64| -> anyhow::Result<Vec<PageRequested>> {
        let mut requests = Vec::new();
        reader.read(
            &requested,
            Since::Timestamp(from),
            Some(args.to),
            Duration::from_secs(300),
            |record| {
                if let Ok(request) = record.decode::<PageRequested>() {
                    requests.push(request);
                }
            },
        )?;
        requests.sort_by_key(|r| (r.context.requested_at_ms, r.context.request_id));
        Ok(requests)
    };
    let mut from = args.from;
    let mut requests = read_requests(from)?;
    if requests.is_empty() {
        refuse!(
            "no page request was recorded from {} to {}: nothing to replay (widen the range?)",
            format_time(args.from),
            format_time(args.to)
        );
    }
    // Sessions whose pages the range holds, opened by a login before it and
    // not among the sessions the copy starts with.
    let sessions = SessionsAt::read(&reader, &topics.sessions, args.from)?;
    let outsiders = sessions.opened_before_unknown_to_copy(&requests, args.from);
    let (mut widened_from_ms, mut widened_for_sessions) = (None, 0);
    if !outsiders.is_empty() {
        let pages = requests
            .iter()
            .filter(|r| outsiders.contains_key(&r.context.session_id))
            .count();
        let earliest = outsiders.values().copied().min().unwrap_or(args.from);
        if !args.with_logins {
            refuse!(
                "{pages} page request(s) of the range belong to {} session(s) whose login was before it (the earliest at {}) and that the copy would not know: they would come back rejected. Add --with-logins to start the range at those logins, or move --from back yourself",
                outsiders.len(),
                format_time(earliest)
            );
        }
        from = earliest;
        requests = read_requests(from)?;
        widened_from_ms = Some(from);
        widened_for_sessions = outsiders.len();
    }
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
            Since::Timestamp(from),
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
            .positions(&partitions, Some(Since::Timestamp(from)))?
            .iter()
            .map(|p| p.start - p.low)
            .sum();
        reference_records.push((topic.to_owned(), before_range));
    }
    Ok(Plan {
        source_prefix: kafka.topic_prefix.clone(),
        into: args.into.clone(),
        from_ms: from,
        to_ms: args.to,
        partitions: requested.len() as i32,
        found,
        logins: requests.iter().filter(|r| r.login.is_some()).count(),
        logouts: requests.iter().filter(|r| r.logout).count(),
        with_recorded_page: recorded.len(),
        reference_records,
        rate: args.rate,
        budget_scale: args.budget_scale,
        widened_from_ms,
        widened_for_sessions,
        requests,
        recorded,
    })
}

/// The sessions of the `sessions` topic, as the copy will start with them
/// (records stamped before the range) and as they were opened at all.
struct SessionsAt {
    /// Sessions open when the range began, as copied.
    copied_open: std::collections::HashSet<SessionId>,
    /// When each session was opened (its login), from any of its records.
    opened_at: HashMap<SessionId, i64>,
}

impl SessionsAt {
    fn read(reader: &PartitionReader, topic: &str, from_ms: i64) -> anyhow::Result<Self> {
        let partitions = reader.partitions_of(topic)?;
        let mut latest_before: HashMap<SessionId, storefront_schemas::Session> = HashMap::new();
        let mut opened_at = HashMap::new();
        reader.read(
            &partitions,
            Since::Beginning,
            None,
            Duration::from_secs(300),
            |record| {
                let Ok(session) = record.decode::<storefront_schemas::Session>() else {
                    return;
                };
                opened_at.insert(session.session_id, session.opened_at_ms);
                if record.timestamp_ms.is_some_and(|at| at < from_ms) {
                    latest_before.insert(session.session_id, session);
                }
            },
        )?;
        let copied_open = latest_before
            .into_values()
            .filter(|s| s.expires_at_ms > from_ms)
            .map(|s| s.session_id)
            .collect();
        Ok(Self {
            copied_open,
            opened_at,
        })
    }

    /// The sessions (with their login's time) whose requests in `requests`
    /// the copy would not know: opened before `from_ms`, neither copied nor
    /// logged in within the range.
    fn opened_before_unknown_to_copy(
        &self,
        requests: &[PageRequested],
        from_ms: i64,
    ) -> HashMap<SessionId, i64> {
        let mut logged_in = std::collections::HashSet::new();
        let mut outsiders = HashMap::new();
        for request in requests {
            let session = request.context.session_id;
            if request.login.is_some() {
                logged_in.insert(session);
                continue;
            }
            if logged_in.contains(&session) || self.copied_open.contains(&session) {
                continue;
            }
            if let Some(&opened) = self.opened_at.get(&session).filter(|&&at| at < from_ms) {
                outsiders.insert(session, opened);
            }
        }
        outsiders
    }
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
    if let Some(widened) = plan.widened_from_ms {
        out.push_str(&format!(
            "  (the range starts at {}, widened back to the logins of {} session(s) whose pages it holds: --with-logins)\n",
            format_time(widened),
            plan.widened_for_sessions
        ));
    }
    out.push_str(&format!(
        "  1. create its topics ({} partitions on the request path), copying the reference records stamped before {}:\n",
        plan.partitions,
        format_time(plan.from_ms)
    ));
    for (topic, count) in &plan.reference_records {
        out.push_str(&format!("       {count:>8}  {topic}\n"));
    }
    out.push_str(
        "  2. start user-svc, history-svc, ads-svc and the aggregator on it (no gateway: no webhook is called), and wait until each can take a record at once\n",
    );
    out.push_str(&format!(
        "  3. send the {} requests ({} logins, {} logouts, {} page views) at {} per second, about {} s, each with its recorded IDs and {}, a session's next request after its previous one answered\n",
        plan.selected(),
        plan.logins,
        plan.logouts,
        plan.selected() - plan.logins - plan.logouts,
        plan.rate,
        (plan.selected() as f64 / plan.rate).ceil(),
        budget_words(plan.budget_scale),
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

/// How each request's budget is given, in words.
fn budget_words(scale: f64) -> String {
    if scale == 1.0 {
        "its recorded time budget (budget scale 1)".to_owned()
    } else {
        format!("{scale} times its recorded time budget (budget scale {scale})")
    }
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
    let starting = std::time::Instant::now();
    let stack = config
        .start_all(&services, Duration::from_secs(300))
        .await?;
    let copy_ready_ms = starting.elapsed().as_millis() as u64;
    let outcome = drive(&target, &plan).await;
    stack.stop().await;
    let replayed = outcome?;

    let mut requests = Vec::new();
    let mut counts: HashMap<Verdict, usize> = HashMap::new();
    // Sessions whose replayed login came back late: what follows from it is timing too.
    let mut late_logins = std::collections::HashSet::new();
    for request in &plan.requests {
        let id = &request.context.request_id;
        let recorded = plan.recorded.get(id).map(Outcome::of);
        let replayed = replayed.get(id).map(Outcome::of);
        let session = request.context.session_id;
        let judged = match (&recorded, &replayed) {
            (None, _) => Judged::only(Verdict::NoRecordedPage),
            (_, None) => Judged::only(Verdict::NoReplayedPage),
            (Some(a), Some(b)) => Judged::of(a, b, late_logins.contains(&session)),
        };
        if request.login.is_some() && judged.verdict == Verdict::Timing {
            late_logins.insert(session);
        }
        *counts.entry(judged.verdict).or_default() += 1;
        requests.push(Replayed {
            request_id: id.to_string(),
            session_id: session.to_string(),
            kind: if request.login.is_some() {
                "login"
            } else if request.logout {
                "logout"
            } else {
                "page"
            },
            recorded,
            replayed,
            verdict: judged.verdict,
            differences: judged.differences,
            timing: judged.timing,
            notes: judged.notes,
        });
    }
    let count = |verdict| counts.get(&verdict).copied().unwrap_or(0);
    Ok(Report {
        same: count(Verdict::Same),
        timing: count(Verdict::Timing),
        different: count(Verdict::Different),
        no_recorded_page: count(Verdict::NoRecordedPage),
        no_replayed_page: count(Verdict::NoReplayedPage),
        copy_ready_ms,
        plan,
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
    // Until the broker gives the producer its id, a first send stalls for
    // about half a second: that would come out of the first request's budget.
    producer.wait_until_warm(Duration::from_secs(30)).await?;
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
        let budget_ms = (recorded.context.budget_ms().max(0) as f64 * plan.budget_scale) as i64;
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
        "The copy was ready in {} ms; each request had {}.\n",
        report.copy_ready_ms,
        budget_words(plan.budget_scale)
    ));
    out.push_str(&format!(
        "same: {}  timing: {}  different: {}  no recorded page: {}  no replayed page: {}\n",
        report.same,
        report.timing,
        report.different,
        report.no_recorded_page,
        report.no_replayed_page
    ));
    if report.timing > 0 {
        out.push_str(
            "(timing: the copy answered later than the recording, nothing else differs; try a larger --budget-scale)\n",
        );
    }
    for request in &report.requests {
        let lines: Vec<String> = match request.verdict {
            Verdict::NoRecordedPage => vec!["no recorded page to compare with".to_owned()],
            Verdict::NoReplayedPage => vec!["no page came back from the replay".to_owned()],
            Verdict::Different => request.differences.clone(),
            Verdict::Timing => request
                .timing
                .iter()
                .map(|t| format!("timing: {t}"))
                .collect(),
            Verdict::Same if request.notes.is_empty() => continue,
            Verdict::Same => vec![],
        };
        out.push_str(&format!(
            "\n{} {} (session {}):\n",
            request.kind, request.request_id, request.session_id
        ));
        for line in lines.iter().chain(&request.notes) {
            out.push_str(&format!("    {line}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: &str, missing: &[&str], rejection: Option<&str>, ads: &[&str]) -> Outcome {
        let served = rejection.is_none() && !missing.contains(&"user");
        Outcome {
            status: status.to_owned(),
            missing: missing.iter().map(|m| m.to_string()).collect(),
            rejection: rejection.map(str::to_owned),
            user: served.then(|| "c-1 (Ada, Oslo)".to_owned()),
            recent_purchases: if served && !missing.contains(&"history") {
                vec!["p-1".to_owned()]
            } else {
                vec![]
            },
            ads: ads.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn a_part_the_replay_lacks_is_timing_one_it_adds_is_same_and_other_content_is_different() {
        let complete = outcome("complete", &[], None, &["p-9"]);
        let no_ads = outcome("partial", &["ads"], None, &[]);
        let lacking = Judged::of(&complete, &no_ads, false);
        assert_eq!(lacking.verdict, Verdict::Timing);
        assert!(
            lacking.timing[0].contains("without ads"),
            "{:?}",
            lacking.timing
        );

        let adding = Judged::of(&no_ads, &complete, false);
        assert_eq!(adding.verdict, Verdict::Same);
        assert!(adding.notes[0].contains("also has ads"));

        let other_ads = outcome("complete", &[], None, &["p-3"]);
        let changed = Judged::of(&complete, &other_ads, false);
        assert_eq!(changed.verdict, Verdict::Different);
        assert_eq!(
            changed.differences,
            [r#"ads: recorded ["p-9"], replayed ["p-3"]"#]
        );

        // A change where one side lacks the part is timing alone.
        let late_and_other = outcome("partial", &["ads"], None, &[]);
        assert_eq!(
            Judged::of(&other_ads, &late_and_other, false).verdict,
            Verdict::Timing
        );
    }

    #[test]
    fn a_login_that_came_back_late_makes_its_sessions_rejections_timing_too() {
        let rejected = outcome("rejected", &[], Some("invalid_credentials"), &[]);
        let unavailable = outcome("unavailable", &["user", "history", "ads"], None, &[]);
        assert_eq!(
            Judged::of(&rejected, &unavailable, false).verdict,
            Verdict::Timing
        );

        let page = outcome("complete", &[], None, &["p-9"]);
        let unknown = outcome("rejected", &[], Some("unknown_session"), &[]);
        assert_eq!(
            Judged::of(&page, &unknown, false).verdict,
            Verdict::Different
        );
        let after_late_login = Judged::of(&page, &unknown, true);
        assert_eq!(after_late_login.verdict, Verdict::Timing);
        assert!(after_late_login.differences.is_empty());
        // Another rejection than a session the copy never opened is a change.
        let expired = outcome("rejected", &[], Some("expired_session"), &[]);
        assert_eq!(
            Judged::of(&page, &expired, true).verdict,
            Verdict::Different
        );
    }

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

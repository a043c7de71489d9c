//! `storefront chaos`: the fault suite. Apache Kafka (one node, or a
//! cluster with `--brokers 3`) and the five services as separate processes
//! (`storefront run <service>`, two aggregators) take a steady load while
//! each service is killed with SIGKILL once and restarted, the broker fails
//! (one node: stopped and started again; a cluster: the leader of the
//! request path killed, a rolling restart of every node, one node frozen
//! past its session timeout), one service is frozen for a while, every
//! service is restarted with SIGTERM in turn, and a burst comes at ten
//! times the rate. Then every request that was accepted (is on
//! `page.requested`) must have exactly one page on `page.completed`, and
//! the report says how long requests failed or slowed around each broker fault.

use std::{
    collections::HashMap,
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use storefront_runtime::{
    snapshot::{self, Since},
    KafkaSettings,
};
use storefront_schemas::RequestId;

use anyhow::Context as _;

use crate::{
    broker::{self, Cluster, Ports},
    keys,
    processes::ServiceProcess,
    seed::{self, SeedConfig},
};

/// How long and how hard the suite runs.
#[derive(Debug, Clone, clap::Args)]
pub struct ChaosConfig {
    /// Time between faults; the steady load runs from before the first
    /// to one interval after the last.
    #[arg(long, default_value_t = 10)]
    pub fault_interval_secs: u64,
    /// Requests per second of the steady load.
    #[arg(long, default_value_t = 20)]
    pub rate: u32,
    /// Kafka nodes: 1, or 3 for a cluster (replication 3, min.insync.replicas=2).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=9))]
    pub brokers: u32,
    /// How long a stopped or killed broker stays down, and how long a frozen one stays frozen.
    #[arg(long, default_value_t = 10)]
    pub broker_outage_secs: u64,
    /// How long one service stays frozen (SIGSTOP) to play a slow service.
    #[arg(long, default_value_t = 3)]
    pub freeze_secs: u64,
    /// How long the final burst at ten times the steady rate lasts.
    #[arg(long, default_value_t = 5)]
    pub burst_secs: u64,
    /// Where the broker's data and the services' logs go (default: a new temporary directory).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// How many times to run the suite (stopping at the first run that
    /// loses or duplicates a request); past one, a table per broker fault
    /// sums the runs up.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// The faults to inject, in the suite's order (default: every fault
    /// that applies to the number of nodes).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub faults: Vec<Fault>,
}

/// A fault the suite can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    /// Each service killed with SIGKILL once and restarted.
    ServiceKills,
    /// The only node stopped and started again (one node).
    BrokerOutage,
    /// SIGKILL of the request path's leader (a cluster).
    KillLeader,
    /// Each node stopped with SIGTERM and started in turn (a cluster).
    RollingRestart,
    /// The request path's leader frozen with SIGSTOP (a cluster).
    FreezeLeader,
    /// ads-svc frozen with SIGSTOP for a while.
    ServiceFreeze,
    /// Each service stopped with SIGTERM and started in turn.
    ServiceRestarts,
    /// Ten times the steady rate for a while.
    Burst,
}

impl Fault {
    /// The faults that apply to a cluster of `nodes`, in the suite's order.
    fn all(nodes: u32) -> Vec<Self> {
        let broker: &[Self] = match nodes {
            1 => &[Self::BrokerOutage],
            _ => &[Self::KillLeader, Self::RollingRestart, Self::FreezeLeader],
        };
        std::iter::once(Self::ServiceKills)
            .chain(broker.iter().copied())
            .chain([Self::ServiceFreeze, Self::ServiceRestarts, Self::Burst])
            .collect()
    }

    fn broker_fault(self) -> Option<BrokerFault> {
        match self {
            Self::BrokerOutage => Some(BrokerFault::Outage),
            Self::KillLeader => Some(BrokerFault::KillLeader),
            Self::RollingRestart => Some(BrokerFault::RollingRestart),
            Self::FreezeLeader => Some(BrokerFault::FreezeLeader),
            _ => None,
        }
    }
}

/// What the load saw, and what the topics hold afterwards.
#[derive(Debug, Default, Clone)]
pub struct ChaosReport {
    pub sent: u64,
    pub completed: u64,
    pub partial: u64,
    pub rejected: u64,
    pub shed: u64,
    /// 503: the gateway could not publish (broker down) or was not ready.
    pub unavailable: u64,
    /// 202: a login still running past the sync budget (its page comes later, at its status URL).
    pub running_on: u64,
    /// 504: accepted, no page by the deadline (the page still comes, late).
    pub timed_out: u64,
    /// No HTTP answer: the gateway process was down.
    pub refused: u64,
    pub other: u64,
    /// Requests on `page.requested`.
    pub accepted: u64,
    /// Accepted requests with no page on `page.completed`.
    pub lost: u64,
    /// Requests with more than one page.
    pub duplicated: u64,
    /// Peak resident memory of each service (KiB), over all its runs.
    pub peak_rss_kib: Vec<(&'static str, u64)>,
    /// Places a password or key was found in clear: topics (payloads,
    /// keys, headers) and the services' logs.
    pub secrets_found: Vec<String>,
    /// How the load fared around each broker fault.
    pub failovers: Vec<Failover>,
    samples: Vec<Sample>,
}

impl fmt::Display for ChaosReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "requests sent        {}", self.sent)?;
        writeln!(f, "  completed          {}", self.completed)?;
        writeln!(f, "  partial            {}", self.partial)?;
        writeln!(f, "  rejected (401)     {}", self.rejected)?;
        writeln!(f, "  shed (429)         {}", self.shed)?;
        writeln!(f, "  unavailable (503)  {}", self.unavailable)?;
        writeln!(f, "  running on (202)   {}", self.running_on)?;
        writeln!(f, "  timed out (504)    {}", self.timed_out)?;
        writeln!(f, "  refused (no HTTP)  {}", self.refused)?;
        writeln!(f, "  other              {}", self.other)?;
        writeln!(f, "accepted (on page.requested)  {}", self.accepted)?;
        writeln!(f, "lost                          {}", self.lost)?;
        writeln!(f, "duplicated                    {}", self.duplicated)?;
        writeln!(
            f,
            "secrets in clear              {}",
            self.secrets_found.len()
        )?;
        for place in &self.secrets_found {
            writeln!(f, "  {place}")?;
        }
        for failover in &self.failovers {
            writeln!(
                f,
                "broker fault {:<34} {:>4} requests, {:>3} failed, {:>3} slow (>1 s), {:>3} partial, disrupted for {:.1} s, p99 {} ms",
                failover.fault,
                failover.requests,
                failover.failed,
                failover.slow,
                failover.partial,
                failover.disrupted.as_secs_f64(),
                failover.p99.as_millis()
            )?;
        }
        for (service, kib) in &self.peak_rss_kib {
            writeln!(f, "peak RSS {service:<12} {:.1} MiB", *kib as f64 / 1024.0)?;
        }
        Ok(())
    }
}

/// What the load saw during one broker fault.
#[derive(Debug, Clone)]
pub struct Failover {
    pub fault: String,
    /// Requests sent from the fault's start until one interval after its end.
    pub requests: u64,
    /// Of those: no answer or a 5xx.
    pub failed: u64,
    /// Of those: answered, but slower than a second.
    pub slow: u64,
    /// Of those: a page without some of its parts.
    pub partial: u64,
    /// From the fault's start to the last request that failed or was slow.
    pub disrupted: Duration,
    /// The 99th percentile of the latency of those requests.
    pub p99: Duration,
}

impl Failover {
    /// The figures a summary over several runs shows, by name.
    fn figures(&self) -> [(&'static str, f64); 5] {
        [
            ("failed", self.failed as f64),
            ("slow (>1 s)", self.slow as f64),
            ("partial", self.partial as f64),
            ("disrupted (s)", self.disrupted.as_secs_f64()),
            ("p99 (ms)", self.p99.as_secs_f64() * 1000.0),
        ]
    }
}

/// One table per fault over several runs of the suite: the minimum,
/// median and maximum of each figure.
pub fn summary(reports: &[ChaosReport]) -> String {
    let mut faults: Vec<&str> = Vec::new();
    for failover in reports.iter().flat_map(|r| &r.failovers) {
        if !faults.contains(&failover.fault.as_str()) {
            faults.push(&failover.fault);
        }
    }
    let mut text = String::new();
    for fault in faults {
        let runs: Vec<&Failover> = reports
            .iter()
            .flat_map(|r| &r.failovers)
            .filter(|f| f.fault == fault)
            .collect();
        text.push_str(&format!(
            "\n{fault}, over {} runs\n\n| figure | min | median | max |\n| --- | ---: | ---: | ---: |\n",
            runs.len()
        ));
        for (i, (name, _)) in runs[0].figures().iter().enumerate() {
            let mut values: Vec<f64> = runs.iter().map(|f| f.figures()[i].1).collect();
            values.sort_by(f64::total_cmp);
            let median = values[values.len() / 2];
            let show = |v: f64| match name.ends_with("(s)") {
                true => format!("{v:.1}"),
                false => format!("{v:.0}"),
            };
            text.push_str(&format!(
                "| {name} | {} | {} | {} |\n",
                show(values[0]),
                show(median),
                show(values[values.len() - 1])
            ));
        }
    }
    text
}

/// When one request was sent, how long it took, and whether it failed.
#[derive(Debug, Clone, Copy)]
struct Sample {
    sent: Instant,
    latency: Duration,
    failed: bool,
    /// A page that came without some of its parts.
    partial: bool,
    /// The HTTP status, or 0 for no answer.
    status: u16,
    /// The request's id, when the answer named it (for `storefront trace`).
    request_id: Option<RequestId>,
}

/// The processes of the suite, by label, and the service each runs. A
/// second aggregator shares the first one's group, so it takes over the
/// partitions of the one that is killed.
const PROCESSES: [(&str, &str); 6] = [
    ("user-svc", "user-svc"),
    ("history-svc", "history-svc"),
    ("ads-svc", "ads-svc"),
    ("aggregator", "aggregator"),
    ("aggregator-b", "aggregator"),
    ("gateway", "gateway"),
];

/// Killed with SIGKILL once each, in this order.
const KILLED: [&str; 5] = [
    "user-svc",
    "history-svc",
    "ads-svc",
    "aggregator",
    "gateway",
];

fn progress(started: Instant, what: &str) {
    eprintln!("[{:>6.1}s] {what}", started.elapsed().as_secs_f64());
}

/// Where a run keeps the broker's data and the services' logs: the work
/// dir asked for, or a new temporary directory.
pub fn work_dir(config: &ChaosConfig) -> PathBuf {
    match &config.work_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("storefront-chaos-{}", std::process::id())),
    }
}

/// Runs the suite: `storefront` is the binary that runs each service.
pub async fn run(config: &ChaosConfig, storefront: &Path) -> anyhow::Result<ChaosReport> {
    let work_dir = work_dir(config);
    let nodes = config.brokers;
    let chosen = chosen_faults(config)?;
    std::fs::create_dir_all(&work_dir)?;
    let started = Instant::now();
    let cluster = Cluster::launch(work_dir.join("kafka"), nodes, Ports::Free).await?;
    let kafka = cluster.kafka_settings();
    let bootstrap = kafka.bootstrap_servers.clone();
    let cluster = Arc::new(Mutex::new(cluster));
    progress(
        started,
        &format!(
            "Kafka up on {bootstrap} (data and logs in {})",
            work_dir.display()
        ),
    );

    seed::seed(&kafka, &SeedConfig::small()).await?;
    let users = SeedConfig::small().customers;

    let mut env: Vec<(String, String)> = keys::generate_env()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    env.push(("KAFKA_BOOTSTRAP_SERVERS".into(), bootstrap));
    env.push((
        "STOREFRONT_REPLICATION_FACTOR".into(),
        kafka.replication_factor.to_string(),
    ));
    // With librdkafka's debug contexts set (the services inherit the
    // variable), their logs carry librdkafka's debug lines too.
    let librdkafka = match std::env::var_os(storefront_runtime::settings::KAFKA_DEBUG_VAR) {
        Some(_) => "debug",
        None => "warn",
    };
    env.push(("RUST_LOG".into(), format!("info,librdkafka={librdkafka}")));
    let mut services = HashMap::new();
    for (name, service) in PROCESSES {
        let addr = SocketAddr::from(([127, 0, 0, 1], broker::free_port()?));
        let log = work_dir.join(format!("{name}.log"));
        let process =
            ServiceProcess::spawn(storefront, name, &["run", service], addr, env.clone(), log)?;
        services.insert(name, process);
    }
    for process in services.values() {
        process.wait_ready(Duration::from_secs(120)).await?;
    }
    progress(started, "services ready; steady load starts");

    let gateway = services["gateway"].addr;
    let outcomes = Arc::new(Mutex::new(ChaosReport::default()));
    let sessions = Sessions::new(users);
    let stop_load = tokio_util::sync::CancellationToken::new();
    let load = tokio::spawn(steady_load(
        gateway,
        config.rate,
        sessions.clone(),
        stop_load.clone(),
        outcomes.clone(),
    ));

    let step = Duration::from_secs(config.fault_interval_secs);
    let mut faults = Vec::new();
    for fault in chosen {
        tokio::time::sleep(step).await;
        if let Some(broker_fault) = fault.broker_fault() {
            let begun = Instant::now();
            progress(started, &broker_fault.to_string());
            broker_fault
                .run(
                    &cluster,
                    &kafka,
                    Duration::from_secs(config.broker_outage_secs),
                    started,
                )
                .await?;
            progress(started, &format!("{broker_fault}: over"));
            faults.push((broker_fault.to_string(), begun, Instant::now()));
            continue;
        }
        match fault {
            Fault::ServiceKills => {
                for (i, name) in KILLED.into_iter().enumerate() {
                    if i > 0 {
                        tokio::time::sleep(step).await;
                    }
                    progress(started, &format!("SIGKILL {name}"));
                    let process = services.get_mut(name).expect("started");
                    let ready_in = process.kill_and_restart(Duration::from_secs(2)).await?;
                    progress(
                        started,
                        &format!(
                            "{name} restarted and ready {} ms after its start",
                            ready_in.as_millis()
                        ),
                    );
                }
            }
            Fault::ServiceFreeze => {
                progress(
                    started,
                    &format!("freezing ads-svc for {} s", config.freeze_secs),
                );
                let ads = &services["ads-svc"];
                ads.signal("-STOP").await?;
                tokio::time::sleep(Duration::from_secs(config.freeze_secs)).await;
                ads.signal("-CONT").await?;
                progress(started, "ads-svc thawed");
            }
            Fault::ServiceRestarts => {
                progress(
                    started,
                    "rolling restart: SIGTERM and start each service in turn",
                );
                for (name, _) in PROCESSES {
                    let process = services.get_mut(name).expect("started");
                    process.restart_gracefully().await?;
                }
                progress(started, "rolling restart done");
            }
            Fault::Burst => {
                let burst_rate = config.rate.saturating_mul(10);
                progress(
                    started,
                    &format!(
                        "burst: {burst_rate} requests a second for {} s",
                        config.burst_secs
                    ),
                );
                let stop_burst = tokio_util::sync::CancellationToken::new();
                let burst = tokio::spawn(steady_load(
                    gateway,
                    burst_rate,
                    sessions.clone(),
                    stop_burst.clone(),
                    outcomes.clone(),
                ));
                tokio::time::sleep(Duration::from_secs(config.burst_secs)).await;
                stop_burst.cancel();
                burst.await?;
            }
            _ => unreachable!("broker faults are run above"),
        }
    }
    tokio::time::sleep(step).await;
    stop_load.cancel();
    load.await?;
    progress(started, "load finished; waiting for the last pages");

    let (accepted, lost, duplicated) = settle(&kafka, Duration::from_secs(30)).await?;
    let mut report = outcomes.lock().expect("outcomes lock").clone();
    report.accepted = accepted;
    report.lost = lost;
    report.duplicated = duplicated;
    report.failovers = faults
        .into_iter()
        .map(|(fault, begun, ended)| failover(fault, &report.samples, begun, ended + step))
        .collect();
    write_samples(&work_dir.join("requests.csv"), &report.samples, started)?;
    for (name, _) in PROCESSES {
        let process = services.remove(name).expect("started");
        report.peak_rss_kib.push((name, process.stop().await));
    }
    let mut secrets: Vec<String> = (1..=users).map(|i| format!("user{i}-password")).collect();
    secrets.push(seed::DEMO_PASSWORD.to_owned());
    let secret_keys = [keys::SECRET_KEY_VAR, keys::COOKIE_KEY_VAR];
    secrets.extend(
        env.iter()
            .filter(|(k, _)| secret_keys.contains(&k.as_str()))
            .map(|(_, v)| v.clone()),
    );
    report.secrets_found = find_secrets(&kafka, &work_dir, secrets).await?;
    tokio::task::spawn_blocking(move || drop(cluster)).await?;
    progress(started, "done");
    Ok(report)
}

/// A broker fault the suite injects under load.
#[derive(Debug, Clone, Copy)]
enum BrokerFault {
    /// The only node stopped, then started again.
    Outage,
    /// SIGKILL of the node leading the request path's first partition,
    /// started again after the outage.
    KillLeader,
    /// Each node in turn stopped (SIGTERM) and started, waiting for every
    /// partition to be back in sync before the next.
    RollingRestart,
    /// The request path's leader frozen with SIGSTOP for the outage (longer
    /// than the brokers' 3 s session timeout), then thawed.
    FreezeLeader,
}

impl fmt::Display for BrokerFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Outage => "broker stopped and started",
            Self::KillLeader => "SIGKILL of the leader",
            Self::RollingRestart => "rolling restart of every node",
            Self::FreezeLeader => "leader frozen (SIGSTOP)",
        })
    }
}

/// The faults `config` asks for, in the suite's order, or why they
/// cannot run on its number of nodes.
fn chosen_faults(config: &ChaosConfig) -> anyhow::Result<Vec<Fault>> {
    let applicable = Fault::all(config.brokers);
    if config.faults.is_empty() {
        return Ok(applicable);
    }
    let name = |f: &Fault| {
        clap::ValueEnum::to_possible_value(f).map_or_else(String::new, |v| v.get_name().to_owned())
    };
    if let Some(fault) = config.faults.iter().find(|f| !applicable.contains(f)) {
        anyhow::bail!(
            "--faults {} does not apply to {} node(s); these do: {}",
            name(fault),
            config.brokers,
            applicable.iter().map(name).collect::<Vec<_>>().join(",")
        );
    }
    Ok(applicable
        .into_iter()
        .filter(|f| config.faults.contains(f))
        .collect())
}

/// How long a cluster may take to have every partition in sync again.
const RESYNC_TIMEOUT: Duration = Duration::from_secs(120);

impl BrokerFault {
    async fn run(
        self,
        cluster: &Arc<Mutex<Cluster>>,
        kafka: &KafkaSettings,
        outage: Duration,
        started: Instant,
    ) -> anyhow::Result<()> {
        let topic = kafka.topics().page_requested;
        let leader = {
            let topic = topic.clone();
            move |c: &mut Cluster| c.leader_of(&topic, 0)
        };
        match self {
            Self::Outage => {
                on_cluster(cluster, |c| c.stop_node(1)).await?;
                tokio::time::sleep(outage).await;
                on_cluster(cluster, |c| c.start_node(1)).await
            }
            Self::KillLeader => {
                let id = on_cluster(cluster, move |c| {
                    let id = leader(c)?;
                    c.kill_node(id)?;
                    Ok(id)
                })
                .await?;
                tokio::time::sleep(outage).await;
                on_cluster(cluster, move |c| {
                    c.start_node(id)?;
                    c.wait_until_in_sync(RESYNC_TIMEOUT)
                })
                .await
            }
            Self::RollingRestart => {
                on_cluster(cluster, move |c| {
                    let ids: Vec<u32> = c.nodes().iter().map(|n| n.id).collect();
                    for id in ids {
                        progress(started, &format!("node {id}: SIGTERM"));
                        c.stop_node(id)?;
                        progress(started, &format!("node {id}: stopped; starting"));
                        c.start_node(id)?;
                        c.wait_until_in_sync(RESYNC_TIMEOUT)?;
                        progress(started, &format!("node {id}: back in sync"));
                    }
                    Ok(())
                })
                .await
            }
            Self::FreezeLeader => {
                let id = on_cluster(cluster, move |c| {
                    let id = leader(c)?;
                    c.signal_node(id, "-STOP")?;
                    Ok(id)
                })
                .await?;
                tokio::time::sleep(outage).await;
                on_cluster(cluster, move |c| {
                    c.signal_node(id, "-CONT")?;
                    c.wait_until_in_sync(RESYNC_TIMEOUT)
                })
                .await
            }
        }
    }
}

/// Runs a blocking operation on the cluster off the async threads.
async fn on_cluster<T: Send + 'static>(
    cluster: &Arc<Mutex<Cluster>>,
    operation: impl FnOnce(&mut Cluster) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let cluster = cluster.clone();
    tokio::task::spawn_blocking(move || operation(&mut cluster.lock().expect("cluster lock")))
        .await?
}

/// What the requests sent between `begun` and `until` saw of one fault.
fn failover(fault: String, samples: &[Sample], begun: Instant, until: Instant) -> Failover {
    let window: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.sent >= begun && s.sent <= until)
        .collect();
    let slow = |s: &Sample| !s.failed && s.latency > Duration::from_secs(1);
    let disrupted = window
        .iter()
        .filter(|s| s.failed || slow(s))
        .map(|s| (s.sent + s.latency).saturating_duration_since(begun))
        .max()
        .unwrap_or_default();
    let mut latencies: Vec<Duration> = window.iter().map(|s| s.latency).collect();
    latencies.sort();
    let p99 = crate::bench::load::percentile_ms(&latencies, 0.99)
        .map_or(Duration::ZERO, |ms| Duration::from_secs_f64(ms / 1000.0));
    Failover {
        fault,
        requests: window.len() as u64,
        failed: window.iter().filter(|s| s.failed).count() as u64,
        slow: window.iter().filter(|s| slow(s)).count() as u64,
        partial: window.iter().filter(|s| s.partial).count() as u64,
        disrupted,
        p99,
    }
}

/// Every request the load sent, one line each: when it was sent (seconds
/// since the suite started), how long it took, its HTTP status (0: no
/// answer) and its request id, to line up with the progress lines and the logs.
fn write_samples(path: &Path, samples: &[Sample], started: Instant) -> anyhow::Result<()> {
    let mut text = String::from("sent_s,latency_ms,status,request_id\n");
    for sample in samples {
        text.push_str(&format!(
            "{:.3},{},{},{}\n",
            sample.sent.saturating_duration_since(started).as_secs_f64(),
            sample.latency.as_millis(),
            sample.status,
            sample
                .request_id
                .map(|id| id.to_string())
                .unwrap_or_default()
        ));
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Waits up to `timeout` for every accepted request to have a page, then
/// counts (accepted, lost, duplicated) from the topics.
async fn settle(kafka: &KafkaSettings, timeout: Duration) -> anyhow::Result<(u64, u64, u64)> {
    let started = Instant::now();
    loop {
        let counts = count_pages(kafka.clone()).await?;
        if counts.1 == 0 || started.elapsed() > timeout {
            return Ok(counts);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn count_pages(kafka: KafkaSettings) -> anyhow::Result<(u64, u64, u64)> {
    tokio::task::spawn_blocking(move || {
        let topics = kafka.topics();
        let read = |topic: &str| -> anyhow::Result<Vec<Option<RequestId>>> {
            let mut ids = Vec::new();
            snapshot::read_topic(
                &kafka,
                "storefront-chaos",
                topic,
                Since::Beginning,
                Duration::from_secs(60),
                |r| ids.push(r.headers.request_id),
            )?;
            Ok(ids)
        };
        let requested = read(&topics.page_requested)?;
        let mut pages: HashMap<Option<RequestId>, u64> = HashMap::new();
        for id in read(&topics.page_completed)? {
            *pages.entry(id).or_default() += 1;
        }
        let lost = requested
            .iter()
            .filter(|id| !pages.contains_key(*id))
            .count() as u64;
        let duplicated = pages.values().filter(|n| **n > 1).count() as u64;
        Ok((requested.len() as u64, lost, duplicated))
    })
    .await?
}

/// Where each seeded user's session cookie is kept between requests.
#[derive(Clone)]
struct Sessions(Arc<Vec<Mutex<Option<String>>>>);

impl Sessions {
    fn new(users: usize) -> Self {
        Self(Arc::new((0..users).map(|_| Mutex::new(None)).collect()))
    }
}

/// Every place one of `secrets` appears in clear: on any topic (payload,
/// key, headers) or in any log under `work_dir`.
async fn find_secrets(
    kafka: &KafkaSettings,
    work_dir: &Path,
    secrets: Vec<String>,
) -> anyhow::Result<Vec<String>> {
    let (kafka, work_dir) = (kafka.clone(), work_dir.to_owned());
    tokio::task::spawn_blocking(move || {
        let contains = |haystack: &[u8]| {
            secrets
                .iter()
                .any(|s| haystack.windows(s.len()).any(|w| w == s.as_bytes()))
        };
        let mut found = Vec::new();
        for topic in kafka.topics().all() {
            snapshot::read_topic(
                &kafka,
                "storefront-chaos",
                topic,
                Since::Beginning,
                Duration::from_secs(60),
                |r| {
                    let clear = [r.payload.as_deref(), r.key.as_deref()]
                        .into_iter()
                        .flatten()
                        .chain(r.raw_headers.iter().map(|(_, v)| v.as_slice()))
                        .any(contains);
                    if clear {
                        found.push(format!("{}[{}]@{}", r.topic, r.partition, r.offset));
                    }
                },
            )?;
        }
        for entry in std::fs::read_dir(&work_dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "log") && contains(&std::fs::read(&path)?) {
                found.push(path.display().to_string());
            }
        }
        Ok(found)
    })
    .await?
}

/// Open-loop load: `rate` requests a second until `stop`, each user
/// logging in once and then asking for pages with its cookie.
async fn steady_load(
    gateway: SocketAddr,
    rate: u32,
    sessions: Sessions,
    stop: tokio_util::sync::CancellationToken,
    outcomes: Arc<Mutex<ChaosReport>>,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client");
    let cookies = sessions.0;
    let users = cookies.len();
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    let mut requests = tokio::task::JoinSet::new();
    let mut n = 0usize;
    while !stop.is_cancelled() {
        ticker.tick().await;
        let (client, cookies, outcomes) = (client.clone(), cookies.clone(), outcomes.clone());
        let user = n % users + 1;
        n += 1;
        requests.spawn(async move {
            let slot = &cookies[user - 1];
            let cookie = slot.lock().expect("cookie lock").clone();
            let request =
                match &cookie {
                    Some(cookie) => client
                        .get(format!("http://{gateway}/api/page"))
                        .header("cookie", cookie),
                    None => client.post(format!("http://{gateway}/api/login")).json(
                        &serde_json::json!({
                            "username": format!("user{user}"),
                            "password": format!("user{user}-password"),
                        }),
                    ),
                };
            let sent = Instant::now();
            let (status, body) = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let set_cookie = response
                        .headers()
                        .get("set-cookie")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.split(';').next())
                        .map(str::to_owned);
                    if set_cookie.is_some() {
                        *slot.lock().expect("cookie lock") = set_cookie;
                    }
                    let body: serde_json::Value = response.json().await.unwrap_or_default();
                    (Some(status), body)
                }
                Err(_) => (None, serde_json::Value::Null),
            };
            let mut report = outcomes.lock().expect("outcomes lock");
            report.sent += 1;
            report.samples.push(Sample {
                sent,
                latency: sent.elapsed(),
                failed: status.is_none_or(|s| s >= 500),
                partial: status == Some(200) && body["status"].as_str() != Some("complete"),
                status: status.unwrap_or(0),
                request_id: body["request_id"].as_str().and_then(|id| id.parse().ok()),
            });
            match (status, body["status"].as_str()) {
                (None, _) => report.refused += 1,
                (Some(200), Some("complete")) => report.completed += 1,
                (Some(200), _) => report.partial += 1,
                (Some(401), _) => {
                    report.rejected += 1;
                    *slot.lock().expect("cookie lock") = None;
                }
                (Some(429), _) => report.shed += 1,
                (Some(503), _) => report.unavailable += 1,
                (Some(202), _) => report.running_on += 1,
                (Some(504), _) => report.timed_out += 1,
                _ => report.other += 1,
            }
        });
    }
    while requests.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_with(failed: u64, disrupted_ms: u64) -> ChaosReport {
        ChaosReport {
            failovers: vec![Failover {
                fault: "SIGKILL of the leader".into(),
                requests: 100,
                failed,
                slow: 0,
                partial: 1,
                disrupted: Duration::from_millis(disrupted_ms),
                p99: Duration::from_millis(1250),
            }],
            ..ChaosReport::default()
        }
    }

    #[test]
    fn the_summary_shows_each_figures_min_median_and_max_over_the_runs() {
        let table = summary(&[
            run_with(70, 4_000),
            run_with(90, 26_600),
            run_with(60, 4_500),
        ]);
        assert!(
            table.contains("SIGKILL of the leader, over 3 runs"),
            "{table}"
        );
        assert!(table.contains("| failed | 60 | 70 | 90 |"), "{table}");
        assert!(
            table.contains("| disrupted (s) | 4.0 | 4.5 | 26.6 |"),
            "{table}"
        );
        assert!(
            table.contains("| p99 (ms) | 1250 | 1250 | 1250 |"),
            "{table}"
        );
    }

    #[test]
    fn faults_that_do_not_apply_to_the_cluster_size_are_refused_by_name() {
        let config = |brokers, faults: Vec<Fault>| ChaosConfig {
            fault_interval_secs: 1,
            rate: 1,
            brokers,
            broker_outage_secs: 1,
            freeze_secs: 1,
            burst_secs: 1,
            work_dir: None,
            runs: 1,
            faults,
        };
        let error = chosen_faults(&config(1, vec![Fault::KillLeader])).unwrap_err();
        assert!(error.to_string().contains("kill-leader"), "{error}");
        assert_eq!(
            chosen_faults(&config(3, vec![Fault::FreezeLeader, Fault::KillLeader])).unwrap(),
            [Fault::KillLeader, Fault::FreezeLeader],
            "in the suite's order"
        );
        assert_eq!(chosen_faults(&config(3, vec![])).unwrap(), Fault::all(3));
    }
}

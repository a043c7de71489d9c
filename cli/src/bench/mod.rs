//! `storefront bench`: the choreography against the designs it replaces
//! (a serial HTTP chain, a parallel HTTP fan-out, services writing to Redis
//! while the gateway polls) and against the broker's own floor, on one
//! machine, in one run, with one open-loop load generator.
//!
//! One Apache Kafka node (what `storefront up` runs; `--brokers 3` for a
//! cluster) holds
//! the seed data; each design then runs as separate processes of this
//! binary, alone on the machine, through the same scenarios: healthy, ads
//! slow for a fifth of requests, one service killed for 5 seconds, a burst
//! at five times the rate; then a capacity curve, and for the choreography
//! the effect of its Kafka client settings.

pub mod floor;
pub mod load;
pub mod report;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use serde::Serialize;
use storefront_runtime::KafkaSettings;

use crate::{
    broker::{self, Cluster, Ports},
    keys,
    processes::{self, ServiceProcess},
    seed::{self, SeedConfig},
};
use load::{Phase, Target};
use report::{
    BenchReport, BurstRecovery, CapacityPoint, IdleUse, ProcessUse, QuotaRun, Restart,
    ScenarioResult, TapRead, TapResult, TapRun, TuningResult,
};

/// A way to build the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Design {
    /// The event choreography on Kafka (this repository's design).
    Choreography,
    /// The gateway calls user, then history, then ads over HTTP.
    Chain,
    /// The gateway calls user, then history and ads at once over HTTP, and joins.
    Fanout,
    /// Services write their parts to Redis; the gateway polls for them.
    Redis,
}

impl std::fmt::Display for Design {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Choreography => "choreography",
            Self::Chain => "chain",
            Self::Fanout => "fanout",
            Self::Redis => "redis",
        })
    }
}

/// What happens during a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    Healthy,
    /// Ads answer in 300 ms for 20 % of requests.
    SlowAds,
    /// The history service is killed (SIGKILL) a third of the way in and restarted 5 s later.
    Killed,
    /// Five times the rate for 5 s, a third of the way in.
    Burst,
    /// The load without, then with, an analytics consumer replaying every
    /// topic from the beginning at full speed (`storefront analytics-tap`);
    /// the choreography only (the baselines serve nothing from Kafka).
    Tap,
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Healthy => "healthy",
            Self::SlowAds => "slow ads",
            Self::Killed => "history killed 5 s",
            Self::Burst => "burst 5x",
            Self::Tap => "analytics tap",
        })
    }
}

/// What to run, how hard and how long.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchConfig {
    /// Page requests per second of the scenarios.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// How long each scenario runs.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "choreography,chain,fanout,redis"
    )]
    pub designs: Vec<Design>,
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "healthy,slow-ads,killed,burst,tap"
    )]
    pub scenarios: Vec<Scenario>,
    /// Rates of the capacity curve (none: no curve). A design stops climbing
    /// once its p99 passes 1 s or it loses requests.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100,200,400,600,800,1000,1200,1500"
    )]
    pub capacity_rates: Vec<f64>,
    /// How long each rate of the capacity curve runs.
    #[arg(long, default_value = "8s", value_parser = humantime::parse_duration)]
    pub capacity_step: Duration,
    /// How long each design serves the scenario rate, unmeasured, before
    /// its first measured run: the broker's JVM compiles its hot paths in
    /// the first minute of load (a profile showed its JIT compiler using
    /// 30 % of the broker's CPU), and the services' caches fill.
    #[arg(long, default_value = "40s", value_parser = humantime::parse_duration)]
    pub warm_up: Duration,
    /// How long the choreography's processes (the broker included) are
    /// measured while idle: logged in, no load.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub idle: Duration,
    /// The client quota of the tap scenario's third run (fetched bytes per
    /// second, what `storefront up` sets for analytics consumers); 0: no third run.
    #[arg(long, default_value_t = crate::analytics_tap::DEFAULT_ANALYTICS_BYTE_RATE)]
    pub tap_quota: u64,
    /// Also measure the choreography under other fetch.wait.max.ms, linger.ms and partition counts.
    #[arg(long)]
    pub tuning: bool,
    /// Sessions the load cycles through (each logged in once, through the choreography).
    #[arg(long, default_value_t = 200)]
    pub sessions: usize,
    /// The page deadline of every design.
    #[arg(long, default_value_t = storefront_schemas::DEFAULT_PAGE_DEADLINE_MS)]
    pub deadline_ms: u64,
    /// A short run that only shows the bench works: the small data set,
    /// 3-second scenarios at 50/s, two capacity rates, no tuning.
    #[arg(long)]
    pub smoke: bool,
    /// Write the report (Markdown) here as well as to stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the capacity curve (SVG) here.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Also write every figure as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Where the broker's data and the processes' logs go (default: a new temporary directory).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// How many Kafka nodes: 1 (what `storefront up` runs) or 3 (topics
    /// with three replicas, min.insync.replicas=2).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=9))]
    pub brokers: u32,
    /// The data set (default: what `storefront up` seeds).
    #[command(flatten)]
    pub seed: SeedConfig,
}

impl BenchConfig {
    fn smoke(mut self) -> Self {
        self.rate = 50.0;
        self.duration = Duration::from_secs(3);
        self.capacity_rates = vec![50.0, 100.0];
        self.capacity_step = Duration::from_secs(2);
        self.idle = Duration::from_secs(2);
        self.warm_up = Duration::from_secs(1);
        self.tuning = false;
        self.sessions = 20;
        self.seed = SeedConfig::small();
        self
    }
}

/// What every design shares: the binary, the broker, the data, the sessions.
struct Bench {
    config: BenchConfig,
    storefront: PathBuf,
    work_dir: PathBuf,
    broker: Cluster,
    kafka: KafkaSettings,
    seed: SeedConfig,
    /// Keys, broker address, deadline: the environment of every process.
    env: Vec<(String, String)>,
    started: Instant,
}

/// One design's processes, running.
struct Deployment {
    design: Design,
    processes: Vec<ServiceProcess>,
    redis: Option<Redis>,
    target: Target,
}

/// Runs the bench with `storefront`, the binary that runs each service.
pub async fn run(
    config: BenchConfig,
    storefront: &Path,
    command: String,
) -> anyhow::Result<BenchReport> {
    let config = if config.smoke { config.smoke() } else { config };
    let work_dir = config.work_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("storefront-bench-{}", std::process::id()))
    });
    std::fs::create_dir_all(&work_dir)?;
    let started = Instant::now();
    let broker = Cluster::launch(work_dir.join("kafka"), config.brokers, Ports::Free).await?;
    let kafka = broker.kafka_settings();
    let addr = kafka.bootstrap_servers.clone();
    let seed = config.seed.clone();
    progress(
        started,
        &format!(
            "broker on {addr}; seeding (data and logs in {})",
            work_dir.display()
        ),
    );
    seed::seed(&kafka, &seed).await?;
    let mut env: Vec<(String, String)> = keys::generate_env()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    env.extend([
        ("KAFKA_BOOTSTRAP_SERVERS".to_owned(), addr),
        (
            "STOREFRONT_REPLICATION_FACTOR".to_owned(),
            kafka.replication_factor.to_string(),
        ),
        (
            "STOREFRONT_PAGE_DEADLINE_MS".to_owned(),
            config.deadline_ms.to_string(),
        ),
        ("RUST_LOG".to_owned(), "warn".to_owned()),
        // Every session logs in from the bench's one address.
        (
            "STOREFRONT_LOGIN_ATTEMPTS_PER_ADDRESS".to_owned(),
            "1000000".to_owned(),
        ),
    ]);
    let mut bench = Bench {
        config,
        storefront: storefront.to_owned(),
        work_dir,
        broker,
        kafka,
        seed,
        env,
        started,
    };
    let mut report = BenchReport {
        command,
        machine: format!(
            "{}; broker: Apache Kafka {}, {} node(s)",
            machine(),
            broker::kafka_version(),
            bench.config.brokers
        ),
        deadline_ms: bench.config.deadline_ms,
        ..BenchReport::default()
    };
    let mut sessions = None;
    for design in bench.config.designs.clone() {
        if design != Design::Choreography && sessions.is_none() {
            // The baselines serve the sessions the choreography opened.
            let deployment = bench.deploy(Design::Choreography, &[], None).await?;
            sessions = Some(bench.log_in(&deployment, &mut report).await?);
            bench.tear_down(deployment, &mut report, false).await;
        }
        let mut deployment = bench.deploy(design, &[], sessions.as_ref()).await?;
        if design == Design::Choreography {
            sessions = Some(bench.log_in(&deployment, &mut report).await?);
            deployment.target =
                bench.target(design, &deployment, sessions.as_ref().expect("logged in"));
            bench.idle(&deployment, &mut report).await;
            let floor_kafka = KafkaSettings {
                topic_prefix: "bench-floor.".into(),
                ..bench.kafka.clone()
            };
            progress(bench.started, "measuring the broker's floor");
            report.floor =
                Some(floor::measure(&floor_kafka, bench.config.rate, bench.config.duration).await?);
        }
        // The capacity curve on the fresh deployment, before any fault
        // scenario restarts a service (a restarted consumer catches up for a while).
        let (faults, calm): (Vec<Scenario>, Vec<Scenario>) = bench
            .config
            .scenarios
            .iter()
            .partition(|s| !matches!(s, Scenario::Healthy | Scenario::Tap));
        bench.warm_up(&deployment).await;
        bench.scenarios(&mut deployment, &calm, &mut report).await?;
        bench.capacity(&deployment, &mut report).await;
        bench
            .scenarios(&mut deployment, &faults, &mut report)
            .await?;
        bench.tear_down(deployment, &mut report, true).await;
    }
    if bench.config.tuning {
        bench.tuning(&mut report).await?;
    }
    progress(bench.started, "done");
    tokio::task::spawn_blocking(move || bench.broker.stop()).await?;
    Ok(report)
}

/// CPU ticks of every node of the cluster together, if all can be read.
fn broker_ticks(broker: &Cluster) -> Option<u64> {
    broker
        .nodes()
        .iter()
        .map(|n| n.pid().and_then(processes::cpu_ticks))
        .sum()
}

/// CPU time `used` over `wall`, as a share of one core in percent.
fn share_of_core(used: Duration, wall: Duration) -> f64 {
    used.as_secs_f64() / wall.as_secs_f64() * 100.0
}

fn progress(started: Instant, what: &str) {
    eprintln!("[{:>6.1}s] {what}", started.elapsed().as_secs_f64());
}

/// The CPU model, core count and memory of this machine.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    format!("{model}, {cores} cores available, {memory_gib:.0} GiB; every process on this machine")
}

impl Bench {
    /// Starts `design`'s processes with `extra_env` and waits until they are ready.
    async fn deploy(
        &self,
        design: Design,
        extra_env: &[(&str, &str)],
        sessions: Option<&Sessions>,
    ) -> anyhow::Result<Deployment> {
        progress(self.started, &format!("starting {design}"));
        let mut env = self.env.clone();
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let redis = match design {
            Design::Redis => Some(Redis::start(&self.work_dir).await?),
            _ => None,
        };
        let specs = process_specs(design, redis.as_ref().map(|r| r.url.as_str()))?;
        let mut processes = Vec::new();
        for spec in &specs {
            let args: Vec<&str> = spec.args.iter().map(String::as_str).collect();
            let log = self.work_dir.join(format!("{design}-{}.log", spec.name));
            let mut env = env.clone();
            // One instance of each: named, so that a restart takes its
            // partitions back at once, and checkpointed.
            env.extend([
                ("STOREFRONT_INSTANCE_ID".to_owned(), spec.name.to_owned()),
                (
                    "STOREFRONT_STATE_DIR".to_owned(),
                    self.work_dir.join("state").display().to_string(),
                ),
            ]);
            processes.push(ServiceProcess::spawn(
                &self.storefront,
                spec.name,
                &args,
                spec.addr,
                env,
                log,
            )?);
        }
        for process in &processes {
            process.wait_ready(Duration::from_secs(300)).await?;
        }
        let mut deployment = Deployment {
            design,
            processes,
            redis,
            target: Target {
                url: String::new(),
                header: "",
                sessions: Arc::new(vec![]),
            },
        };
        if let Some(sessions) = sessions {
            deployment.target = self.target(design, &deployment, sessions);
        }
        Ok(deployment)
    }

    /// How the load reaches `design`'s gateway.
    fn target(&self, design: Design, deployment: &Deployment, sessions: &Sessions) -> Target {
        let gateway = deployment.process("gateway").addr;
        let url = format!("http://{gateway}/api/page");
        match design {
            Design::Choreography => Target {
                url,
                header: "cookie",
                sessions: Arc::new(sessions.cookies.clone()),
            },
            _ => Target {
                url,
                header: BASELINE_SESSION_HEADER,
                sessions: Arc::new(sessions.ids.clone()),
            },
        }
    }

    /// Logs the sessions' users in through the choreography's gateway, a few at a time.
    async fn log_in(
        &self,
        deployment: &Deployment,
        report: &mut BenchReport,
    ) -> anyhow::Result<Sessions> {
        progress(
            self.started,
            &format!("logging {} users in", self.config.sessions),
        );
        let gateway = deployment.process("gateway").addr;
        let client = reqwest::Client::new();
        let mut sessions = Sessions::default();
        let mut latencies = Vec::new();
        let users = self.config.sessions.min(self.seed.customers);
        let started = Instant::now();
        for batch in (1..=users).collect::<Vec<_>>().chunks(8) {
            let mut logins = tokio::task::JoinSet::new();
            for &user in batch {
                let client = client.clone();
                logins.spawn(async move {
                    // A deployment that has just started may still be
                    // settling its consumer groups: a login may time out.
                    let mut attempt = 0;
                    loop {
                        attempt += 1;
                        let sent = Instant::now();
                        let response = client
                            .post(format!("http://{gateway}/api/login"))
                            .json(&serde_json::json!({
                                "username": format!("user{user}"),
                                "password": format!("user{user}-password"),
                            }))
                            .send()
                            .await?;
                        let status = response.status();
                        let cookie = response
                            .headers()
                            .get("set-cookie")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.split(';').next())
                            .map(str::to_owned);
                        match cookie {
                            Some(cookie) => return anyhow::Ok((cookie, sent.elapsed())),
                            None if attempt < LOGIN_ATTEMPTS && status.is_server_error() => {
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                            None => anyhow::bail!("user{user}: no session cookie ({status})"),
                        }
                    }
                });
            }
            while let Some(login) = logins.join_next().await {
                let (cookie, latency) = login??;
                let id = cookie
                    .trim_start_matches("sf_session=")
                    .split('.')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                sessions.cookies.push(cookie);
                sessions.ids.push(id);
                latencies.push(latency);
            }
        }
        report.logins = Some(load::Summary::of_latencies(&latencies, started.elapsed()));
        Ok(sessions)
    }

    /// Runs every scenario on `deployment`, noting each process's CPU during the healthy one.
    async fn scenarios(
        &mut self,
        deployment: &mut Deployment,
        scenarios: &[Scenario],
        report: &mut BenchReport,
    ) -> anyhow::Result<()> {
        let (rate, duration) = (self.config.rate, self.config.duration);
        for &scenario in scenarios {
            if scenario == Scenario::Tap && deployment.design != Design::Choreography {
                continue;
            }
            progress(
                self.started,
                &format!(
                    "{}: {scenario} at {rate}/s for {duration:?}",
                    deployment.design
                ),
            );
            let third = duration / 3;
            let summary = match scenario {
                Scenario::Healthy => {
                    let before = deployment.cpu_times(&self.broker);
                    let started = Instant::now();
                    let summary = load::run(&deployment.target, &[Phase { rate, duration }]).await;
                    let wall = started.elapsed();
                    let after = deployment.cpu_times(&self.broker);
                    for ((name, b, _), (_, a, pid)) in before.iter().zip(&after) {
                        let peak_kib = pid.and_then(processes::peak_rss_kib).unwrap_or(0);
                        report.processes.push(ProcessUse {
                            design: deployment.design,
                            process: name.clone(),
                            cpu_percent: share_of_core(a.saturating_sub(*b), wall),
                            peak_rss_mib: peak_kib as f64 / 1024.0,
                        });
                    }
                    summary
                }
                Scenario::SlowAds => {
                    let ads = deployment.process_mut("ads");
                    ads.set_env(INJECT_DELAY_MS, "300");
                    ads.set_env(INJECT_DELAY_FRACTION, "0.2");
                    ads.restart_gracefully().await?;
                    let summary = load::run(&deployment.target, &[Phase { rate, duration }]).await;
                    let ads = deployment.process_mut("ads");
                    ads.set_env(INJECT_DELAY_MS, "0");
                    ads.set_env(INJECT_DELAY_FRACTION, "0");
                    ads.restart_gracefully().await?;
                    summary
                }
                Scenario::Killed => {
                    let target = deployment.target.clone();
                    let load = tokio::spawn(async move {
                        load::run(&target, &[Phase { rate, duration }]).await
                    });
                    tokio::time::sleep(third).await;
                    let design = deployment.design;
                    let history = deployment.process_mut("history");
                    let ready_in = history.kill_and_restart(Duration::from_secs(5)).await?;
                    let ready_ms = ready_in.as_secs_f64() * 1000.0;
                    progress(
                        self.started,
                        &format!(
                            "{design}: {} ready {ready_ms:.0} ms after its restart",
                            history.name
                        ),
                    );
                    report.restarts.push(Restart {
                        design,
                        process: history.name.clone(),
                        ready_ms,
                    });
                    load.await?
                }
                Scenario::Burst => {
                    let burst = Duration::from_secs(5);
                    let phases = [
                        Phase {
                            rate,
                            duration: third,
                        },
                        Phase {
                            rate: rate * 5.0,
                            duration: burst,
                        },
                        Phase {
                            rate,
                            duration: duration.saturating_sub(third).max(third),
                        },
                    ];
                    let summary = load::run(&deployment.target, &phases).await;
                    let burst_end_secs = (third + burst).as_secs_f64();
                    report.burst_recoveries.push(BurstRecovery {
                        design: deployment.design,
                        burst_end_secs,
                        settled_after_secs: summary
                            .settled_after(burst_end_secs, report::SUSTAINED_P99_MS),
                    });
                    summary
                }
                Scenario::Tap => self.tap(deployment, report).await?,
            };
            report.scenarios.push(ScenarioResult {
                design: deployment.design,
                scenario,
                rate,
                summary,
            });
            // Let queues drain before the next scenario.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        Ok(())
    }

    /// The scenario rate without a tap, with `storefront analytics-tap`
    /// replaying every topic beside it, with the tap under the analytics
    /// client quota, with the tap at idle CPU priority (as on a machine of
    /// its own), and without a tap again (the noise between two runs of the
    /// same thing); side by side in `report.taps`. The run with the
    /// unthrottled tap is the scenario's result.
    async fn tap(
        &self,
        deployment: &Deployment,
        report: &mut BenchReport,
    ) -> anyhow::Result<load::Summary> {
        let without = self.tap_run(deployment, None, "no tap").await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let tap = Tap::start(self, false).await?;
        progress(
            self.started,
            &format!(
                "choreography: analytics tap replaying every topic ({})",
                tap.log.display()
            ),
        );
        let with_tap = self.tap_run(deployment, Some(&tap), "the tap").await;
        let mut quota = None;
        if self.config.tap_quota > 0 {
            // What `storefront up` does for analytics consumers.
            let client_id = crate::analytics_tap::client_id(&self.kafka);
            let limit = self.config.tap_quota;
            let quotas = |rate| {
                storefront_runtime::quotas::set_consumer_byte_rate(&self.kafka, &client_id, rate)
            };
            quotas(Some(limit)).await?;
            // The broker measures a rate over 11 one-second windows, and the
            // tap still decodes what it fetched before: let both pass.
            tokio::time::sleep(self.config.duration.min(Duration::from_secs(15))).await;
            let run = self
                .tap_run(deployment, Some(&tap), "the tap under the quota")
                .await;
            quotas(None).await?;
            quota = Some(QuotaRun {
                consumer_byte_rate: limit,
                run,
            });
        }
        tap.stop().await;
        // The tap as on a machine of its own: it takes only CPU that nothing
        // else wants (SCHED_IDLE), so what is left is its cost to the broker.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let tap = Tap::start(self, true).await?;
        let idle_priority = self
            .tap_run(deployment, Some(&tap), "the tap at idle CPU priority")
            .await;
        tap.stop().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let without_after = self.tap_run(deployment, None, "no tap again").await;
        let result = with_tap.summary.clone();
        report.taps.push(TapResult {
            rate: self.config.rate,
            duration_secs: self.config.duration.as_secs_f64(),
            without,
            with_tap,
            quota,
            idle_priority,
            without_after,
        });
        Ok(result)
    }

    /// One run of the tap scenario: the load, the broker's CPU, and what
    /// `tap` (if any) read meanwhile.
    async fn tap_run(&self, deployment: &Deployment, tap: Option<&Tap>, what: &str) -> TapRun {
        let (rate, duration) = (self.config.rate, self.config.duration);
        let before = (tap.map(Tap::progress), tap.map(Tap::cpu_ticks));
        let broker_before = broker_ticks(&self.broker);
        let started = Instant::now();
        let summary = load::run(&deployment.target, &[Phase { rate, duration }]).await;
        let wall = started.elapsed();
        let broker_after = broker_ticks(&self.broker);
        let read = match (tap, before) {
            (Some(tap), (Some(progress), Some(ticks))) => Some(TapRead::between(
                &progress,
                &tap.progress(),
                wall,
                tap.cpu_ticks().saturating_sub(ticks),
            )),
            _ => None,
        };
        let broker_cpu_percent = match (broker_before, broker_after) {
            (Some(b), Some(a)) => {
                share_of_core(processes::ticks_to_duration(a.saturating_sub(b)), wall)
            }
            _ => f64::NAN,
        };
        progress(
            self.started,
            &format!(
                "choreography, {what}: p99 {:.1} ms, broker CPU {broker_cpu_percent:.0} %{}",
                summary.p99_ms,
                read.as_ref().map_or(String::new(), |r| format!(
                    ", the tap read {:.1} MiB/s",
                    r.mib_per_sec
                ))
            ),
        );
        TapRun {
            summary,
            broker_cpu_percent,
            tap: read,
        }
    }

    /// Serves the scenario rate for the warm-up, measuring nothing.
    async fn warm_up(&self, deployment: &Deployment) {
        let (rate, duration) = (self.config.rate, self.config.warm_up);
        if duration.is_zero() {
            return;
        }
        progress(
            self.started,
            &format!(
                "{}: warming up at {rate}/s for {duration:?}",
                deployment.design
            ),
        );
        load::run(&deployment.target, &[Phase { rate, duration }]).await;
    }

    /// Climbs the capacity rates until the design stops keeping up.
    async fn capacity(&self, deployment: &Deployment, report: &mut BenchReport) {
        for &rate in &self.config.capacity_rates {
            progress(
                self.started,
                &format!("{}: capacity at {rate}/s", deployment.design),
            );
            let summary = load::run(
                &deployment.target,
                &[Phase {
                    rate,
                    duration: self.config.capacity_step,
                }],
            )
            .await;
            let overwhelmed = summary.p99_ms > 1000.0 || summary.lost > 0;
            report.capacity.push(CapacityPoint {
                design: deployment.design,
                rate,
                summary,
            });
            tokio::time::sleep(Duration::from_secs(2)).await;
            if overwhelmed {
                break;
            }
        }
    }

    /// Each process's CPU while the deployment serves nothing.
    async fn idle(&self, deployment: &Deployment, report: &mut BenchReport) {
        progress(
            self.started,
            &format!("{}: idle for {:?}", deployment.design, self.config.idle),
        );
        let before = deployment.cpu_times(&self.broker);
        let started = Instant::now();
        tokio::time::sleep(self.config.idle).await;
        let wall = started.elapsed();
        let after = deployment.cpu_times(&self.broker);
        for ((name, b, _), (_, a, _)) in before.iter().zip(&after) {
            report.idle.push(IdleUse {
                design: deployment.design,
                process: name.clone(),
                cpu_percent: share_of_core(a.saturating_sub(*b), wall),
            });
        }
        report.idle_secs = wall.as_secs_f64();
    }

    /// The choreography with one Kafka client setting changed at a time.
    async fn tuning(&self, report: &mut BenchReport) -> anyhow::Result<()> {
        let variants: [(&str, &str, &str); 7] = [
            ("fetch.wait.max.ms=10", "STOREFRONT_FETCH_WAIT_MS", "10"),
            ("fetch.wait.max.ms=100", "STOREFRONT_FETCH_WAIT_MS", "100"),
            (
                "fetch.wait.max.ms=500 (default)",
                "STOREFRONT_FETCH_WAIT_MS",
                "500",
            ),
            ("linger.ms=0", "STOREFRONT_LINGER_MS", "0"),
            ("linger.ms=5", "STOREFRONT_LINGER_MS", "5"),
            ("partitions=1", "STOREFRONT_PARTITIONS", "1"),
            ("partitions=6", "STOREFRONT_PARTITIONS", "6"),
        ];
        for (setting, key, value) in variants {
            if let Err(error) = self.tune(setting, key, value, report).await {
                progress(
                    self.started,
                    &format!("tuning: {setting} failed: {error:#}"),
                );
                report.tuning_failures.push(format!("{setting}: {error:#}"));
            }
        }
        Ok(())
    }

    /// The choreography with `key=value`, at the scenarios' rate.
    async fn tune(
        &self,
        setting: &str,
        key: &str,
        value: &str,
        report: &mut BenchReport,
    ) -> anyhow::Result<()> {
        let mut extra = vec![(key, value)];
        // Another partition count needs topics of its own.
        let prefix = format!("bench-partitions-{value}.");
        if key == "STOREFRONT_PARTITIONS" {
            let kafka = KafkaSettings {
                topic_prefix: prefix.clone(),
                partitions: value.parse()?,
                ..self.kafka.clone()
            };
            progress(self.started, &format!("tuning: seeding {prefix}"));
            seed::seed(&kafka, &self.seed).await?;
            extra.push(("STOREFRONT_TOPIC_PREFIX", &prefix));
        }
        let mut deployment = self.deploy(Design::Choreography, &extra, None).await?;
        let mut ignored = BenchReport::default();
        let sessions = self.log_in(&deployment, &mut ignored).await?;
        deployment.target = self.target(Design::Choreography, &deployment, &sessions);
        progress(self.started, &format!("tuning: {setting}"));
        let before = broker_ticks(&self.broker);
        let started = Instant::now();
        let summary = load::run(
            &deployment.target,
            &[Phase {
                rate: self.config.rate,
                duration: self.config.duration,
            }],
        )
        .await;
        let wall = started.elapsed();
        let after = broker_ticks(&self.broker);
        let broker_cpu = match (before, after) {
            (Some(b), Some(a)) => {
                share_of_core(processes::ticks_to_duration(a.saturating_sub(b)), wall)
            }
            _ => f64::NAN,
        };
        report.tuning.push(TuningResult {
            setting: setting.to_owned(),
            rate: self.config.rate,
            summary,
            broker_cpu_percent: broker_cpu,
        });
        self.tear_down(deployment, &mut ignored, false).await;
        Ok(())
    }

    /// Stops a deployment, noting each process's peak memory when `record`.
    async fn tear_down(&self, deployment: Deployment, report: &mut BenchReport, record: bool) {
        let design = deployment.design;
        for process in deployment.processes {
            let name = process.name.clone();
            let kib = process.stop().await;
            if record {
                let mib = kib as f64 / 1024.0;
                match report
                    .processes
                    .iter_mut()
                    .find(|p| p.design == design && p.process == name)
                {
                    Some(usage) => usage.peak_rss_mib = mib,
                    None => report.processes.push(ProcessUse {
                        design,
                        process: name,
                        cpu_percent: f64::NAN,
                        peak_rss_mib: mib,
                    }),
                }
            }
        }
        if let Some(redis) = deployment.redis {
            let kib = redis.stop().await;
            if record {
                if let Some(usage) = report
                    .processes
                    .iter_mut()
                    .find(|p| p.design == design && p.process == "redis-server")
                {
                    usage.peak_rss_mib = kib as f64 / 1024.0;
                }
            }
        }
        // Give the machine back before the next design.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

impl Deployment {
    /// The process whose name starts with `role` (`history` finds `history-svc`).
    fn process(&self, role: &str) -> &ServiceProcess {
        self.processes
            .iter()
            .find(|p| p.name.starts_with(role))
            .unwrap_or_else(|| panic!("{} has no {role} process", self.design))
    }

    fn process_mut(&mut self, role: &str) -> &mut ServiceProcess {
        let design = self.design;
        self.processes
            .iter_mut()
            .find(|p| p.name.starts_with(role))
            .unwrap_or_else(|| panic!("{design} has no {role} process"))
    }

    /// CPU time so far and process ID of each process, the broker's, Redis's and the bench's own included.
    fn cpu_times(&self, broker: &Cluster) -> Vec<(String, Duration, Option<u32>)> {
        let mut times: Vec<(String, Duration, Option<u32>)> = self
            .processes
            .iter()
            .map(|p| (p.name.clone(), p.cpu_time(), p.pid()))
            .collect();
        let mut other = |name: &str, pid: Option<u32>| {
            let ticks = pid.and_then(processes::cpu_ticks).unwrap_or(0);
            times.push((name.to_owned(), processes::ticks_to_duration(ticks), pid));
        };
        for node in broker.nodes() {
            match broker.nodes().len() {
                1 => other("broker", node.pid()),
                _ => other(&format!("broker-{}", node.id), node.pid()),
            }
        }
        if let Some(redis) = &self.redis {
            other("redis-server", redis.pid());
        }
        other("bench (load generator)", Some(std::process::id()));
        times
    }
}

/// The sessions the load uses: the cookie for the choreography, the bare ID for the baselines.
#[derive(Debug, Clone, Default)]
struct Sessions {
    cookies: Vec<String>,
    ids: Vec<String>,
}

/// How one process of a design is started.
struct ProcessSpec {
    name: &'static str,
    args: Vec<String>,
    addr: SocketAddr,
}

/// Tries of each login before the bench gives up.
const LOGIN_ATTEMPTS: u32 = 5;
const INJECT_DELAY_MS: &str = "STOREFRONT_ADS_INJECT_DELAY_MS";
const INJECT_DELAY_FRACTION: &str = "STOREFRONT_ADS_INJECT_DELAY_FRACTION";
const BASELINE_SESSION_HEADER: &str = "x-session-id";

/// The processes of `design`, on free ports.
fn process_specs(design: Design, redis_url: Option<&str>) -> anyhow::Result<Vec<ProcessSpec>> {
    let addr = || -> anyhow::Result<SocketAddr> {
        Ok(SocketAddr::from(([127, 0, 0, 1], broker::free_port()?)))
    };
    let run = |name: &'static str| -> anyhow::Result<ProcessSpec> {
        Ok(ProcessSpec {
            name,
            args: vec!["run".into(), name.into()],
            addr: addr()?,
        })
    };
    if design == Design::Choreography {
        return [
            "user-svc",
            "history-svc",
            "ads-svc",
            "aggregator",
            "gateway",
        ]
        .into_iter()
        .map(run)
        .collect();
    }
    let (user, history, ads, gateway) = (addr()?, addr()?, addr()?, addr()?);
    let design_name = design.to_string();
    let baseline = |name: &'static str, role: &str, addr: SocketAddr| {
        let mut args: Vec<String> = vec![
            "baseline".into(),
            "--design".into(),
            design_name.clone(),
            "--role".into(),
            role.into(),
            "--user-url".into(),
            format!("http://{user}"),
            "--history-url".into(),
            format!("http://{history}"),
            "--ads-url".into(),
            format!("http://{ads}"),
        ];
        if let Some(url) = redis_url {
            args.extend(["--redis-url".into(), url.to_owned()]);
        }
        ProcessSpec { name, args, addr }
    };
    Ok(vec![
        baseline("user", "user", user),
        baseline("history", "history", history),
        baseline("ads", "ads", ads),
        baseline("gateway", "gateway", gateway),
    ])
}

/// `storefront analytics-tap` as a child process, its progress lines in a file.
struct Tap {
    child: tokio::process::Child,
    log: PathBuf,
}

impl Tap {
    /// Starts it (at idle CPU priority: `chrt --idle`) and waits until it
    /// has read its first records.
    async fn start(bench: &Bench, idle_priority: bool) -> anyhow::Result<Self> {
        let log = bench.work_dir.join(if idle_priority {
            "analytics-tap-idle.log"
        } else {
            "analytics-tap.log"
        });
        let mut command = if idle_priority {
            let mut chrt = tokio::process::Command::new("chrt");
            chrt.args(["--idle", "0"]).arg(&bench.storefront);
            chrt
        } else {
            tokio::process::Command::new(&bench.storefront)
        };
        let child = command
            .arg("analytics-tap")
            .envs(bench.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("failed to start storefront analytics-tap")?;
        let tap = Self { child, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        while tap.progress().records == 0 {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the analytics tap read nothing in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(tap)
    }

    /// Its last progress line.
    fn progress(&self) -> crate::analytics_tap::TapProgress {
        std::fs::read_to_string(&self.log)
            .ok()
            .and_then(|text| {
                text.lines()
                    .rev()
                    .find_map(|line| serde_json::from_str(line).ok())
            })
            .unwrap_or_default()
    }

    fn cpu_ticks(&self) -> u64 {
        self.child.id().and_then(processes::cpu_ticks).unwrap_or(0)
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A redis-server of the bench's own.
struct Redis {
    url: String,
    server: storefront_baselines::redis::RedisServer,
}

impl Redis {
    async fn start(work_dir: &Path) -> anyhow::Result<Self> {
        let server = storefront_baselines::redis::RedisServer::start(work_dir).await?;
        Ok(Self {
            url: server.url(),
            server,
        })
    }

    fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    async fn stop(self) -> u64 {
        let kib = self.pid().and_then(processes::peak_rss_kib).unwrap_or(0);
        self.server.stop().await;
        kib
    }
}

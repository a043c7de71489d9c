use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use storefront::{
    analytics_tap::{self, TapArgs},
    bench::{self, BenchConfig},
    broker::{self, Cluster, Ports},
    chaos::{self, ChaosConfig},
    console::{self, Console, ConsoleSettings},
    dlq, keys,
    replay::{self, ReplayArgs},
    schemas,
    seed::{self, SeedConfig},
    stack::{Service, StackConfig},
    tail::{self, TailArgs},
    trace,
    when::parse_time,
};
use storefront_runtime::{KafkaSettings, TelemetrySettings};

/// The storefront event backbone.
#[derive(Parser)]
#[command(name = "storefront", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Bring the whole storefront up: the embedded broker (unless
    /// KAFKA_BOOTSTRAP_SERVERS is set), topics, seed data, all five services.
    Up(UpArgs),
    /// Write the deterministic seed data set to the reference topics.
    Seed {
        #[command(flatten)]
        kafka: KafkaSettings,
        #[command(flatten)]
        config: SeedConfig,
    },
    /// Print fresh keys as .env lines (user-svc's key pair, the cookie key).
    Keygen,
    /// Run one service in this process, as its own binary does.
    #[command(subcommand)]
    Run(RunService),
    /// Run one role (gateway, user, history, ads) of a baseline design
    /// (chain, fanout, redis) that the benchmarks compare the choreography with.
    Baseline(storefront_baselines::Settings),
    /// The fault suite: steady load while every service is killed and
    /// restarted, the broker stopped and started, one service frozen; then
    /// counts what was answered, lost and duplicated. Fails if any was lost
    /// or duplicated.
    Chaos(ChaosConfig),
    /// List dead letters, or re-publish them to their source topic.
    Dlq {
        #[command(flatten)]
        kafka: KafkaSettings,
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Every record of one request or session across all topics, in time
    /// order, decoded; reads only the partitions that can hold the session.
    Trace {
        #[command(flatten)]
        kafka: KafkaSettings,
        /// A request ID or a session ID.
        id: String,
        /// From this time (2026-12-01T10:00:00Z, 15m for 15 minutes ago, Unix ms);
        /// default: a little before the ID was made.
        #[arg(long, value_parser = parse_time)]
        since: Option<i64>,
        /// Up to this time; default: 20 minutes after a request began, now for a session.
        #[arg(long, value_parser = parse_time)]
        until: Option<i64>,
        /// The timeline as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Follow topics live, decoded, filtered by key, header or field values.
    Tail {
        #[command(flatten)]
        kafka: KafkaSettings,
        #[command(flatten)]
        args: TailArgs,
    },
    /// Re-drive the requests of a time range through a copy of the workflow
    /// in an isolated namespace and print how each replayed page differs
    /// from the recorded one.
    Replay {
        #[command(flatten)]
        kafka: KafkaSettings,
        #[command(flatten)]
        args: ReplayArgs,
        /// user-svc's secret key, which opens the recorded logins' passwords
        /// (default: the one in the data directory's keys.env).
        #[arg(long, env = keys::SECRET_KEY_VAR, hide_env_values = true)]
        user_svc_secret_key: Option<String>,
        #[arg(long, env = "STOREFRONT_DATA_DIR", default_value = ".storefront")]
        data_dir: PathBuf,
    },
    /// The operator console alone (`up` starts one): the requests live, one
    /// request's timeline, lag, dead letters and replays, in a browser.
    Console {
        #[command(flatten)]
        kafka: KafkaSettings,
        #[command(flatten)]
        settings: ConsoleSettings,
        /// The operator token (default: the one in the data directory's keys.env).
        #[arg(long, env = keys::CONSOLE_TOKEN_VAR, hide_env_values = true)]
        token: Option<String>,
        /// user-svc's secret key, for replays of ranges that hold logins
        /// (default: the one in the data directory's keys.env, if any).
        #[arg(long, env = keys::SECRET_KEY_VAR, hide_env_values = true)]
        user_svc_secret_key: Option<String>,
        #[arg(long, env = "STOREFRONT_DATA_DIR", default_value = ".storefront")]
        data_dir: PathBuf,
        #[arg(long, env = "STOREFRONT_PAGE_DEADLINE_MS", default_value_t = storefront_schemas::DEFAULT_PAGE_DEADLINE_MS)]
        page_deadline_ms: u64,
    },
    /// Benchmark the choreography against a serial HTTP chain, a parallel
    /// HTTP fan-out and Redis polling, and against the broker's own floor.
    Bench(BenchConfig),
    /// Read every topic from the beginning at full speed, again and again,
    /// as an analytics job replaying history would (client id
    /// `<prefix>analytics`); prints what it read every second. The bench's
    /// tap scenario runs it.
    AnalyticsTap {
        #[command(flatten)]
        kafka: KafkaSettings,
        #[command(flatten)]
        args: TapArgs,
    },
    /// Every schema on the topics, current and earlier versions, with its fingerprint.
    Schemas {
        /// Print each schema's text too.
        #[arg(long)]
        text: bool,
        /// As JSON (texts included).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// One line per dead letter: position, time, service, source, reason.
    List(dlq::Selection),
    /// Write the selected dead letters back to their source topic and
    /// partition, unchanged but for a `dlq-republished-from` header.
    Republish {
        #[command(flatten)]
        selection: dlq::Selection,
        /// Re-publish every dead letter the selection matches, even with no filter.
        #[arg(long)]
        all: bool,
    },
}

/// The services `storefront run` can run.
#[derive(Subcommand)]
enum RunService {
    Gateway(gateway::Settings),
    UserSvc(user_svc::Settings),
    HistorySvc(history_svc::Settings),
    AdsSvc(ads_svc::Settings),
    Aggregator(aggregator::Settings),
}

impl RunService {
    async fn run(self) -> anyhow::Result<()> {
        let shutdown = Default::default();
        let service = match self {
            Self::Gateway(settings) => gateway::start(settings, shutdown).await,
            Self::UserSvc(settings) => user_svc::start(settings, shutdown).await,
            Self::HistorySvc(settings) => history_svc::start(settings, shutdown).await,
            Self::AdsSvc(settings) => ads_svc::start(settings, shutdown).await,
            Self::Aggregator(settings) => aggregator::start(settings, shutdown).await,
        }
        .context("failed to start")?;
        let name = service.name;
        service
            .run_until_signal()
            .await
            .with_context(|| format!("{name} failed"))
    }
}

#[derive(clap::Args)]
struct UpArgs {
    /// Use this Kafka instead of starting the embedded broker.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
    bootstrap_servers: Option<String>,
    /// Where the embedded broker's data and the keys live.
    #[arg(long, env = "STOREFRONT_DATA_DIR", default_value = ".storefront")]
    data_dir: PathBuf,
    /// Address of the storefront (the gateway).
    #[arg(long, env = "STOREFRONT_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
    /// Health and metrics address of user-svc; history-svc, ads-svc and the
    /// aggregator take the next three ports (0: free ports).
    #[arg(long, default_value = "127.0.0.1:8081")]
    services_addr: SocketAddr,
    /// Client port of the embedded broker's first node; node i takes
    /// `port + 2(i-1)`, and its controller the port after that.
    #[arg(long, default_value_t = 9092)]
    broker_port: u16,
    /// How many Kafka nodes to run: 1, or 3 for a cluster whose topics keep
    /// three replicas (min.insync.replicas=2) and survive a lost broker.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=9))]
    brokers: u32,
    #[arg(long, env = "STOREFRONT_TOPIC_PREFIX", default_value = "")]
    topic_prefix: String,
    #[arg(long, env = "STOREFRONT_PARTITIONS", default_value_t = 3)]
    partitions: i32,
    #[arg(long, env = "STOREFRONT_FETCH_WAIT_MS", default_value_t = 500)]
    fetch_wait_ms: u32,
    /// Fetched bytes per second (per broker) that analytics consumers, all
    /// under the client id `<prefix>analytics`, may take together: a Kafka
    /// client quota, so a replay of history cannot slow the pages. 0 removes it.
    #[arg(long, env = "STOREFRONT_ANALYTICS_BYTE_RATE", default_value_t = analytics_tap::DEFAULT_ANALYTICS_BYTE_RATE)]
    analytics_byte_rate: u64,
    #[arg(long, env = "STOREFRONT_PAGE_DEADLINE_MS", default_value_t = storefront_schemas::DEFAULT_PAGE_DEADLINE_MS)]
    page_deadline_ms: u64,
    /// How long login and `POST /api/pages` wait before answering 202.
    #[arg(long, env = "STOREFRONT_SYNC_BUDGET_MS", default_value_t = 2000)]
    sync_budget_ms: u64,
    /// Webhooks: the secret (else the one in the data directory's keys.env) and the allowed hosts.
    #[command(flatten)]
    callbacks: gateway::webhooks::CallbackSettings,
    /// The operator console's address and its link to a tracing UI.
    #[command(flatten)]
    console: ConsoleSettings,
    #[command(flatten)]
    seed: SeedConfig,
    #[command(flatten)]
    telemetry: TelemetrySettings,
}

fn main() -> anyhow::Result<()> {
    storefront_runtime::shutdown::run_main(serve())
}

async fn serve() -> anyhow::Result<()> {
    storefront_runtime::logs::init("info,librdkafka=warn");
    match Cli::parse().command {
        Command::Up(args) => up(args).await,
        Command::Seed { kafka, config } => {
            let report = seed::seed(&kafka, &config)
                .await
                .context("failed to seed")?;
            print_seed_report(&report);
            Ok(())
        }
        Command::Keygen => {
            print!("{}", keys::generate_env());
            Ok(())
        }
        Command::Run(service) => service.run().await,
        Command::Baseline(settings) => Ok(storefront_baselines::run_until_signal(settings).await?),
        Command::Dlq { kafka, command } => match command {
            DlqCommand::List(selection) => {
                println!("position\ttime_ms\tservice\tsource\treason");
                for letter in dlq::list(&kafka, &selection).await? {
                    println!("{}", dlq::describe(&letter));
                }
                Ok(())
            }
            DlqCommand::Republish { selection, all } => {
                let unfiltered = selection.source_topic.is_none()
                    && selection.service.is_none()
                    && selection.positions.is_empty();
                if unfiltered && !all {
                    anyhow::bail!(
                        "choose dead letters (--at, --source-topic, --service) or pass --all"
                    );
                }
                let letters = dlq::list(&kafka, &selection).await?;
                let n = dlq::republish(&kafka, &letters).await?;
                eprintln!("re-published {n} dead letters");
                Ok(())
            }
        },
        Command::Trace {
            kafka,
            id,
            since,
            until,
            json,
        } => {
            let trace =
                tokio::task::spawn_blocking(move || trace::trace(&kafka, &id, since, until))
                    .await??;
            if json {
                println!("{}", serde_json::to_string_pretty(&trace)?);
            } else {
                print!("{}", trace::render(&trace));
            }
            Ok(())
        }
        Command::Tail { kafka, args } => {
            tokio::task::spawn_blocking(move || {
                tail::tail(&kafka, &args, |record| {
                    let line = if args.json {
                        serde_json::to_string(record).unwrap_or_default()
                    } else {
                        tail::render_line(record)
                    };
                    println!("{line}");
                })
            })
            .await?
        }
        Command::Replay {
            kafka,
            args,
            user_svc_secret_key,
            data_dir,
        } => {
            let plan = {
                let (kafka, args) = (kafka.clone(), args.clone());
                tokio::task::spawn_blocking(move || replay::plan(&kafka, &args)).await??
            };
            eprint!("{}", replay::describe(&plan));
            if args.dry_run {
                eprintln!("Dry run: nothing was written.");
                return Ok(());
            }
            let keys_file = data_dir.join("keys.env");
            let unseal_key = match user_svc_secret_key {
                Some(key) => storefront_schemas::UnsealKey::parse(&key)?,
                None if keys_file.exists() => keys::load_or_create(&keys_file)?.unseal,
                None if plan.logins == 0 => storefront_schemas::UnsealKey::generate(),
                None => anyhow::bail!(
                    "the range holds logins: give user-svc's key ({}, or a keys.env in --data-dir)",
                    keys::SECRET_KEY_VAR
                ),
            };
            let report = replay::run(&kafka, plan, unseal_key).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", replay::render(&report));
            }
            Ok(())
        }
        Command::Console {
            kafka,
            settings,
            token,
            user_svc_secret_key,
            data_dir,
            page_deadline_ms,
        } => {
            let keys_file = data_dir.join("keys.env");
            let keys = keys_file
                .exists()
                .then(|| keys::load_or_create(&keys_file))
                .transpose()?;
            let token = match (token, &keys) {
                (Some(token), _) => keys::ConsoleToken::parse(&token)?,
                (None, Some(keys)) => keys.console.clone(),
                (None, None) => anyhow::bail!(
                    "no operator token: set {} or point --data-dir at a directory with keys.env",
                    keys::CONSOLE_TOKEN_VAR
                ),
            };
            let unseal_key = match user_svc_secret_key {
                Some(key) => Some(storefront_schemas::UnsealKey::parse(&key)?),
                None => keys.map(|k| k.unseal),
            };
            let running = console::start(
                Console {
                    kafka,
                    settings,
                    token,
                    unseal_key,
                    page_deadline_ms,
                },
                Default::default(),
            )
            .await
            .context("failed to start the console")?;
            println!("The operator console is at http://{}", running.http_addr);
            Ok(running.run_until_signal().await?)
        }
        Command::Bench(config) => {
            let storefront = std::env::current_exe().context("no path to this binary")?;
            let command = std::env::args().collect::<Vec<_>>().join(" ");
            let (out, svg, json) = (config.out.clone(), config.svg.clone(), config.json.clone());
            let report = bench::run(config, &storefront, command).await?;
            let markdown = report.markdown();
            println!("{markdown}");
            if let Some(path) = out {
                std::fs::write(&path, &markdown)?;
            }
            if let Some(path) = svg {
                std::fs::write(&path, report.capacity_svg())?;
            }
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
            }
            Ok(())
        }
        Command::AnalyticsTap { kafka, args } => {
            tokio::task::spawn_blocking(move || analytics_tap::run(&kafka, &args)).await??;
            Ok(())
        }
        Command::Schemas { text, json } => {
            let versions = schemas::versions();
            if json {
                println!("{}", serde_json::to_string_pretty(&versions)?);
            } else {
                print!("{}", schemas::render(&versions, text));
            }
            Ok(())
        }
        Command::Chaos(config) => {
            let storefront = std::env::current_exe().context("no path to this binary")?;
            let mut reports = Vec::new();
            for run in 1..=config.runs {
                let mut config = config.clone();
                if config.runs > 1 {
                    eprintln!("==> chaos run {run} of {}", config.runs);
                    config.work_dir = Some(chaos::work_dir(&config).join(format!("run-{run}")));
                }
                // Ctrl-C or SIGTERM ends the suite: dropping it stops the
                // services and the broker.
                let report = tokio::select! {
                    report = chaos::run(&config, &storefront) => report?,
                    () = storefront_runtime::shutdown::shutdown_signal() => {
                        anyhow::bail!("stopped by a signal; the services and the broker are stopped")
                    }
                };
                println!("{report}");
                if report.lost > 0 || report.duplicated > 0 {
                    anyhow::bail!(
                        "run {run}: {} lost and {} duplicated requests",
                        report.lost,
                        report.duplicated
                    );
                }
                reports.push(report);
            }
            if config.runs > 1 {
                println!("{}", chaos::summary(&reports));
            }
            Ok(())
        }
    }
}

fn print_seed_report(report: &seed::SeedReport) {
    for (topic, n) in &report.written {
        eprintln!("seeded {n} records into {topic}");
    }
    for (topic, n) in &report.skipped {
        eprintln!("{topic} already holds {n} records; left alone");
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir).context("failed to create the data directory")?;
    let (broker, bootstrap) = match &args.bootstrap_servers {
        Some(servers) => {
            eprintln!("Using Kafka at {servers} (KAFKA_BOOTSTRAP_SERVERS); no embedded broker.");
            (None, servers.clone())
        }
        None => {
            let dir = args.data_dir.join(match args.brokers {
                1 => "kafka".to_owned(),
                n => format!("kafka-{n}-nodes"),
            });
            let old_broker = args.data_dir.join("broker/nisshi.db");
            if old_broker.exists() {
                eprintln!(
                    "{} is the previous embedded broker's data (nisshi); Apache Kafka does not read it, and it is left alone.",
                    old_broker.display()
                );
            }
            eprintln!(
                "Starting Apache Kafka {} ({} node(s), data and logs in {})",
                broker::kafka_version(),
                args.brokers,
                dir.display()
            );
            let cluster = Cluster::launch(dir, args.brokers, Ports::From(args.broker_port)).await?;
            let bootstrap = cluster.bootstrap_servers();
            eprintln!("Kafka is up on {bootstrap}");
            (Some(cluster), bootstrap)
        }
    };
    let kafka = KafkaSettings {
        bootstrap_servers: bootstrap,
        topic_prefix: args.topic_prefix,
        partitions: args.partitions,
        replication_factor: args.brokers.min(3) as i32,
        fetch_wait_ms: args.fetch_wait_ms,
        linger_ms: 1,
        kafka_debug: None,
    };
    eprintln!("Seeding reference data (skipped where already there)...");
    let report = seed::seed(&kafka, &args.seed)
        .await
        .context("failed to seed")?;
    print_seed_report(&report);
    let analytics = analytics_tap::client_id(&kafka);
    let rate = (args.analytics_byte_rate > 0).then_some(args.analytics_byte_rate);
    storefront_runtime::quotas::set_consumer_byte_rate(&kafka, &analytics, rate)
        .await
        .context("failed to set the analytics client quota")?;
    match rate {
        Some(rate) => eprintln!(
            "Analytics consumers (client id {analytics:?}) may fetch {:.1} MiB/s per broker (a client quota).",
            rate as f64 / 1024.0 / 1024.0
        ),
        None => eprintln!("Analytics consumers (client id {analytics:?}) have no quota."),
    }

    let keys_file = args.data_dir.join("keys.env");
    let keys = keys::load_or_create(&keys_file)?;
    let mut callbacks = args.callbacks;
    callbacks.webhook_secret.get_or_insert(keys.webhook);
    let config = StackConfig {
        gateway_addr: args.http_addr,
        service_addr: args.services_addr,
        page_deadline_ms: args.page_deadline_ms,
        sync_budget_ms: args.sync_budget_ms,
        unseal_key: keys.unseal.clone(),
        cookie_key: keys.cookie,
        telemetry: args.telemetry,
        callbacks,
        // Read models restore from here at the next start.
        instance: storefront_runtime::InstanceSettings {
            state_dir: Some(args.data_dir.join("state")),
            ..Default::default()
        },
        ..StackConfig::new(kafka)
    };
    eprintln!("Starting the services (they load the reference data first)...");
    let stack = config
        .start_all(&Service::ALL, Duration::from_secs(300))
        .await?;
    for service in &stack.services {
        eprintln!(
            "  {:<12} http://{addr}/healthz  http://{addr}/metrics",
            service.name,
            addr = service.http_addr
        );
    }
    let console = console::start(
        Console {
            kafka: config.kafka.clone(),
            settings: args.console,
            token: keys.console,
            unseal_key: Some(keys.unseal),
            page_deadline_ms: args.page_deadline_ms,
        },
        Default::default(),
    )
    .await
    .context("failed to start the operator console")?;
    let url = format!("http://{}", stack.gateway_addr().expect("the gateway runs"));
    println!(
        "\nThe storefront is up at {url}  (log in as {} / {})\nThe operator console is at http://{}  (token: {} in {})\nCtrl-C stops everything.",
        seed::DEMO_USERNAME,
        seed::DEMO_PASSWORD,
        console.http_addr,
        keys::CONSOLE_TOKEN_VAR,
        keys_file.display()
    );

    storefront_runtime::shutdown::shutdown_signal().await;
    eprintln!("Stopping the console and the services...");
    console.stop().await;
    stack.stop().await;
    if let Some(broker) = broker {
        eprintln!("Stopping the broker...");
        tokio::task::spawn_blocking(move || broker.stop()).await?;
    }
    eprintln!("Stopped.");
    Ok(())
}

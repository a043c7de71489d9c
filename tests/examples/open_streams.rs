//! What open status streams cost the broker: a single-node broker of its
//! own, a small seeded stack with no aggregator (so no request finishes and
//! every stream stays open), then the broker's and this process's CPU over
//! the same window with no stream open and with N streams open (8 per
//! session, each on its own running request).
//!
//!   cargo run --release -p storefront-e2e --example open_streams [streams] [seconds]
//!
//! This process holds the gateway and the other services as well as the
//! clients, so its CPU is the gateway's plus theirs.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use reqwest::{header, Client, Method};
use storefront::processes;
use storefront_devstack::{
    broker::{Cluster, Ports},
    seed::{self, SeedConfig},
    stack::{Service, StackConfig},
};

/// Streams each session opens (the gateway's default cap per session).
const PER_SESSION: usize = 8;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let streams: usize = args.next().map_or(Ok(500), |a| a.parse())?;
    let seconds: u64 = args.next().map_or(Ok(30), |a| a.parse())?;
    let window = Duration::from_secs(seconds);

    let dir = tempfile::tempdir()?;
    let cluster = tokio::task::block_in_place(|| Cluster::start(dir.path(), 1, Ports::Free))?;
    let broker_pid = cluster.nodes()[0].pid().context("the broker's pid")?;
    let mut kafka = cluster.kafka_settings();
    kafka.topic_prefix = "streams.".into();
    let seed_config = SeedConfig::small();
    seed::seed(&kafka, &seed_config).await?;
    let mut config = StackConfig::new(kafka);
    config.sync_budget_ms = 0;
    // Streams stay open until two minutes past the deadline: past the run.
    config.page_deadline_ms = 600_000;
    let services = [
        Service::User,
        Service::History,
        Service::Ads,
        Service::Gateway,
    ];
    let stack = config.start_all(&services, Duration::from_secs(60)).await?;
    let base = format!("http://{}", stack.gateway_addr().context("a gateway")?);
    let client = Client::new();

    eprintln!("measuring {seconds} s with no stream open");
    let idle = measure(broker_pid, window).await;

    let sessions = streams.div_ceil(PER_SESSION);
    eprintln!("opening {streams} streams over {sessions} sessions");
    let open = Arc::new(AtomicUsize::new(0));
    let opening = Instant::now();
    let mut readers = Vec::new();
    for s in 0..sessions {
        let user = format!("user{}", s % seed_config.customers);
        let cookie = log_in(&client, &base, &user).await?;
        for _ in 0..PER_SESSION.min(streams - s * PER_SESSION) {
            let posted = Instant::now();
            let events_url = start_page(&client, &base, &cookie).await?;
            let streamed = Instant::now();
            let response = client
                .get(format!("{base}{events_url}"))
                .header(header::COOKIE, &cookie)
                .send()
                .await?;
            if !response.status().is_success() {
                bail!("the stream was refused: {}", response.status());
            }
            if std::env::var_os("OPEN_STREAMS_VERBOSE").is_some() {
                eprintln!("post {:?} open {:?}", streamed - posted, streamed.elapsed());
            }
            let open = open.clone();
            readers.push(tokio::spawn(async move {
                open.fetch_add(1, Ordering::Relaxed);
                let mut response = response;
                while let Ok(Some(_)) = response.chunk().await {}
                open.fetch_sub(1, Ordering::Relaxed);
            }));
        }
    }
    let opened_in = opening.elapsed();
    eprintln!("opened in {:.1} s", opened_in.as_secs_f64());
    tokio::time::sleep(Duration::from_secs(3)).await;
    eprintln!(
        "measuring {seconds} s with {} streams open",
        open.load(Ordering::Relaxed)
    );
    let busy = measure(broker_pid, window).await;
    let still_open = open.load(Ordering::Relaxed);

    println!("| streams open | broker CPU, % of a core | this process's CPU, % of a core | time to open them |");
    println!("| ---: | ---: | ---: | ---: |");
    println!("| 0 | {:.1} | {:.1} | |", idle.broker, idle.own);
    println!(
        "| {still_open} | {:.1} | {:.1} | {:.1} s |",
        busy.broker,
        busy.own,
        opened_in.as_secs_f64()
    );

    for reader in readers {
        reader.abort();
    }
    stack.stop().await;
    tokio::task::block_in_place(|| cluster.stop());
    Ok(())
}

/// CPU used over a window, as shares of one core.
struct Use {
    broker: f64,
    own: f64,
}

async fn measure(broker_pid: u32, window: Duration) -> Use {
    let own_pid = std::process::id();
    let ticks = || {
        (
            processes::cpu_ticks(broker_pid).unwrap_or_default(),
            processes::cpu_ticks(own_pid).unwrap_or_default(),
        )
    };
    let started = Instant::now();
    let before = ticks();
    tokio::time::sleep(window).await;
    let after = ticks();
    let wall = started.elapsed().as_secs_f64();
    let share = |ticks: u64| processes::ticks_to_duration(ticks).as_secs_f64() / wall * 100.0;
    Use {
        broker: share(after.0 - before.0),
        own: share(after.1 - before.1),
    }
}

/// Logs in without waiting for the page: the 202 carries the cookie.
async fn log_in(client: &Client, base: &str, user: &str) -> anyhow::Result<String> {
    let response = client
        .post(format!("{base}/api/login"))
        .header("prefer", "respond-async")
        .json(&serde_json::json!({"username": user, "password": format!("{user}-password")}))
        .send()
        .await?;
    let cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    cookie.with_context(|| format!("no cookie from a login: {}", response.status()))
}

/// Starts a page request that runs on; its events URL.
async fn start_page(client: &Client, base: &str, cookie: &str) -> anyhow::Result<String> {
    let response = client
        .request(Method::POST, format!("{base}/api/pages"))
        .header(header::COOKIE, cookie)
        .header("prefer", "respond-async")
        .send()
        .await?;
    if response.status() != reqwest::StatusCode::ACCEPTED {
        bail!("a page request got {}", response.status());
    }
    let body: serde_json::Value = response.json().await?;
    body["events_url"]
        .as_str()
        .map(str::to_owned)
        .context("no events_url")
}

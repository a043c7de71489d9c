//! storefront-baselines: the designs the event choreography replaces, built
//! as small real services for the benchmarks (issue 7): a serial HTTP chain
//! (`chain`), a parallel HTTP fan-out joined in the gateway (`fanout`), and
//! services passing work and results through Redis while the gateway polls
//! (`redis`). Each role (gateway, user, history, ads) runs as its own
//! process (`storefront baseline --design D --role R`) with the business
//! logic of the real services (user-svc's sessions, the read models,
//! ads-svc's ranking, the aggregator's join) over the same Kafka topics.

pub mod parts;
pub mod redis;

mod backends;
mod gateway;
mod http;
mod queues;

use std::{net::SocketAddr, time::Duration};

use storefront_runtime::{
    health, reference::REFERENCE_LOADED, service::serve_http, KafkaSettings, Readiness,
    RunningService, Telemetry,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use self::redis::RedisServer;
pub use gateway::{session_id_from_cookie, SESSION_HEADER};

/// How the page's parts are fetched and joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Design {
    /// The gateway calls user, then history, then ads over HTTP, one after the other.
    Chain,
    /// The gateway calls user, then history and ads in parallel, and joins.
    Fanout,
    /// Work goes through Redis lists (BLPOP), results under per-request
    /// keys with an expiry, which the gateway polls.
    Redis,
}

/// One service of a design.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    Gateway,
    User,
    History,
    Ads,
}

impl Role {
    pub const ALL: [Role; 4] = [Self::Gateway, Self::User, Self::History, Self::Ads];

    /// The name in logs, metrics and page milestones.
    pub fn service_name(self) -> &'static str {
        match self {
            Self::Gateway => "baseline-gateway",
            Self::User => "baseline-user",
            Self::History => "baseline-history",
            Self::Ads => "baseline-ads",
        }
    }

    /// The address served when none is given: 9080 to 9083, in the order of [`Role::ALL`].
    pub fn default_addr(self) -> SocketAddr {
        let offset = Self::ALL.iter().position(|r| *r == self).unwrap_or(0) as u16;
        SocketAddr::from(([127, 0, 0, 1], 9080 + offset))
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Gateway => "gateway",
            Self::User => "user",
            Self::History => "history",
            Self::Ads => "ads",
        }
    }
}

/// One role of one design, from flags or environment variables.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "storefront-baseline",
    about = "Runs one role of a baseline design (chain, fanout, redis) for the benchmarks"
)]
pub struct Settings {
    #[arg(long, env = "STOREFRONT_BASELINE_DESIGN", value_enum)]
    pub design: Design,
    #[arg(long, env = "STOREFRONT_BASELINE_ROLE", value_enum)]
    pub role: Role,
    /// Address of the role's HTTP server (`/api/page` on the gateway, the
    /// role's API, `/healthz`, `/readyz`, `/metrics`); default 127.0.0.1:9080
    /// (gateway), 9081 (user), 9082 (history), 9083 (ads); port 0 picks a free one.
    #[arg(long, env = "STOREFRONT_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Base URL of the user role (chain and fanout gateways).
    #[arg(
        long,
        env = "STOREFRONT_BASELINE_USER_URL",
        default_value = "http://127.0.0.1:9081"
    )]
    pub user_url: String,
    /// Base URL of the history role (chain and fanout gateways).
    #[arg(
        long,
        env = "STOREFRONT_BASELINE_HISTORY_URL",
        default_value = "http://127.0.0.1:9082"
    )]
    pub history_url: String,
    /// Base URL of the ads role (chain and fanout gateways).
    #[arg(
        long,
        env = "STOREFRONT_BASELINE_ADS_URL",
        default_value = "http://127.0.0.1:9083"
    )]
    pub ads_url: String,
    /// Redis of the redis design.
    #[arg(
        long,
        env = "STOREFRONT_BASELINE_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
    /// Prefix of every Redis key of the redis design (a namespace per run).
    #[arg(
        long,
        env = "STOREFRONT_BASELINE_REDIS_PREFIX",
        default_value = "storefront-baseline:"
    )]
    pub redis_prefix: String,
    /// Where the reference topics are (user, history and ads roles).
    #[command(flatten)]
    pub kafka: KafkaSettings,
    /// Where the role keeps its read model's checkpoint.
    #[command(flatten)]
    pub instance: storefront_runtime::InstanceSettings,
    /// How long the gateway waits for the parts of a page; what has not
    /// arrived by then is left out and named in `missing`.
    #[arg(long, env = "STOREFRONT_PAGE_DEADLINE_MS", default_value_t = storefront_schemas::DEFAULT_PAGE_DEADLINE_MS)]
    pub page_deadline_ms: u64,
    /// How often the redis design's gateway polls for results.
    #[arg(
        long,
        env = "STOREFRONT_BASELINE_POLL_INTERVAL_MS",
        default_value_t = 5
    )]
    pub poll_interval_ms: u64,
    /// Fault injection of the ads role (the same settings as ads-svc's).
    #[command(flatten)]
    pub inject_delay: ads_svc::InjectDelay,
}

impl Settings {
    /// `role` of `design` on a free port, with every other value at its default.
    pub fn new(design: Design, role: Role, kafka: KafkaSettings) -> Self {
        use clap::ValueEnum;
        let name = |value: Option<clap::builder::PossibleValue>| {
            value.expect("no variant is skipped").get_name().to_owned()
        };
        let (design_name, role_name) = (
            name(design.to_possible_value()),
            name(role.to_possible_value()),
        );
        Self {
            http_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            kafka,
            ..storefront_runtime::settings::defaults(&[
                "--design",
                &design_name,
                "--role",
                &role_name,
            ])
        }
    }

    fn page_deadline(&self) -> Duration {
        Duration::from_millis(self.page_deadline_ms)
    }
}

/// What can stop a baseline role from starting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Runtime(#[from] storefront_runtime::Error),
    #[error("Redis at {url} cannot be used: {source}")]
    Redis {
        url: String,
        #[source]
        source: ::redis::RedisError,
    },
    #[error("redis-server could not be started: {0}")]
    RedisServer(String),
    #[error("the HTTP client could not be built: {0}")]
    HttpClient(#[from] reqwest::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Starts one role; it serves until `shutdown` is cancelled. Ready (its
/// `/readyz` answers 200) once its reference data is loaded.
pub async fn start(settings: Settings, shutdown: CancellationToken) -> Result<RunningService> {
    let name = settings.role.service_name();
    let telemetry = Telemetry::local(name);
    let mut tasks = JoinSet::new();
    let readiness;
    let router = match settings.role {
        Role::Gateway => {
            readiness = Readiness::new(&[]);
            let source = match settings.design {
                Design::Chain | Design::Fanout => {
                    gateway::Source::Http(http::Peers::new(&settings)?)
                }
                Design::Redis => gateway::Source::Redis(queues::Poller::connect(&settings).await?),
            };
            gateway::router(
                source,
                settings.page_deadline(),
                telemetry.clone(),
                readiness.clone(),
            )
        }
        role => {
            readiness = Readiness::new(&[REFERENCE_LOADED]);
            let backend = backends::Backend::load(
                role,
                &settings,
                &telemetry,
                readiness.clone(),
                &mut tasks,
                shutdown.clone(),
            )?;
            match settings.design {
                Design::Chain | Design::Fanout => http::backend_router(backend, readiness.clone()),
                Design::Redis => {
                    let worker = queues::Worker::connect(&settings, backend).await?;
                    tasks.spawn(worker.run(readiness.clone(), shutdown.clone()));
                    health::router(readiness.clone())
                }
            }
        }
    };
    let addr = settings.http_addr.unwrap_or(settings.role.default_addr());
    let http_addr = serve_http(
        &mut tasks,
        addr,
        router,
        &storefront_runtime::HttpLimits::default(),
        &telemetry,
        shutdown.clone(),
    )
    .await?;
    let (design, role) = (settings.design, settings.role);
    tracing::info!(service = name, ?design, %http_addr, "started");
    let (ready, stop) = (readiness.clone(), shutdown.clone());
    tasks.spawn(async move {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = ready.wait() => {
                tracing::info!(service = name, ?design, role = role.as_str(), %http_addr, "ready");
            }
        }
        Ok(())
    });
    Ok(RunningService::new(
        telemetry, http_addr, readiness, shutdown, tasks,
    ))
}

/// Runs one role until `shutdown` is cancelled (or a task fails), then stops it.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<()> {
    Ok(start(settings, shutdown).await?.run_until_stopped().await?)
}

/// Runs one role until SIGINT or SIGTERM: what `storefront baseline` does.
pub async fn run_until_signal(settings: Settings) -> Result<()> {
    Ok(start(settings, CancellationToken::new())
        .await?
        .run_until_signal()
        .await?)
}

//! The redis design. The gateway pushes each request onto the user role's
//! list; the user role BLPOPs it, writes its answer under the request's key
//! and pushes work for history and ads in the same transaction; they BLPOP,
//! compute and write theirs. Every answer expires after
//! [`RESULT_TTL_SECS`]. The gateway polls the request's keys every poll
//! interval until the page is done or its deadline passes.
//!
//! Keys (under the prefix): `queue:user`, `queue:history`, `queue:ads`
//! (lists of JSON [`Job`]s) and `result:<request_id>:<role>` (the role's
//! JSON answer).

use std::time::Duration;

use gateway::error::ApiError;
use redis::{aio::ConnectionManager, AsyncCommands, AsyncConnectionConfig, Client};
use storefront_runtime::Readiness;
use storefront_schemas::{now_ms, CustomerId, PageCompleted, SessionId};
use tokio::time::{timeout_at, Instant, MissedTickBehavior};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

use crate::{
    backends::Backend,
    parts::{Job, PageJoin},
    Error, Result, Role, Settings,
};

/// How long an answer stays in Redis: well past any deadline.
pub(crate) const RESULT_TTL_SECS: u64 = 60;

/// How long one BLPOP blocks before the worker checks for shutdown.
const BLPOP_TIMEOUT_SECS: f64 = 0.5;

#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn queue(&self, role: Role) -> String {
        format!("{}queue:{}", self.prefix, role.as_str())
    }

    fn result(&self, request_id: impl std::fmt::Display, role: Role) -> String {
        format!("{}result:{request_id}:{}", self.prefix, role.as_str())
    }
}

async fn connect(settings: &Settings) -> Result<(Client, ConnectionManager)> {
    let error = |source| Error::Redis {
        url: settings.redis_url.clone(),
        source,
    };
    let client = Client::open(settings.redis_url.as_str()).map_err(error)?;
    // Reconnects by itself after Redis or the connection drops.
    let manager = client.get_connection_manager().await.map_err(error)?;
    Ok((client, manager))
}

/// The redis design's gateway side.
#[derive(Clone)]
pub(crate) struct Poller {
    redis: ConnectionManager,
    keys: Keys,
    poll_interval: Duration,
}

impl Poller {
    pub(crate) async fn connect(settings: &Settings) -> Result<Self> {
        let (_, redis) = connect(settings).await?;
        Ok(Self {
            redis,
            keys: Keys {
                prefix: settings.redis_prefix.clone(),
            },
            poll_interval: Duration::from_millis(settings.poll_interval_ms.max(1)),
        })
    }

    /// Queues the request for the user role, then polls its answers until
    /// the page is done or `deadline`. Redis unreachable: 503.
    pub(crate) async fn page(
        &self,
        mut join: PageJoin,
        deadline: Instant,
    ) -> Result<PageCompleted, ApiError> {
        let mut redis = self.redis.clone();
        let job = Job {
            request_id: join.request_id().to_string(),
            session_id: join.session_id().to_string(),
            customer_id: None,
            deadline_ms: join.deadline_ms(),
        };
        let job = json(&job);
        match timeout_at(
            deadline,
            redis.rpush::<_, _, ()>(self.keys.queue(Role::User), job),
        )
        .await
        {
            Err(_) => return Ok(join.finish()),
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not queue the request");
                return Err(ApiError::NotReady);
            }
            Ok(Ok(())) => {}
        }
        let mut waiting: Vec<(Role, String)> = [Role::User, Role::History, Role::Ads]
            .into_iter()
            .map(|role| (role, self.keys.result(join.request_id(), role)))
            .collect();
        let mut ticks =
            tokio::time::interval_at(Instant::now() + self.poll_interval, self.poll_interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            if timeout_at(deadline, ticks.tick()).await.is_err() {
                break;
            }
            let keys: Vec<&str> = waiting.iter().map(|(_, key)| key.as_str()).collect();
            let values: Vec<Option<String>> = match timeout_at(deadline, redis.mget(&keys)).await {
                Err(_) => break,
                Ok(Err(error)) => {
                    tracing::warn!(%error, "could not poll for answers");
                    continue;
                }
                Ok(Ok(values)) => values,
            };
            let mut still_waiting = Vec::with_capacity(waiting.len());
            for ((role, key), value) in waiting.into_iter().zip(values) {
                let Some(answer) = value else {
                    still_waiting.push((role, key));
                    continue;
                };
                if add(&mut join, role, &answer) {
                    return Ok(join.finish());
                }
            }
            waiting = still_waiting;
        }
        Ok(join.finish())
    }
}

/// Adds one role's JSON answer; true once the page is done. An answer that
/// does not parse is logged and left out.
fn add(join: &mut PageJoin, role: Role, answer: &str) -> bool {
    let added = match role {
        Role::User => serde_json::from_str(answer).map(|part| join.add_user(part)),
        Role::History => serde_json::from_str(answer).map(|part| join.add_history(part)),
        Role::Ads => serde_json::from_str(answer).map(|part| join.add_ads(part)),
        Role::Gateway => return false,
    };
    added.unwrap_or_else(|error| {
        tracing::warn!(%error, role = role.as_str(), "an answer does not parse; left out");
        false
    })
}

/// The user, history or ads role of the redis design.
pub(crate) struct Worker {
    backend: Backend,
    role: Role,
    client: Client,
    redis: ConnectionManager,
    keys: Keys,
}

impl Worker {
    pub(crate) async fn connect(settings: &Settings, backend: Backend) -> Result<Self> {
        let (client, redis) = connect(settings).await?;
        Ok(Self {
            backend,
            role: settings.role,
            client,
            redis,
            keys: Keys {
                prefix: settings.redis_prefix.clone(),
            },
        })
    }

    /// Once the read model is loaded, takes jobs off the role's list until
    /// `shutdown`, each handled in its own task; then lets those finish (5 s
    /// at most). A job past its deadline is skipped: nobody waits for it.
    pub(crate) async fn run(
        self,
        readiness: Readiness,
        shutdown: CancellationToken,
    ) -> storefront_runtime::Result<()> {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = readiness.wait() => {}
        }
        let queue = self.keys.queue(self.role);
        // BLPOP blocks its connection: it gets one of its own, whose
        // response timeout outlasts the block.
        let config = AsyncConnectionConfig::new().set_response_timeout(Some(
            Duration::from_secs_f64(BLPOP_TIMEOUT_SECS) + Duration::from_secs(2),
        ));
        let tasks = TaskTracker::new();
        let mut popper = None;
        while !shutdown.is_cancelled() {
            let connection = match &mut popper {
                Some(connection) => connection,
                None => match self
                    .client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                {
                    Ok(connection) => popper.insert(connection),
                    Err(error) => {
                        tracing::warn!(%error, "cannot reach Redis; retrying");
                        pause(&shutdown).await;
                        continue;
                    }
                },
            };
            // Not raced against shutdown: a BLPOP cut short could drop a job.
            let popped: Option<[String; 2]> =
                match connection.blpop(&queue, BLPOP_TIMEOUT_SECS).await {
                    Ok(popped) => popped,
                    Err(error) => {
                        tracing::warn!(%error, "BLPOP failed; reconnecting");
                        popper = None;
                        pause(&shutdown).await;
                        continue;
                    }
                };
            let Some([_, job]) = popped else { continue };
            match serde_json::from_str::<Job>(&job) {
                Ok(job) if job.deadline_ms < now_ms() => {
                    tracing::debug!(request_id = %job.request_id, "past its deadline; skipped");
                }
                Ok(job) => {
                    let (backend, redis, keys) =
                        (self.backend.clone(), self.redis.clone(), self.keys.clone());
                    let span = tracing::info_span!("job", request_id = %job.request_id);
                    tasks.spawn(handle(backend, redis, keys, job).instrument(span));
                }
                Err(error) => tracing::warn!(%error, "a job does not parse; dropped"),
            }
        }
        tasks.close();
        if tokio::time::timeout(Duration::from_secs(5), tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("jobs still running at shutdown; dropped");
        }
        Ok(())
    }
}

/// Waits a little before retrying Redis, unless shutting down.
async fn pause(shutdown: &CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
    }
}

/// Answers one job under its request's key; the user role also queues the
/// work of history and ads, in the same transaction.
async fn handle(backend: Backend, mut redis: ConnectionManager, keys: Keys, job: Job) {
    let mut pipe = redis::pipe();
    pipe.atomic();
    match &backend {
        Backend::Users(users) => {
            let Ok(session) = SessionId::parse(&job.session_id) else {
                tracing::warn!("a job's session ID does not parse; dropped");
                return;
            };
            let part = users.resolve(&session);
            if let Some(user) = &part.user {
                let next = Job {
                    customer_id: Some(user.customer_id.clone()),
                    ..job.clone()
                };
                let next = json(&next);
                pipe.rpush(keys.queue(Role::History), &next).ignore();
                pipe.rpush(keys.queue(Role::Ads), &next).ignore();
            }
            let key = keys.result(&job.request_id, Role::User);
            pipe.set_ex(key, json(&part), RESULT_TTL_SECS).ignore();
        }
        Backend::History(history) => {
            let Some(customer) = customer_of(&job) else {
                return;
            };
            let part = history.recent(&customer);
            let key = keys.result(&job.request_id, Role::History);
            pipe.set_ex(key, json(&part), RESULT_TTL_SECS).ignore();
        }
        Backend::Ads(ads) => {
            let Some(customer) = customer_of(&job) else {
                return;
            };
            let part = ads.select(&customer).await;
            let key = keys.result(&job.request_id, Role::Ads);
            pipe.set_ex(key, json(&part), RESULT_TTL_SECS).ignore();
        }
    }
    if let Err(error) = pipe.exec_async(&mut redis).await {
        tracing::warn!(%error, request_id = %job.request_id, "could not write an answer");
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("JSON serialises")
}

fn customer_of(job: &Job) -> Option<CustomerId> {
    let customer = job
        .customer_id
        .as_deref()
        .and_then(|c| CustomerId::parse(c).ok());
    if customer.is_none() {
        tracing::warn!(request_id = %job.request_id, "a job names no valid customer; dropped");
    }
    customer
}

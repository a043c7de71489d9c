//! Replays from the page: the dry run, then the replay itself, with the
//! CLI's safeguards (`replay::plan` refuses the live namespace, one that
//! already holds records, a reversed range). One replay runs at a time;
//! its report is `storefront replay --json`'s.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use axum::{
    extract::{rejection::JsonRejection, Path, State},
    http::StatusCode,
    Json,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use storefront_runtime::KafkaSettings;
use storefront_schemas::{now_ms, UnsealKey};

use super::{error::bad_body, ApiError, AppState};
use crate::{
    replay::{self, Plan, ReplayArgs},
    when::parse_time,
};

/// Replays remembered, the latest last.
const KEPT: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum JobState {
    Running,
    Done,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
struct Job {
    id: u64,
    state: JobState,
    started_at_ms: i64,
    finished_at_ms: Option<i64>,
    description: String,
    report: Option<Value>,
    error: Option<String>,
}

#[derive(Clone)]
pub(super) struct Replays {
    jobs: Arc<Mutex<BTreeMap<u64, Job>>>,
    unseal_key: Option<UnsealKey>,
}

impl Replays {
    pub(super) fn new(unseal_key: Option<UnsealKey>) -> Self {
        Self {
            jobs: Default::default(),
            unseal_key,
        }
    }

    /// Whether a range holding logins can be replayed (their passwords opened).
    pub(super) fn opens_logins(&self) -> bool {
        self.unseal_key.is_some()
    }
}

/// A replay as the page asks for it.
#[derive(Debug, Deserialize)]
pub(super) struct ReplayBody {
    /// A time as `storefront replay --from` takes it, or Unix ms.
    from: Value,
    #[serde(default)]
    to: Option<Value>,
    into: String,
    #[serde(default)]
    max_requests: Option<usize>,
    #[serde(default)]
    rate: Option<f64>,
    #[serde(default)]
    budget_scale: Option<f64>,
    #[serde(default)]
    with_logins: bool,
    #[serde(default)]
    confirm: bool,
}

impl ReplayBody {
    fn args(&self, dry_run: bool) -> Result<ReplayArgs, ApiError> {
        let time = |name: &str, value: &Value| match value {
            Value::Number(n) => n
                .as_i64()
                .ok_or_else(|| ApiError::invalid("bad_time", format!("{name}: not Unix ms"))),
            Value::String(text) => {
                parse_time(text).map_err(|e| ApiError::invalid("bad_time", format!("{name}: {e}")))
            }
            _ => Err(ApiError::invalid(
                "bad_time",
                format!("{name}: a time is a string (2026-12-01T10:00:00Z, 15m) or Unix ms"),
            )),
        };
        Ok(ReplayArgs {
            from: time("from", &self.from)?,
            to: match &self.to {
                None | Some(Value::Null) => now_ms(),
                Some(Value::String(s)) if s.trim().is_empty() => now_ms(),
                Some(to) => time("to", to)?,
            },
            into: self.into.trim().to_owned(),
            dry_run,
            max_requests: self.max_requests.unwrap_or(replay::DEFAULT_MAX_REQUESTS),
            rate: self.rate.unwrap_or(replay::DEFAULT_RATE),
            budget_scale: self.budget_scale.unwrap_or(replay::DEFAULT_BUDGET_SCALE),
            with_logins: self.with_logins,
            json: true,
        })
    }
}

/// Plans a replay on a blocking thread; refusals are the client's.
async fn plan_of(kafka: &KafkaSettings, args: ReplayArgs) -> Result<Plan, ApiError> {
    let kafka = kafka.clone();
    tokio::task::spawn_blocking(move || replay::plan(&kafka, &args))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| match e.downcast_ref::<replay::Refused>() {
            Some(refused) => ApiError::invalid("replay_refused", refused.to_string()),
            None => ApiError::Kafka(format!("{e:#}")),
        })
}

/// `POST /api/replays/plan`: the dry run; nothing is written.
pub(super) async fn plan(
    State(state): State<AppState>,
    body: Result<Json<ReplayBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body.map_err(bad_body)?;
    let plan = plan_of(&state.kafka, body.args(true)?).await?;
    let mut description = replay::describe(&plan);
    if plan.logins > 0 && !state.replays.opens_logins() {
        description.push_str(
            "The range holds logins, and the console has no user-svc key to open their passwords: it cannot run this replay.\n",
        );
    }
    Ok(Json(json!({ "plan": plan, "description": description })))
}

/// `POST /api/replays`: plans again, then runs the replay in the background.
pub(super) async fn start(
    State(state): State<AppState>,
    body: Result<Json<ReplayBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = body.map_err(bad_body)?;
    let args = body.args(false)?;
    if !body.confirm {
        return Err(ApiError::invalid(
            "confirm",
            "a replay writes into its namespace and runs services: look at the dry run, then send \"confirm\": true",
        ));
    }
    let replays = state.replays.clone();
    if running(&replays) {
        return Err(ApiError::Conflict(
            "a replay is running; wait for it to end".into(),
        ));
    }
    let plan = plan_of(&state.kafka, args).await?;
    let unseal_key = match (&replays.unseal_key, plan.logins) {
        (Some(key), _) => key.clone(),
        (None, 0) => UnsealKey::generate(),
        (None, _) => return Err(ApiError::invalid(
            "no_user_svc_key",
            "the range holds logins and the console has no user-svc key to open their passwords",
        )),
    };
    let description = replay::describe(&plan);
    let id = {
        let mut jobs = replays.jobs.lock().expect("not poisoned");
        // Checked again under the lock: two clicks start one replay.
        if jobs.values().any(|job| job.state == JobState::Running) {
            return Err(ApiError::Conflict(
                "a replay is running; wait for it to end".into(),
            ));
        }
        let id = jobs.last_key_value().map_or(1, |(id, _)| id + 1);
        jobs.insert(
            id,
            Job {
                id,
                state: JobState::Running,
                started_at_ms: now_ms(),
                finished_at_ms: None,
                description: description.clone(),
                report: None,
                error: None,
            },
        );
        while jobs.len() > KEPT {
            jobs.pop_first();
        }
        id
    };
    let kafka = state.kafka.clone();
    tracing::info!(id, into = %plan.into, requests = plan.selected(), "console replay starting");
    tokio::spawn(async move {
        let outcome = replay::run(&kafka, plan, unseal_key).await;
        let mut jobs = replays.jobs.lock().expect("not poisoned");
        if let Some(job) = jobs.get_mut(&id) {
            job.finished_at_ms = Some(now_ms());
            match outcome {
                Ok(report) => {
                    job.state = JobState::Done;
                    job.report = serde_json::to_value(&report).ok();
                }
                Err(error) => {
                    tracing::warn!(id, error = format!("{error:#}"), "console replay failed");
                    job.state = JobState::Failed;
                    job.error = Some(format!("{error:#}"));
                }
            }
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": id.to_string(), "description": description })),
    ))
}

fn running(replays: &Replays) -> bool {
    replays
        .jobs
        .lock()
        .expect("not poisoned")
        .values()
        .any(|job| job.state == JobState::Running)
}

/// `GET /api/replays/{id}`.
pub(super) async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let number: u64 = id
        .parse()
        .map_err(|_| ApiError::invalid("bad_id", format!("{id:?} is not a replay id")))?;
    let jobs = state.replays.jobs.lock().expect("not poisoned");
    let job = jobs
        .get(&number)
        .ok_or_else(|| ApiError::NotFound(format!("no replay {number}")))?;
    let mut value = serde_json::to_value(job).expect("a job serializes");
    value["id"] = json!(job.id.to_string());
    Ok(Json(value))
}

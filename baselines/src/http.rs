//! The HTTP designs. The user, history and ads roles answer JSON:
//! `GET /resolve?session=<id>` (200 with the user, 401 with the rejection),
//! `GET /history?customer=<id>`, `GET /ads?customer=<id>`; 503 until their
//! data is loaded. The gateway calls them in sequence (`chain`) or calls
//! user and then history and ads at once (`fanout`).

use std::time::Duration;

use axum::{
    extract::{Query, Request, State},
    http::StatusCode,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use gateway::error::ApiError;
use serde::{de::DeserializeOwned, Deserialize};
use storefront_runtime::{health, Readiness};
use storefront_schemas::{CustomerId, PageCompleted, SessionId};
use tokio::time::{timeout_at, Instant};

use crate::{
    backends::{Ads, Backend, History, Users},
    parts::{AdsPart, HistoryPart, PageJoin, UserPart},
    Design, Result, Settings,
};

/// The role's API, `/healthz` and `/readyz`.
pub(crate) fn backend_router(backend: Backend, readiness: Readiness) -> Router {
    let api = match backend {
        Backend::Users(users) => Router::new()
            .route("/resolve", get(resolve))
            .with_state(users),
        Backend::History(history) => Router::new()
            .route("/history", get(recent_purchases))
            .with_state(history),
        Backend::Ads(ads) => Router::new().route("/ads", get(select_ads)).with_state(ads),
    };
    api.route_layer(middleware::from_fn_with_state(
        readiness.clone(),
        when_ready,
    ))
    .merge(health::router(readiness))
}

/// Answers 503 until the role's data is loaded: a half-loaded read model
/// would answer wrongly.
async fn when_ready(State(readiness): State<Readiness>, request: Request, next: Next) -> Response {
    if readiness.is_ready() {
        next.run(request).await
    } else {
        ApiError::NotReady.into_response()
    }
}

#[derive(Deserialize)]
struct SessionQuery {
    session: String,
}

#[derive(Deserialize)]
struct CustomerQuery {
    customer: String,
}

async fn resolve(
    State(users): State<Users>,
    Query(query): Query<SessionQuery>,
) -> Result<Response, ApiError> {
    let session = SessionId::parse(&query.session)
        .map_err(|error| ApiError::InvalidRequest(error.to_string()))?;
    let part = users.resolve(&session);
    let status = if part.user.is_some() {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    };
    Ok((status, Json(part)).into_response())
}

async fn recent_purchases(
    State(history): State<History>,
    Query(query): Query<CustomerQuery>,
) -> Result<Json<HistoryPart>, ApiError> {
    let customer = CustomerId::parse(&query.customer)
        .map_err(|error| ApiError::InvalidRequest(error.to_string()))?;
    Ok(Json(history.recent(&customer)))
}

async fn select_ads(
    State(ads): State<Ads>,
    Query(query): Query<CustomerQuery>,
) -> Result<Json<AdsPart>, ApiError> {
    let customer = CustomerId::parse(&query.customer)
        .map_err(|error| ApiError::InvalidRequest(error.to_string()))?;
    Ok(Json(ads.select(&customer).await))
}

/// The chain and fan-out gateways' view of the other roles.
#[derive(Clone)]
pub(crate) struct Peers {
    /// `chain`: history, then ads; `fanout`: both at once.
    sequential: bool,
    client: reqwest::Client,
    user: String,
    history: String,
    ads: String,
}

impl Peers {
    pub(crate) fn new(settings: &Settings) -> Result<Self> {
        let base = |url: &str| url.trim_end_matches('/').to_owned();
        Ok(Self {
            sequential: settings.design == Design::Chain,
            client: reqwest::Client::builder()
                .no_proxy()
                .pool_idle_timeout(Duration::from_secs(30))
                .build()?,
            user: base(&settings.user_url),
            history: base(&settings.history_url),
            ads: base(&settings.ads_url),
        })
    }

    /// The page, joined from what the roles answer by `deadline`. No user by
    /// then: unavailable (504). The user role unreachable or failing: 503,
    /// at once. History or ads unreachable or failing: left out at once.
    pub(crate) async fn page(
        &self,
        mut join: PageJoin,
        deadline: Instant,
    ) -> Result<PageCompleted, ApiError> {
        let session = join.session_id().to_string();
        let user = match timeout_at(deadline, self.resolve(&session)).await {
            Err(_) => return Ok(join.finish()),
            Ok(Err(error)) => {
                tracing::warn!(%error, "the user role failed");
                return Err(ApiError::NotReady);
            }
            Ok(Ok(user)) => user,
        };
        let customer = user.user.as_ref().map(|u| u.customer_id.clone());
        if join.add_user(user) {
            return Ok(join.finish());
        }
        let Some(customer) = customer else {
            return Ok(join.finish());
        };
        if self.sequential {
            let history = timeout_at(deadline, self.history(&customer)).await;
            let in_time = history.is_ok();
            if let Some(history) = arrived(history, "history") {
                join.add_history(history);
            }
            // Past the deadline the page goes out without calling ads.
            if in_time {
                let ads = timeout_at(deadline, self.ads(&customer)).await;
                if let Some(ads) = arrived(ads, "ads") {
                    join.add_ads(ads);
                }
            }
        } else {
            let (history, ads) = tokio::join!(
                timeout_at(deadline, self.history(&customer)),
                timeout_at(deadline, self.ads(&customer)),
            );
            if let Some(history) = arrived(history, "history") {
                join.add_history(history);
            }
            if let Some(ads) = arrived(ads, "ads") {
                join.add_ads(ads);
            }
        }
        Ok(join.finish())
    }

    async fn resolve(&self, session: &str) -> Result<UserPart, String> {
        let url = format!("{}/resolve?session={session}", self.user);
        // 401 carries the rejection, in the same JSON.
        self.get(&url, &[StatusCode::OK, StatusCode::UNAUTHORIZED])
            .await
    }

    async fn history(&self, customer: &str) -> Result<HistoryPart, String> {
        let url = format!("{}/history?customer={customer}", self.history);
        self.get(&url, &[StatusCode::OK]).await
    }

    async fn ads(&self, customer: &str) -> Result<AdsPart, String> {
        let url = format!("{}/ads?customer={customer}", self.ads);
        self.get(&url, &[StatusCode::OK]).await
    }

    async fn get<T: DeserializeOwned>(
        &self,
        url: &str,
        expected: &[StatusCode],
    ) -> Result<T, String> {
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = response.status();
        if !expected.contains(&status) {
            return Err(format!("GET {url}: {status}"));
        }
        response.json().await.map_err(|e| format!("GET {url}: {e}"))
    }
}

/// A part that arrived in time; a failure is logged, and both leave the part out.
fn arrived<T>(
    answer: Result<Result<T, String>, tokio::time::error::Elapsed>,
    role: &str,
) -> Option<T> {
    match answer {
        Ok(Ok(part)) => Some(part),
        Ok(Err(error)) => {
            tracing::warn!(%error, role, "a role failed; its part is left out");
            None
        }
        Err(_) => None,
    }
}

//! One page request's life: sent as `page.requested` with this gateway's
//! return address, waited for up to a budget by the one waiting rule, and
//! answered with the page or left running for its status URL.

use std::time::Duration;

use axum::http::HeaderMap;
use opentelemetry::{trace::TraceContextExt, Context, KeyValue};
use storefront_runtime::{trace, Outbound};
use storefront_schemas::{
    now_ms, LoginAttempt, Milestone, PageCompleted, PageRequested, PageStatus, RequestContext,
    RequestId, SessionId,
};
use tracing::Instrument;

use crate::{error::ApiError, state::AppState};

/// Longest `Idempotency-Key` taken.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// What the client asked of an async-capable request, from its headers.
#[derive(Debug, Default)]
pub struct AsyncOptions {
    /// `Prefer: respond-async`: answer 202 at once.
    pub respond_async: bool,
    /// `Prefer: wait=N`: wait at most N seconds (never longer than the sync budget).
    pub wait: Option<Duration>,
    pub idempotency_key: Option<String>,
}

impl AsyncOptions {
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let mut options = Self::default();
        for value in headers.get_all("prefer") {
            let value = value.to_str().unwrap_or_default();
            for preference in value.split(',') {
                let token = preference.split(';').next().unwrap_or_default().trim();
                match token.split_once('=') {
                    None if token.eq_ignore_ascii_case("respond-async") => {
                        options.respond_async = true
                    }
                    Some((name, seconds)) if name.trim().eq_ignore_ascii_case("wait") => {
                        if let Ok(seconds) = seconds.trim().parse::<u64>() {
                            options.wait = Some(Duration::from_secs(seconds));
                        }
                    }
                    // Preferences a server does not know are ignored (RFC 7240).
                    _ => {}
                }
            }
        }
        if let Some(key) = headers.get("idempotency-key") {
            let key = key
                .to_str()
                .ok()
                .filter(|k| {
                    !k.is_empty()
                        && k.len() <= MAX_IDEMPOTENCY_KEY
                        && k.bytes().all(|b| b.is_ascii_graphic())
                })
                .ok_or_else(|| {
                    ApiError::InvalidRequest(format!(
                        "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
                    ))
                })?;
            options.idempotency_key = Some(key.to_owned());
        }
        Ok(options)
    }

    /// The one waiting rule of every async-capable request (login, `POST
    /// /api/pages`): how long it waits for its page before the 202. At
    /// once with `respond-async`; else the sync budget, or less if the
    /// client asked `wait=N`.
    pub fn budget(&self, sync_budget: Duration) -> Duration {
        if self.respond_async {
            return Duration::ZERO;
        }
        self.wait.map_or(sync_budget, |wait| wait.min(sync_budget))
    }
}

/// One page request as the gateway makes it.
pub(crate) struct Submission {
    pub(crate) session: SessionId,
    pub(crate) login: Option<LoginAttempt>,
    pub(crate) logout: bool,
    pub(crate) callback_url: Option<String>,
    pub(crate) idempotency_key: Option<String>,
}

/// How waiting for a page ended.
pub(crate) enum Answer {
    /// The aggregator's answer came within the budget.
    Page(Box<PageCompleted>),
    /// It did not (yet): the request runs on, and its status URL will have it.
    Pending(RequestContext),
}

impl AppState {
    /// How long an async-capable request may wait for its page, at most.
    pub(crate) fn sync_budget(&self) -> Duration {
        Duration::from_millis(self.inner.settings.sync_budget_ms)
    }

    /// The synchronous flow (`GET /api/page`, logout): the deadline and
    /// its grace, then 504.
    pub(crate) async fn request_page_sync(
        &self,
        session: SessionId,
        logout: bool,
        trace: &Context,
    ) -> Result<PageCompleted, ApiError> {
        let settings = &self.inner.settings;
        let budget = Duration::from_millis(settings.page_deadline_ms + settings.reply_grace_ms);
        let submission = Submission {
            session,
            login: None,
            logout,
            callback_url: None,
            idempotency_key: None,
        };
        match self.request_page(submission, budget, trace).await? {
            Answer::Page(page) => Ok(*page),
            Answer::Pending(_) => Err(ApiError::DeadlineExceeded),
        }
    }

    /// Sends `page.requested` with this gateway's return address and waits
    /// up to `budget` for the aggregator's answer. The page comes back with
    /// every milestone of the request, also added to `trace` as span events.
    pub(crate) async fn request_page(
        &self,
        submission: Submission,
        budget: Duration,
        trace: &Context,
    ) -> Result<Answer, ApiError> {
        let inner = &self.inner;
        if !inner.readiness.is_ready() {
            return Err(ApiError::NotReady);
        }
        if !inner.producer.broker_reachable() {
            return Err(ApiError::BrokerUnavailable);
        }
        if inner.waiting.len() >= inner.settings.max_waiting {
            self.telemetry().metrics().shed.inc();
            return Err(ApiError::Overloaded);
        }
        let reply_partition = inner.owned.pick().ok_or(ApiError::NotReady)?;
        let request_id = RequestId::new();
        let requested_at_ms = now_ms();
        let context = RequestContext {
            request_id,
            session_id: submission.session,
            requested_at_ms,
            deadline_ms: requested_at_ms + inner.settings.page_deadline_ms as i64,
            reply_topic: inner.reply_topic.clone(),
            reply_partition,
        };
        trace.span().set_attribute(KeyValue::new(
            "storefront.request_id",
            request_id.to_string(),
        ));
        let log = tracing::info_span!(
            "request",
            %request_id,
            session_id = %context.session_id,
            trace_id = %trace::trace_id(trace),
        );
        if let Some(key) = &submission.idempotency_key {
            inner.idempotency.insert(
                (context.session_id, key.clone()),
                context.clone(),
                requested_at_ms,
            );
        }
        let event = PageRequested {
            context: context.clone(),
            login: submission.login,
            logout: submission.logout,
            callback_url: submission.callback_url,
            idempotency_key: submission.idempotency_key,
        };
        let record = Outbound::event(
            &inner.page_requested,
            context.session_id,
            request_id,
            trace,
            &event,
        );
        let reply = inner.waiting.register(request_id);
        // The budget counts from here, the broker's acknowledgement
        // included: while a partition's leader moves, the write can take
        // seconds, and the shopper must not wait them on top of the budget.
        // Even `respond-async` waits for the acknowledgement up to the
        // page's deadline before it says 202.
        let started = tokio::time::Instant::now();
        let sending = {
            let (state, session, key) = (
                self.clone(),
                context.session_id,
                event.idempotency_key.clone(),
            );
            tokio::spawn(
                async move {
                    let sent = state.inner.producer.send(&record).await;
                    if sent.is_err() {
                        state.inner.waiting.forget(request_id);
                        // Not recorded: a retry with this key must start it, not find it.
                        if let Some(key) = key {
                            state.inner.idempotency.remove(&(session, key));
                        }
                    }
                    sent
                }
                .instrument(log.clone()),
            )
        };
        let ack_within = budget.max(Duration::from_millis(inner.settings.page_deadline_ms));
        let acknowledged = match tokio::time::timeout(ack_within, sending).await {
            Ok(Ok(Ok(_))) => true,
            Ok(Ok(Err(error))) => return Err(ApiError::Internal(error.to_string())),
            Ok(Err(panicked)) => return Err(ApiError::Internal(panicked.to_string())),
            // Still on its way: the request runs on, as one past its budget.
            Err(_) => false,
        };
        let enqueued_at_ms = now_ms();
        // `respond-async` (a zero budget) is answered 202 at once: a timer of
        // zero can still lose the race to a reply on a busy runtime.
        let answer = if budget.is_zero() || !acknowledged {
            Err(())
        } else {
            tokio::time::timeout_at(started + budget, reply)
                .await
                .map_err(drop)
        };
        inner.waiting.forget(request_id);
        let _entered = log.enter();
        let outcome = match &answer {
            Ok(Ok(page)) => status_name(page.status),
            Ok(Err(_)) => "failed",
            Err(_) => "timeout",
        };
        self.telemetry()
            .metrics()
            .page_latency
            .with_label_values(&[outcome])
            .observe((now_ms() - requested_at_ms).max(0) as f64 / 1000.0);
        let gateway_milestone = |stage: &str, at_ms| Milestone {
            stage: stage.into(),
            service: "gateway".into(),
            at_ms,
        };
        let mut milestones = vec![
            gateway_milestone("initiated", requested_at_ms),
            gateway_milestone("enqueued", enqueued_at_ms),
        ];
        let result = match answer {
            Ok(Ok(mut page)) => {
                milestones.append(&mut page.milestones);
                milestones.push(gateway_milestone("delivered", now_ms()));
                // A timeline: a service can pick the request up before the
                // broker's acknowledgement (`enqueued`) is back at the gateway.
                milestones.sort_by_key(|m| m.at_ms);
                page.milestones = milestones.clone();
                tracing::info!(status = ?page.status, missing = ?page.missing, "answered");
                Ok(Answer::Page(Box::new(page)))
            }
            Ok(Err(_)) => Err(ApiError::Internal("reply channel closed".into())),
            Err(_) => {
                tracing::info!(
                    budget_ms = budget.as_millis() as u64,
                    "no page within the budget; the request runs on"
                );
                Ok(Answer::Pending(context))
            }
        };
        for milestone in milestones {
            trace.span().add_event_with_timestamp(
                milestone.stage,
                std::time::UNIX_EPOCH + Duration::from_millis(milestone.at_ms.max(0) as u64),
                vec![KeyValue::new("service", milestone.service)],
            );
        }
        result
    }
}

/// How a page request ended, as a metric label.
pub fn status_name(status: PageStatus) -> &'static str {
    match status {
        PageStatus::Complete => "complete",
        PageStatus::Partial => "partial",
        PageStatus::Rejected => "rejected",
        PageStatus::Unavailable => "unavailable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(prefer: &str) -> AsyncOptions {
        let mut headers = HeaderMap::new();
        headers.insert("prefer", prefer.parse().unwrap());
        AsyncOptions::from_headers(&headers).unwrap()
    }

    #[test]
    fn a_request_waits_the_sync_budget_or_less_if_asked_and_not_at_all_if_async() {
        let sync = Duration::from_millis(2_000);
        assert_eq!(AsyncOptions::default().budget(sync), sync);
        assert_eq!(options("wait=1").budget(sync), Duration::from_secs(1));
        assert_eq!(options("wait=0").budget(sync), Duration::ZERO);
        assert_eq!(
            options("wait=30").budget(sync),
            sync,
            "never past the budget"
        );
        assert_eq!(
            options("respond-async, wait=1").budget(sync),
            Duration::ZERO
        );
        assert_eq!(
            options("wait=soon").budget(sync),
            sync,
            "ignored (RFC 7240)"
        );
    }
}

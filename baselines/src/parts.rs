//! What the roles answer (the same JSON over HTTP and under Redis keys),
//! the work items of the redis design, and the page join: the aggregator's
//! own join, run inside the gateway for one request.

use aggregator::join::{Added, Arrival, Joins, Part, Source};
use serde::{Deserialize, Serialize};
use storefront_schemas::{
    now_ms, Ad, Milestone, PageCompleted, Purchase, RequestContext, RequestId, Resolution,
    SessionId, UserProfile,
};

use crate::Role;

/// The user role's answer: the session's user, or why it was refused
/// (user-svc's rejection codes: `unknown_session`, `expired_session`).
/// Over HTTP, 200 with `user` or 401 with `rejection`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserPart {
    /// When the role took the request (Unix ms).
    pub picked_up_at_ms: i64,
    pub user: Option<UserProfile>,
    pub rejection: Option<String>,
}

/// The history role's answer: the customer's recent distinct purchases.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryPart {
    pub picked_up_at_ms: i64,
    pub customer_id: String,
    pub purchases: Vec<Purchase>,
}

/// The ads role's answer: the customer's ads, each with its reason.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdsPart {
    pub picked_up_at_ms: i64,
    pub customer_id: String,
    pub ads: Vec<Ad>,
}

/// A work item of the redis design: the request, and the session (for the
/// user role) or the customer (for history and ads).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub request_id: String,
    pub session_id: String,
    pub customer_id: Option<String>,
    /// Past this (Unix ms) nobody waits for the answer: the job is skipped.
    pub deadline_ms: i64,
}

/// One page request's join in the gateway: parts go in as they arrive, and
/// the page comes out complete, rejected, or (at the deadline, or once
/// nothing more can come) partial with what is missing named. The rules
/// are the aggregator's ([`Joins`]), so every design answers alike.
pub struct PageJoin {
    joins: Joins,
    context: RequestContext,
    page: Option<PageCompleted>,
}

impl PageJoin {
    /// A join for a new request of `session` that has `deadline_ms` to complete.
    pub fn new(session: &SessionId, deadline_ms: u64) -> Self {
        let requested_at_ms = now_ms();
        let context = RequestContext {
            request_id: RequestId::new(),
            session_id: *session,
            requested_at_ms,
            deadline_ms: requested_at_ms + deadline_ms as i64,
            // No reply partition: the gateway holding the request joins it.
            reply_topic: String::new(),
            reply_partition: 0,
        };
        let mut join = Self {
            joins: Joins::default(),
            context,
            page: None,
        };
        // Opens the join, so it has a deadline even if no part ever comes.
        join.add(Part::Requested { callback_url: None }, None);
        join
    }

    pub fn request_id(&self) -> RequestId {
        self.context.request_id
    }

    pub fn session_id(&self) -> SessionId {
        self.context.session_id
    }

    pub fn deadline_ms(&self) -> i64 {
        self.context.deadline_ms
    }

    /// Adds the user's part; true once the page is done (a rejection ends it).
    pub fn add_user(&mut self, part: UserPart) -> bool {
        let status = if part.user.is_some() {
            Resolution::Authenticated
        } else {
            Resolution::Rejected
        };
        let user = Part::User {
            status,
            rejection: part.rejection,
            user: part.user,
        };
        self.add(user, Some((Role::User, part.picked_up_at_ms)))
    }

    /// Adds the history part; true once the page is complete.
    pub fn add_history(&mut self, part: HistoryPart) -> bool {
        let history = Part::History(part.purchases);
        self.add(history, Some((Role::History, part.picked_up_at_ms)))
    }

    /// Adds the ads part; true once the page is complete.
    pub fn add_ads(&mut self, part: AdsPart) -> bool {
        self.add(Part::Ads(part.ads), Some((Role::Ads, part.picked_up_at_ms)))
    }

    fn add(&mut self, part: Part, picked_up: Option<(Role, i64)>) -> bool {
        if self.page.is_some() {
            return true;
        }
        let arrival = Arrival {
            sent_by: None,
            milestone: picked_up.map(|(role, at_ms)| Milestone {
                stage: "picked_up".into(),
                service: role.service_name().into(),
                at_ms,
            }),
        };
        let source = Source {
            topic: String::new(),
            partition: 0,
            offset: 0,
        };
        if let Added::Emit(ready) =
            self.joins
                .add(self.context.clone(), part, arrival, source, now_ms())
        {
            self.page = Some(self.delivered(ready.page));
        }
        self.page.is_some()
    }

    /// The page: as completed or rejected, or else with what has arrived,
    /// naming what is missing (no user at all: `unavailable`).
    pub fn finish(mut self) -> PageCompleted {
        if let Some(page) = self.page.take() {
            return page;
        }
        // Expiring at the deadline (or now, if later) emits this join even
        // when the gateway stops early because nothing more can come.
        let at = now_ms().max(self.context.deadline_ms);
        let ready = self
            .joins
            .expire(at)
            .pop()
            .expect("the join was opened at creation");
        self.delivered(ready.page)
    }

    /// The page with the gateway's milestones: the gateway, not an
    /// aggregator, initiated and completed it.
    fn delivered(&self, mut page: PageCompleted) -> PageCompleted {
        let gateway = Role::Gateway.service_name();
        page.milestones.retain(|m| m.stage != "completed");
        page.milestones.insert(
            0,
            Milestone {
                stage: "initiated".into(),
                service: gateway.into(),
                at_ms: self.context.requested_at_ms,
            },
        );
        page.milestones.push(Milestone {
            stage: "completed".into(),
            service: gateway.into(),
            at_ms: now_ms(),
        });
        page
    }
}

#[cfg(test)]
mod tests {
    use storefront_schemas::PageStatus;

    use super::*;

    fn user() -> UserPart {
        UserPart {
            picked_up_at_ms: now_ms(),
            user: Some(UserProfile {
                customer_id: "c-1".into(),
                name: "Ann".into(),
                city: "Oslo".into(),
            }),
            rejection: None,
        }
    }

    #[test]
    fn a_page_with_every_part_is_complete_and_a_missing_part_is_named() {
        let session = SessionId::new();
        let mut join = PageJoin::new(&session, 250);
        assert!(!join.add_user(user()));
        assert!(!join.add_history(HistoryPart {
            picked_up_at_ms: now_ms(),
            customer_id: "c-1".into(),
            purchases: vec![],
        }));
        let partial = join.finish();
        assert_eq!(partial.status, PageStatus::Partial);
        assert_eq!(partial.missing, ["ads"]);

        let mut join = PageJoin::new(&session, 250);
        join.add_user(user());
        join.add_ads(AdsPart {
            picked_up_at_ms: now_ms(),
            customer_id: "c-1".into(),
            ads: vec![],
        });
        assert!(join.add_history(HistoryPart {
            picked_up_at_ms: now_ms(),
            customer_id: "c-1".into(),
            purchases: vec![],
        }));
        let page = join.finish();
        assert_eq!(page.status, PageStatus::Complete);
        let stages: Vec<_> = page
            .milestones
            .iter()
            .map(|m| (m.stage.as_str(), m.service.as_str()))
            .collect();
        assert_eq!(stages.first(), Some(&("initiated", "baseline-gateway")));
        assert_eq!(stages.last(), Some(&("completed", "baseline-gateway")));
    }

    #[test]
    fn a_rejected_user_ends_the_page_and_no_user_makes_it_unavailable() {
        let session = SessionId::new();
        let mut join = PageJoin::new(&session, 250);
        assert!(join.add_user(UserPart {
            picked_up_at_ms: now_ms(),
            user: None,
            rejection: Some("unknown_session".into()),
        }));
        assert_eq!(join.finish().status, PageStatus::Rejected);

        let page = PageJoin::new(&session, 250).finish();
        assert_eq!(page.status, PageStatus::Unavailable);
        assert_eq!(page.missing, ["user", "history", "ads"]);
    }
}

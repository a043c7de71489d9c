//! The per-request join, free of Kafka and clocks: parts go in, pages come
//! out, and the caller says what time it is.

use std::collections::{BTreeSet, HashMap, VecDeque};

use opentelemetry::trace::SpanContext;
use storefront_schemas::{
    Ad, Milestone, PageCompleted, PageStatus, Purchase, RequestContext, RequestId, Resolution,
    UserProfile,
};

/// Where a part came from, so its offset can be committed once its page is out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// One input of a page.
#[derive(Debug, Clone)]
pub enum Part {
    /// The gateway's request: opens the join and starts its deadline; the
    /// callback URL, if any, travels on with the page.
    Requested {
        callback_url: Option<String>,
    },
    User {
        status: Resolution,
        rejection: Option<String>,
        user: Option<UserProfile>,
    },
    History(Vec<Purchase>),
    Ads(Vec<Ad>),
}

/// What a part brings besides its content: the span that sent it, and the
/// milestone it records (its service picking up the request).
#[derive(Debug, Clone, Default)]
pub struct Arrival {
    pub sent_by: Option<SpanContext>,
    pub milestone: Option<Milestone>,
}

/// A page to send, with the inputs it consumed.
#[derive(Debug, Clone)]
pub struct ReadyPage {
    pub page: PageCompleted,
    /// The span that sent the request (else the first part): the page's parent.
    pub parent: Option<SpanContext>,
    /// The spans that sent every part joined.
    pub links: Vec<SpanContext>,
    pub sources: Vec<Source>,
}

#[derive(Debug)]
struct Pending {
    context: RequestContext,
    parent: Option<SpanContext>,
    links: Vec<SpanContext>,
    milestones: Vec<Milestone>,
    user: Option<(Resolution, Option<String>, Option<UserProfile>)>,
    history: Option<Vec<Purchase>>,
    ads: Option<Vec<Ad>>,
    callback_url: Option<String>,
    sources: Vec<Source>,
}

/// What became of a part.
#[derive(Debug)]
pub enum Added {
    /// The join waits for more parts or its deadline.
    Waiting,
    /// The part completed (or rejected) the page.
    Emit(Box<ReadyPage>),
    /// The page was already emitted: the part changes nothing.
    Late(Source),
    /// The request's deadline passed longer ago than answers are
    /// remembered: whether it was answered is unknown, so it is dropped.
    Expired(Source),
}

/// Pending joins by request id, their deadlines, and the pages already out.
#[derive(Debug, Default)]
pub struct Joins {
    pending: HashMap<RequestId, Pending>,
    deadlines: BTreeSet<(i64, RequestId)>,
    emitted: HashMap<RequestId, i64>,
    emitted_order: VecDeque<(i64, RequestId)>,
}

/// How long an emitted request id is remembered, to drop late and
/// redelivered parts; also how far back a restarted aggregator reads
/// `page.completed` to learn what it already answered.
pub const REMEMBER_EMITTED_MS: i64 = 10 * 60 * 1000;

impl Joins {
    /// Adds one part of a request at time `now_ms`.
    pub fn add(
        &mut self,
        context: RequestContext,
        part: Part,
        arrival: Arrival,
        source: Source,
        now_ms: i64,
    ) -> Added {
        if self.emitted.contains_key(&context.request_id) {
            return Added::Late(source);
        }
        if context.deadline_ms + REMEMBER_EMITTED_MS < now_ms
            && !self.pending.contains_key(&context.request_id)
        {
            return Added::Expired(source);
        }
        let request_id = context.request_id;
        let pending = self.pending.entry(request_id).or_insert_with(|| {
            self.deadlines.insert((context.deadline_ms, request_id));
            Pending {
                context,
                parent: None,
                links: Vec::new(),
                milestones: Vec::new(),
                user: None,
                history: None,
                ads: None,
                callback_url: None,
                sources: Vec::new(),
            }
        });
        pending.sources.push(source);
        if let Some(sent_by) = arrival.sent_by {
            if pending.parent.is_none() || matches!(part, Part::Requested { .. }) {
                pending.parent = Some(sent_by.clone());
            }
            if !pending.links.contains(&sent_by) {
                pending.links.push(sent_by);
            }
        }
        if let Some(milestone) = arrival.milestone {
            // A redelivered part replaces its own milestone.
            pending
                .milestones
                .retain(|m| (&m.stage, &m.service) != (&milestone.stage, &milestone.service));
            pending.milestones.push(milestone);
        }
        match part {
            Part::Requested { callback_url } => pending.callback_url = callback_url,
            Part::User {
                status,
                rejection,
                user,
            } => pending.user = Some((status, rejection, user)),
            Part::History(purchases) => pending.history = Some(purchases),
            Part::Ads(ads) => pending.ads = Some(ads),
        }
        let done = match &pending.user {
            Some((Resolution::Rejected, ..)) => true,
            Some((Resolution::Authenticated, ..)) => {
                pending.history.is_some() && pending.ads.is_some()
            }
            None => false,
        };
        if done {
            Added::Emit(Box::new(self.finish(request_id, now_ms)))
        } else {
            Added::Waiting
        }
    }

    /// The earliest deadline still pending (Unix ms).
    pub fn next_deadline(&self) -> Option<i64> {
        self.deadlines.first().map(|(deadline, _)| *deadline)
    }

    /// Emits every join whose deadline has passed, with what it has.
    pub fn expire(&mut self, now_ms: i64) -> Vec<ReadyPage> {
        let due: Vec<RequestId> = self
            .deadlines
            .iter()
            .take_while(|(deadline, _)| *deadline <= now_ms)
            .map(|(_, id)| *id)
            .collect();
        due.into_iter().map(|id| self.finish(id, now_ms)).collect()
    }

    /// Requests answered recently enough to be remembered.
    pub fn remembered(&self) -> usize {
        self.emitted.len()
    }

    /// Drops the pending joins of partitions `keep` refuses (revoked: the
    /// new owner rebuilds them from the uncommitted inputs); returns how many.
    pub fn retain_partitions(&mut self, keep: impl Fn(i32) -> bool) -> usize {
        let before = self.pending.len();
        let deadlines = &mut self.deadlines;
        self.pending.retain(|request_id, p| {
            // Co-partitioned: every part of a request has the same partition number.
            let kept = p.sources.first().is_none_or(|s| keep(s.partition));
            if !kept {
                deadlines.remove(&(p.context.deadline_ms, *request_id));
            }
            kept
        });
        before - self.pending.len()
    }

    /// Records that `request_id` was answered at `at_ms` (as read back from
    /// `page.completed` after a restart or a rebalance). A join already
    /// rebuilt for it is dropped; its parts are returned to be committed.
    pub fn mark_emitted(&mut self, request_id: RequestId, at_ms: i64) -> Vec<Source> {
        if self.emitted.contains_key(&request_id) {
            return Vec::new();
        }
        let sources = match self.pending.remove(&request_id) {
            Some(p) => {
                self.deadlines.remove(&(p.context.deadline_ms, request_id));
                p.sources
            }
            None => Vec::new(),
        };
        self.remember(request_id, at_ms);
        sources
    }

    fn remember(&mut self, request_id: RequestId, at_ms: i64) {
        self.emitted.insert(request_id, at_ms);
        self.emitted_order.push_back((at_ms, request_id));
        while self
            .emitted_order
            .front()
            .is_some_and(|(at, _)| at + REMEMBER_EMITTED_MS <= at_ms)
        {
            let (at, old) = self.emitted_order.pop_front().expect("checked");
            // Unless forgotten and made again since.
            if self.emitted.get(&old) == Some(&at) {
                self.emitted.remove(&old);
            }
        }
    }

    /// A page made for `request_id` was given up, never written (its
    /// partition changed hands before its transaction committed, or the
    /// producer failed): the request is not answered, so its parts, read
    /// again, build the join anew instead of being dropped as late.
    pub fn forget_emitted(&mut self, request_id: RequestId) {
        self.emitted.remove(&request_id);
    }

    /// Joins still waiting.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn finish(&mut self, request_id: RequestId, now_ms: i64) -> ReadyPage {
        let p = self
            .pending
            .remove(&request_id)
            .expect("finish is called for pending joins");
        self.deadlines.remove(&(p.context.deadline_ms, request_id));
        self.remember(request_id, now_ms);
        let mut missing = Vec::new();
        let (status, rejection, user) = match p.user {
            Some((Resolution::Rejected, rejection, _)) => (PageStatus::Rejected, rejection, None),
            Some((Resolution::Authenticated, _, user)) => {
                if p.history.is_none() {
                    missing.push("history".to_owned());
                }
                if p.ads.is_none() {
                    missing.push("ads".to_owned());
                }
                let status = if missing.is_empty() {
                    PageStatus::Complete
                } else {
                    PageStatus::Partial
                };
                (status, None, user)
            }
            None => {
                missing.extend(["user", "history", "ads"].map(String::from));
                (PageStatus::Unavailable, None, None)
            }
        };
        let authenticated = matches!(status, PageStatus::Complete | PageStatus::Partial);
        let mut milestones = p.milestones;
        milestones.push(Milestone {
            stage: "completed".into(),
            service: "aggregator".into(),
            at_ms: now_ms,
        });
        milestones.sort_by_key(|m| m.at_ms);
        let page = PageCompleted {
            context: p.context,
            status,
            missing,
            rejection,
            user,
            recent_purchases: if authenticated {
                p.history.unwrap_or_default()
            } else {
                vec![]
            },
            ads: if authenticated {
                p.ads.unwrap_or_default()
            } else {
                vec![]
            },
            milestones,
            callback_url: p.callback_url,
        };
        ReadyPage {
            page,
            parent: p.parent,
            links: p.links,
            sources: p.sources,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request id a test names `name`.
    fn request(name: &str) -> RequestId {
        let mut bytes = [0; 16];
        for (byte, c) in bytes.iter_mut().zip(name.bytes()) {
            *byte = c;
        }
        RequestId::derived(bytes)
    }

    fn context(name: &str, deadline_ms: i64) -> RequestContext {
        RequestContext {
            request_id: request(name),
            session_id: storefront_schemas::SessionId::derived([0; 16]),
            requested_at_ms: 0,
            deadline_ms,
            reply_topic: "page.completed".into(),
            reply_partition: 0,
        }
    }

    fn source(offset: i64) -> Source {
        Source {
            topic: "t".into(),
            partition: 0,
            offset,
        }
    }

    fn user() -> Part {
        Part::User {
            status: Resolution::Authenticated,
            rejection: None,
            user: Some(UserProfile {
                customer_id: "c".into(),
                name: "Dana".into(),
                city: "Lyon".into(),
            }),
        }
    }

    #[test]
    fn a_page_completes_when_all_parts_are_in_whatever_their_order() {
        let mut joins = Joins::default();
        assert!(matches!(
            joins.add(
                context("r", 250),
                Part::Ads(vec![]),
                Arrival::default(),
                source(1),
                10
            ),
            Added::Waiting
        ));
        assert!(matches!(
            joins.add(context("r", 250), user(), Arrival::default(), source(2), 20),
            Added::Waiting
        ));
        let Added::Emit(ready) = joins.add(
            context("r", 250),
            Part::History(vec![]),
            Arrival::default(),
            source(3),
            30,
        ) else {
            panic!("expected the page")
        };
        assert_eq!(ready.page.status, PageStatus::Complete);
        assert!(ready.page.missing.is_empty());
        assert_eq!(ready.sources.len(), 3);
        assert_eq!(joins.next_deadline(), None);
    }

    #[test]
    fn the_requests_callback_url_travels_on_with_its_page() {
        let mut joins = Joins::default();
        let callback_url = Some("https://shop.example/hooks/pages".to_owned());
        joins.add(context("r", 250), user(), Arrival::default(), source(1), 1);
        joins.add(
            context("r", 250),
            Part::Requested {
                callback_url: callback_url.clone(),
            },
            Arrival::default(),
            source(2),
            2,
        );
        let pages = joins.expire(250);
        assert_eq!(pages[0].page.callback_url, callback_url);
    }

    #[test]
    fn a_rejected_user_is_answered_at_once() {
        let mut joins = Joins::default();
        let rejected = Part::User {
            status: Resolution::Rejected,
            rejection: Some("invalid_credentials".into()),
            user: None,
        };
        let Added::Emit(ready) = joins.add(
            context("r", 250),
            rejected,
            Arrival::default(),
            source(1),
            5,
        ) else {
            panic!()
        };
        assert_eq!(ready.page.status, PageStatus::Rejected);
        assert_eq!(ready.page.rejection.as_deref(), Some("invalid_credentials"));
    }

    #[test]
    fn at_the_deadline_a_partial_page_names_what_is_missing() {
        let mut joins = Joins::default();
        joins.add(
            context("r", 250),
            Part::Requested { callback_url: None },
            Arrival::default(),
            source(1),
            0,
        );
        joins.add(context("r", 250), user(), Arrival::default(), source(2), 40);
        joins.add(
            context("r", 250),
            Part::History(vec![]),
            Arrival::default(),
            source(3),
            60,
        );
        assert!(joins.expire(249).is_empty(), "not before the deadline");
        let pages = joins.expire(250);
        assert_eq!(pages.len(), 1);
        assert_eq!(pages[0].page.status, PageStatus::Partial);
        assert_eq!(pages[0].page.missing, ["ads"]);
        assert!(matches!(
            joins.add(
                context("r", 250),
                Part::Ads(vec![]),
                Arrival::default(),
                source(4),
                300
            ),
            Added::Late(_)
        ));
    }

    #[test]
    fn without_a_user_by_the_deadline_the_page_is_unavailable() {
        let mut joins = Joins::default();
        joins.add(
            context("r", 100),
            Part::Requested { callback_url: None },
            Arrival::default(),
            source(1),
            0,
        );
        joins.add(
            context("q", 300),
            Part::Requested { callback_url: None },
            Arrival::default(),
            source(2),
            0,
        );
        let pages = joins.expire(150);
        assert_eq!(pages.len(), 1);
        assert_eq!(pages[0].page.status, PageStatus::Unavailable);
        assert_eq!(pages[0].page.missing, ["user", "history", "ads"]);
        assert_eq!(joins.next_deadline(), Some(300));
        assert_eq!(joins.pending(), 1);
    }

    #[test]
    fn answered_requests_are_forgotten_after_ten_minutes() {
        let mut joins = Joins::default();
        let rejected = || Part::User {
            status: Resolution::Rejected,
            rejection: None,
            user: None,
        };
        joins.add(
            context("old", 250),
            rejected(),
            Arrival::default(),
            source(1),
            0,
        );
        joins.add(
            context("new", REMEMBER_EMITTED_MS + 250),
            rejected(),
            Arrival::default(),
            source(2),
            REMEMBER_EMITTED_MS,
        );
        assert_eq!(joins.remembered(), 1);
    }

    #[test]
    fn the_page_records_each_milestone_once_and_links_every_sender() {
        use opentelemetry::trace::{SpanId, TraceFlags, TraceId, TraceState};
        let sender = |span: u64| {
            SpanContext::new(
                TraceId::from(7u128),
                SpanId::from(span),
                TraceFlags::SAMPLED,
                true,
                TraceState::default(),
            )
        };
        let arrival = |span: u64, service: &str, at_ms: i64| Arrival {
            sent_by: Some(sender(span)),
            milestone: Some(Milestone {
                stage: "picked_up".into(),
                service: service.into(),
                at_ms,
            }),
        };
        let mut joins = Joins::default();
        joins.add(
            context("r", 250),
            user(),
            arrival(2, "user-svc", 5),
            source(2),
            9,
        );
        joins.add(
            context("r", 250),
            Part::Requested { callback_url: None },
            arrival(1, "aggregator", 3),
            source(1),
            10,
        );
        joins.add(
            context("r", 250),
            user(),
            arrival(2, "user-svc", 6),
            source(2),
            11,
        );
        joins.add(
            context("r", 250),
            Part::Ads(vec![]),
            arrival(3, "ads-svc", 20),
            source(3),
            21,
        );
        let Added::Emit(ready) = joins.add(
            context("r", 250),
            Part::History(vec![]),
            arrival(4, "history-svc", 15),
            source(4),
            30,
        ) else {
            panic!("expected the page")
        };
        assert_eq!(
            ready.parent,
            Some(sender(1)),
            "the request's sender is the parent"
        );
        assert_eq!(ready.links.len(), 4);
        let steps: Vec<(&str, &str, i64)> = ready
            .page
            .milestones
            .iter()
            .map(|m| (m.stage.as_str(), m.service.as_str(), m.at_ms))
            .collect();
        assert_eq!(
            steps,
            [
                ("picked_up", "aggregator", 3),
                ("picked_up", "user-svc", 6),
                ("picked_up", "history-svc", 15),
                ("picked_up", "ads-svc", 20),
                ("completed", "aggregator", 30),
            ]
        );
    }

    #[test]
    fn a_request_answered_before_a_restart_is_not_answered_again() {
        let mut joins = Joins::default();
        joins.add(context("r", 250), user(), Arrival::default(), source(1), 10);
        assert_eq!(joins.mark_emitted(request("r"), 20), vec![source(1)]);
        assert_eq!(joins.pending(), 0);
        assert_eq!(joins.next_deadline(), None);
        assert!(matches!(
            joins.add(
                context("r", 250),
                Part::Ads(vec![]),
                Arrival::default(),
                source(2),
                30
            ),
            Added::Late(_)
        ));
        assert!(joins.expire(1_000).is_empty());
    }

    #[test]
    fn a_page_given_up_is_no_answer_its_parts_read_again_make_it_anew() {
        let mut joins = Joins::default();
        joins.add(context("r", 250), user(), Arrival::default(), source(1), 10);
        assert_eq!(
            joins.expire(250).len(),
            1,
            "the partial page at the deadline"
        );
        joins.forget_emitted(request("r"));
        let again = joins.add(
            context("r", 250),
            user(),
            Arrival::default(),
            source(1),
            300,
        );
        assert!(matches!(again, Added::Waiting), "the join is built anew");
        let again = joins.expire(300);
        assert_eq!(again.len(), 1, "the page is made again");
        assert_eq!(again[0].sources, vec![source(1)]);
        // Forgotten and remembered again: pruning the first memory keeps the second.
        joins.add(
            context("later", REMEMBER_EMITTED_MS + 250),
            user(),
            Arrival::default(),
            source(2),
            REMEMBER_EMITTED_MS + 250,
        );
        joins.expire(REMEMBER_EMITTED_MS + 250);
        assert_eq!(joins.remembered(), 2);
    }

    #[test]
    fn a_request_older_than_the_memory_of_answers_is_dropped_as_expired() {
        let mut joins = Joins::default();
        let now = 250 + REMEMBER_EMITTED_MS + 1;
        assert!(matches!(
            joins.add(
                context("r", 250),
                user(),
                Arrival::default(),
                source(1),
                now
            ),
            Added::Expired(_)
        ));
        assert_eq!(joins.pending(), 0);
    }

    #[test]
    fn joins_of_revoked_partitions_are_handed_back() {
        let mut joins = Joins::default();
        let on = |partition, offset| Source {
            topic: "t".into(),
            partition,
            offset,
        };
        joins.add(context("a", 250), user(), Arrival::default(), on(0, 1), 0);
        joins.add(context("b", 300), user(), Arrival::default(), on(1, 1), 0);
        assert_eq!(joins.retain_partitions(|p| p == 1), 1);
        assert_eq!(joins.pending(), 1);
        assert_eq!(joins.next_deadline(), Some(300));
    }
}

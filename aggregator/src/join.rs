//! The per-request join, free of Kafka and clocks: parts go in, pages come
//! out, and the caller says what time it is.

use std::collections::{BTreeSet, HashMap, VecDeque};

use storefront_runtime::TraceParent;
use storefront_schemas::{
    Ad, PageCompleted, PageStatus, Purchase, RequestContext, Resolution, UserProfile,
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
    /// The gateway's request: opens the join and starts its deadline.
    Requested,
    User {
        status: Resolution,
        rejection: Option<String>,
        user: Option<UserProfile>,
    },
    History(Vec<Purchase>),
    Ads(Vec<Ad>),
}

/// A page to send, with the inputs it consumed.
#[derive(Debug, Clone)]
pub struct ReadyPage {
    pub page: PageCompleted,
    pub trace: Option<TraceParent>,
    pub sources: Vec<Source>,
}

#[derive(Debug)]
struct Pending {
    context: RequestContext,
    trace: Option<TraceParent>,
    user: Option<(Resolution, Option<String>, Option<UserProfile>)>,
    history: Option<Vec<Purchase>>,
    ads: Option<Vec<Ad>>,
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
}

/// Pending joins by request id, their deadlines, and the pages already out.
#[derive(Debug, Default)]
pub struct Joins {
    pending: HashMap<String, Pending>,
    deadlines: BTreeSet<(i64, String)>,
    emitted: HashMap<String, i64>,
    emitted_order: VecDeque<(i64, String)>,
}

/// How long an emitted request id is remembered, to drop late and redelivered parts.
const REMEMBER_EMITTED_MS: i64 = 10 * 60 * 1000;

impl Joins {
    /// Adds one part of a request at time `now_ms`.
    pub fn add(
        &mut self,
        context: RequestContext,
        part: Part,
        trace: Option<TraceParent>,
        source: Source,
        now_ms: i64,
    ) -> Added {
        if self.emitted.contains_key(&context.request_id) {
            return Added::Late(source);
        }
        let request_id = context.request_id.clone();
        let pending = self.pending.entry(request_id.clone()).or_insert_with(|| {
            self.deadlines
                .insert((context.deadline_ms, request_id.clone()));
            Pending {
                context,
                trace: None,
                user: None,
                history: None,
                ads: None,
                sources: Vec::new(),
            }
        });
        pending.sources.push(source);
        if pending.trace.is_none() || matches!(part, Part::Requested) {
            pending.trace = trace.or(pending.trace);
        }
        match part {
            Part::Requested => {}
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
            Added::Emit(Box::new(self.finish(&request_id, now_ms)))
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
        let due: Vec<String> = self
            .deadlines
            .iter()
            .take_while(|(deadline, _)| *deadline <= now_ms)
            .map(|(_, id)| id.clone())
            .collect();
        due.iter().map(|id| self.finish(id, now_ms)).collect()
    }

    /// Requests answered recently enough to be remembered.
    pub fn remembered(&self) -> usize {
        self.emitted.len()
    }

    /// Joins still waiting.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn finish(&mut self, request_id: &str, now_ms: i64) -> ReadyPage {
        let p = self
            .pending
            .remove(request_id)
            .expect("finish is called for pending joins");
        self.deadlines
            .remove(&(p.context.deadline_ms, request_id.to_owned()));
        self.emitted.insert(request_id.to_owned(), now_ms);
        self.emitted_order
            .push_back((now_ms, request_id.to_owned()));
        while self
            .emitted_order
            .front()
            .is_some_and(|(at, _)| at + REMEMBER_EMITTED_MS <= now_ms)
        {
            let (_, old) = self.emitted_order.pop_front().expect("checked");
            self.emitted.remove(&old);
        }
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
        };
        ReadyPage {
            page,
            trace: p.trace,
            sources: p.sources,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(id: &str, deadline_ms: i64) -> RequestContext {
        RequestContext {
            request_id: id.into(),
            session_id: "s".into(),
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
            joins.add(context("r", 250), Part::Ads(vec![]), None, source(1), 10),
            Added::Waiting
        ));
        assert!(matches!(
            joins.add(context("r", 250), user(), None, source(2), 20),
            Added::Waiting
        ));
        let Added::Emit(ready) = joins.add(
            context("r", 250),
            Part::History(vec![]),
            None,
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
    fn a_rejected_user_is_answered_at_once() {
        let mut joins = Joins::default();
        let rejected = Part::User {
            status: Resolution::Rejected,
            rejection: Some("invalid_credentials".into()),
            user: None,
        };
        let Added::Emit(ready) = joins.add(context("r", 250), rejected, None, source(1), 5) else {
            panic!()
        };
        assert_eq!(ready.page.status, PageStatus::Rejected);
        assert_eq!(ready.page.rejection.as_deref(), Some("invalid_credentials"));
    }

    #[test]
    fn at_the_deadline_a_partial_page_names_what_is_missing() {
        let mut joins = Joins::default();
        joins.add(context("r", 250), Part::Requested, None, source(1), 0);
        joins.add(context("r", 250), user(), None, source(2), 40);
        joins.add(
            context("r", 250),
            Part::History(vec![]),
            None,
            source(3),
            60,
        );
        assert!(joins.expire(249).is_empty(), "not before the deadline");
        let pages = joins.expire(250);
        assert_eq!(pages.len(), 1);
        assert_eq!(pages[0].page.status, PageStatus::Partial);
        assert_eq!(pages[0].page.missing, ["ads"]);
        assert!(matches!(
            joins.add(context("r", 250), Part::Ads(vec![]), None, source(4), 300),
            Added::Late(_)
        ));
    }

    #[test]
    fn without_a_user_by_the_deadline_the_page_is_unavailable() {
        let mut joins = Joins::default();
        joins.add(context("r", 100), Part::Requested, None, source(1), 0);
        joins.add(context("q", 300), Part::Requested, None, source(2), 0);
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
        joins.add(context("old", 250), rejected(), None, source(1), 0);
        joins.add(
            context("new", REMEMBER_EMITTED_MS + 250),
            rejected(),
            None,
            source(2),
            REMEMBER_EMITTED_MS,
        );
        assert_eq!(joins.remembered(), 1);
    }
}

//! What the fuzz targets and the seed generator (`examples/seeds.rs`) share:
//! the realistic events the decoder seeds are encoded from, the fixed cookie
//! key and session the cookie target checks signatures against, and the
//! layout of the HTTP targets' inputs, written by one and read by the other.

use storefront_schemas::{
    Ad, AdsSelected, CallbackOutcome, CallbackReported, Credential, Customer, HistoryFetched,
    LoginAttempt, Milestone, Order, PageCompleted, PageRequested, PageStatus, Product, Purchase,
    RequestContext, RequestId, Resolution, Session, SessionId, UserProfile, UserResolved,
};

/// The cookie key of the cookie target (base64 of 32 bytes `0x2a`): fixed,
/// so a seed signed with it stays valid between runs and the fuzzer can
/// mutate a real signature.
pub const COOKIE_KEY_BASE64: &str = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=";

/// The session the cookie seeds are signed for.
pub const SESSION_ID: &str = "0190a6c4-0000-7000-8000-000000000002";

/// Longest accepted `Idempotency-Key` (`MAX_IDEMPOTENCY_KEY` in gateway/src/lifecycle.rs).
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Longest accepted callback URL (`MAX_URL_LEN` in gateway/src/webhooks.rs).
pub const MAX_URL_LEN: usize = 2048;

/// The content types the `json_bodies` target picks from by its second byte;
/// any other value takes the input's first line as the content type.
pub const CONTENT_TYPES: [Option<&str>; 4] = [
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("text/plain"),
    None,
];

/// Which route a `json_bodies` input is posted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Login,
    Pages,
}

/// A `json_bodies` input: `[route, content type choice, (content type line
/// '\n' if the choice is past CONTENT_TYPES), body...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyInput<'a> {
    pub route: Route,
    /// `None`: no `Content-Type` header.
    pub content_type: Option<std::borrow::Cow<'a, str>>,
    pub body: &'a [u8],
}

impl<'a> BodyInput<'a> {
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        let [route, choice, rest @ ..] = data else {
            return None;
        };
        let route = if route & 1 == 0 {
            Route::Login
        } else {
            Route::Pages
        };
        let (content_type, body) = match CONTENT_TYPES.get(usize::from(*choice)) {
            Some(fixed) => (fixed.map(Into::into), rest),
            None => {
                let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
                // Arbitrary printable ASCII, as a client may send.
                let line: String = rest[..end]
                    .iter()
                    .filter(|b| (b' '..=b'~').contains(*b))
                    .map(|&b| char::from(b))
                    .collect();
                (Some(line.into()), rest.get(end + 1..).unwrap_or_default())
            }
        };
        Some(Self {
            route,
            content_type,
            body,
        })
    }

    /// The bytes that parse back into `route`, `content_type` and `body`.
    pub fn to_bytes(route: Route, content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
        let mut out = vec![u8::from(route == Route::Pages)];
        match CONTENT_TYPES.iter().position(|c| *c == content_type) {
            Some(choice) => out.push(choice as u8),
            None => {
                out.push(0xff);
                out.extend_from_slice(content_type.unwrap_or_default().as_bytes());
                out.push(b'\n');
            }
        }
        out.extend_from_slice(body);
        out
    }
}

/// A `callback_url` input: `[allow_http flag, allowed hosts '\n', URL...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackInput {
    pub allow_http: bool,
    pub allowed_hosts: String,
    pub url: String,
}

impl CallbackInput {
    pub fn parse(data: &[u8]) -> Option<Self> {
        let [flag, rest @ ..] = data else {
            return None;
        };
        let end = rest.iter().position(|&b| b == b'\n')?;
        Some(Self {
            allow_http: flag & 1 == 1,
            allowed_hosts: String::from_utf8_lossy(&rest[..end]).into_owned(),
            url: String::from_utf8_lossy(&rest[end + 1..]).into_owned(),
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![u8::from(self.allow_http)];
        out.extend_from_slice(self.allowed_hosts.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(self.url.as_bytes());
        out
    }
}

/// Splits a header block (`name: value` lines) into its headers; a line
/// without a colon is skipped. Bytes are kept as they are: the target
/// decides what a header value may hold.
pub fn header_lines(data: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    data.split(|&b| b == b'\n').filter_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        let value = &line[colon + 1..];
        let start = value.iter().position(|&b| b != b' ').unwrap_or(value.len());
        Some((&line[..colon], &value[start..]))
    })
}

// Realistic events: the field values of schemas/tests/evolution.rs and of
// the demo account as devstack/src/seed.rs makes it.

const EPOCH_MS: i64 = 1_767_225_600_000;

pub fn context() -> RequestContext {
    RequestContext {
        request_id: RequestId::parse("0190a6c4-0000-7000-8000-000000000001").unwrap(),
        session_id: SessionId::parse(SESSION_ID).unwrap(),
        requested_at_ms: EPOCH_MS,
        deadline_ms: EPOCH_MS + 250,
        reply_topic: "page.completed".into(),
        reply_partition: 3,
    }
}

pub fn user() -> UserProfile {
    UserProfile {
        customer_id: "c-demo".into(),
        name: "Dana Demo".into(),
        city: "Lyon".into(),
    }
}

pub fn purchases() -> Vec<Purchase> {
    vec![
        Purchase {
            product_id: "p-00017".into(),
            name: "Copper Kettle".into(),
            category: "kitchen".into(),
            price_cents: 2599,
            purchased_at_ms: EPOCH_MS - 3 * 86_400_000,
        },
        Purchase {
            product_id: "p-00042".into(),
            name: "Nordic Coffee Grinder".into(),
            category: "coffee".into(),
            price_cents: 4900,
            purchased_at_ms: EPOCH_MS - 6 * 86_400_000,
        },
    ]
}

pub fn ads() -> Vec<Ad> {
    vec![Ad {
        product_id: "p-00023".into(),
        name: "Rustic Teapot".into(),
        price_cents: 1999,
        reason: "bought with Copper Kettle".into(),
    }]
}

/// A login with a sealed password (the bytes stand for a sealed box).
pub fn page_requested_login() -> PageRequested {
    PageRequested {
        context: context(),
        login: Some(LoginAttempt {
            username: "demo".into(),
            sealed_password: (0..=79).collect(),
        }),
        logout: false,
        callback_url: Some("https://hooks.example.com/storefront".into()),
        idempotency_key: None,
    }
}

/// A page for a session, with an idempotency key.
pub fn page_requested_page() -> PageRequested {
    PageRequested {
        context: context(),
        login: None,
        logout: false,
        callback_url: None,
        idempotency_key: Some("order-7-page".into()),
    }
}

pub fn user_resolved() -> UserResolved {
    UserResolved {
        context: context(),
        status: Resolution::Authenticated,
        rejection: None,
        user: Some(user()),
    }
}

pub fn user_rejected() -> UserResolved {
    UserResolved {
        context: context(),
        status: Resolution::Rejected,
        rejection: Some(storefront_schemas::rejection::INVALID_CREDENTIALS.into()),
        user: None,
    }
}

pub fn history_fetched() -> HistoryFetched {
    HistoryFetched {
        context: context(),
        customer_id: "c-demo".into(),
        purchases: purchases(),
    }
}

pub fn ads_selected() -> AdsSelected {
    AdsSelected {
        context: context(),
        customer_id: "c-demo".into(),
        ads: ads(),
    }
}

/// Every field set.
pub fn page_completed() -> PageCompleted {
    PageCompleted {
        context: context(),
        status: PageStatus::Partial,
        missing: vec!["ads".into()],
        rejection: None,
        user: Some(user()),
        recent_purchases: purchases(),
        ads: ads(),
        milestones: vec![
            Milestone {
                stage: "picked_up".into(),
                service: "user-svc".into(),
                at_ms: EPOCH_MS + 2,
            },
            Milestone {
                stage: "completed".into(),
                service: "aggregator".into(),
                at_ms: EPOCH_MS + 41,
            },
        ],
        callback_url: Some("https://hooks.example.com/storefront".into()),
    }
}

pub fn callback_reported() -> CallbackReported {
    CallbackReported {
        context: context(),
        url: "https://hooks.example.com/storefront".into(),
        webhook_id: "msg_0190a6c4-0000-7000-8000-000000000001".into(),
        outcome: CallbackOutcome::Failed,
        attempts: 7,
        last_error: Some("HTTP 503".into()),
        reported_at_ms: EPOCH_MS + 900_000,
    }
}

pub fn customer() -> Customer {
    Customer {
        customer_id: "c-demo".into(),
        username: "demo".into(),
        name: "Dana Demo".into(),
        city: "Lyon".into(),
        registered_at_ms: EPOCH_MS - 400 * 86_400_000,
    }
}

pub fn credential() -> Credential {
    Credential {
        username: "demo".into(),
        customer_id: "c-demo".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$\
                        q3Xv7mXhFhQ2r5n2mJ2bq2yqk1Jx0v3yYl1mS8Yd2aM"
            .into(),
    }
}

pub fn product() -> Product {
    Product {
        product_id: "p-00017".into(),
        name: "Copper Kettle".into(),
        category: "kitchen".into(),
        price_cents: 2599,
    }
}

pub fn order() -> Order {
    Order {
        order_id: "o-demo-1".into(),
        customer_id: "c-demo".into(),
        ordered_at_ms: EPOCH_MS - 21 * 86_400_000,
        product_ids: vec!["p-00017".into(), "p-00042".into(), "p-00023".into()],
    }
}

pub fn session() -> Session {
    Session {
        session_id: SessionId::parse(SESSION_ID).unwrap(),
        customer_id: "c-demo".into(),
        opened_at_ms: EPOCH_MS,
        expires_at_ms: EPOCH_MS + 86_400_000,
    }
}

//! The contracts on every storefront topic: one Avro schema per event type
//! (`schemas/avro/*.avsc`), the Rust types that mirror them, and the
//! single-object codec (`C3 01` + Rabin fingerprint + datum) that lets any
//! consumer tell which schema wrote a record without a registry.

mod analytics;
mod codec;
mod events;
mod ids;
mod reference;
mod sealed;
mod sets;

pub use analytics::PagesPerMinute;
pub use codec::{
    contracts, decode, encode, CompiledSchema, Contract, ContractInfo, DecodeError,
    MAX_ENCODED_BYTES, SINGLE_OBJECT_MAGIC,
};
pub use events::{
    Ad, AdsSelected, CallbackOutcome, CallbackReported, HistoryFetched, LoginAttempt, Milestone,
    PageCompleted, PageRequested, PageStatus, Purchase, RequestContext, Resolution, UserProfile,
    UserResolved, DEFAULT_PAGE_DEADLINE_MS,
};
pub use ids::{CustomerId, IdError, ProductId, RequestId, SessionId};
pub use reference::{Credential, Customer, Order, Product, Session};
pub use sealed::{KeyError, SealKey, UnsealKey};
pub use sets::{EventSet, ReferenceRecord, RequestEvent};

/// Why a request was not authenticated: the `rejection` of `user.resolved`
/// and of the page, as clients and analytics read it.
pub mod rejection {
    pub const INVALID_CREDENTIALS: &str = "invalid_credentials";
    pub const UNKNOWN_SESSION: &str = "unknown_session";
    pub const EXPIRED_SESSION: &str = "expired_session";
    /// The answer to a logout: the session is closed.
    pub const LOGGED_OUT: &str = "logged_out";
}

/// Milliseconds since the Unix epoch, the time unit of every event.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

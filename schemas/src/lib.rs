//! The contracts on every storefront topic: one Avro schema per event type
//! (`schemas/avro/*.avsc`), the Rust types that mirror them, and the
//! single-object codec (`C3 01` + Rabin fingerprint + datum) that lets any
//! consumer tell which schema wrote a record without a registry.

mod codec;
mod events;
mod ids;
mod reference;
mod sets;

pub use codec::{
    contracts, decode, encode, CompiledSchema, Contract, ContractInfo, DecodeError,
    MAX_ENCODED_BYTES, SINGLE_OBJECT_MAGIC,
};
pub use events::{
    Ad, AdsSelected, CallbackOutcome, CallbackReported, HistoryFetched, LoginAttempt, Milestone,
    PageCompleted, PageRequested, PageStatus, Purchase, RequestContext, Resolution, UserProfile,
    UserResolved,
};
pub use ids::{CustomerId, IdError, ProductId, RequestId, SessionId};
pub use reference::{Credential, Customer, Order, Product, Session};
pub use sets::{EventSet, ReferenceRecord, RequestEvent};

/// Milliseconds since the Unix epoch, the time unit of every event.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

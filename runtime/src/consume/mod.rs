//! Consuming the request path's topics: group consumers built in one place
//! (`group`), the driver every service of the request path runs
//! (`driver`), which keeps each key's records in order (`keyed`), and the
//! driver of a consumer whose records change one state (`stateful`: the
//! aggregator's joins).

mod driver;
mod group;
mod keyed;
mod stateful;

pub use driver::{log_span, Driver, HandlerError, RecordHandler};
pub use group::{
    Commits, GroupContext, GroupListener, GroupOptions, StartAt, HEARTBEAT_INTERVAL_MS,
    PARTITIONS_ASSIGNED, QUEUED_MAX_KBYTES, SESSION_TIMEOUT_MS,
};
pub use stateful::{GroupConsumer, StatefulDriver, StatefulHandler};

//! Consuming the request path's topics: group consumers built in one place
//! (`group`), and the one driver every consumer of the request path runs
//! (`driver`), which keeps each key's records in order (`keyed`).

mod driver;
mod group;
mod keyed;

pub use driver::{commit_and_close, log_span, Driver, HandlerError, RecordHandler};
pub use group::{
    group_consumer, Commits, GroupContext, GroupListener, GroupOptions, StartAt,
    HEARTBEAT_INTERVAL_MS, PARTITIONS_ASSIGNED, QUEUED_MAX_KBYTES, SESSION_TIMEOUT_MS,
};

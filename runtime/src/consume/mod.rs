//! Consuming the request path's topics: group consumers built in one place
//! (`group`), the driver every service of the request path runs
//! (`driver`), which keeps each key's records in order (`keyed`), and the
//! driver of a consumer whose records change one state (`stateful`: the
//! aggregator's joins), and the driver of work that waits on outside
//! parties, bounded per lane (`lanes`: the gateway's callbacks).

mod driver;
mod group;
mod keyed;
mod lanes;
mod stateful;

pub use driver::{log_span, Driver, HandlerError, RecordHandler};
pub use group::{
    Commits, GroupContext, GroupListener, GroupOptions, StartAt, HEARTBEAT_INTERVAL_MS,
    PARTITIONS_ASSIGNED, QUEUED_MAX_KBYTES, SESSION_TIMEOUT_MS,
};
pub use lanes::{LaneDriver, LaneHandler, LaneLimits, LaneOutcome};
pub use stateful::{GroupConsumer, StatefulDriver, StatefulHandler};

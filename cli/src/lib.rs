//! The `storefront` CLI's library: the tools of the command line (chaos,
//! bench, dlq, trace, tail, replay, schemas, analytics-tap, the operator
//! console) on top of the development
//! stack (`storefront-devstack`: broker, seed, stack, keys), re-exported
//! here under the names the tools use.

pub mod analytics_tap;
pub mod bench;
pub mod chaos;
pub mod console;
pub mod decoded;
pub mod dlq;
pub mod processes;
pub mod replay;
pub mod schemas;
pub mod tail;
pub mod trace;
pub mod when;

pub use storefront_devstack::{broker, keys, seed, stack};

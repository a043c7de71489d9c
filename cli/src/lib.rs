//! The `storefront` CLI's library: the embedded broker, the seed data set,
//! and the five services started together. `storefront up` and the
//! end-to-end tests both use it.

pub mod bench;
pub mod broker;
pub mod chaos;
pub mod decoded;
pub mod dlq;
pub mod keys;
pub mod processes;
pub mod replay;
pub mod schemas;
pub mod seed;
pub mod stack;
pub mod tail;
pub mod trace;
pub mod when;

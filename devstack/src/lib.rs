//! The development stack: the embedded Apache Kafka broker (one node or a
//! cluster, as child processes), the deterministic seed data set, the five
//! services started together in one process, and their keys. `storefront
//! up`, the fault suite, the benchmarks and the end-to-end tests all build
//! on it.

pub mod broker;
pub mod keys;
pub mod seed;
pub mod stack;

//! The Kafka plumbing every storefront service shares: typed settings, topic
//! names and creation, an idempotent producer that stamps the standard
//! headers, one consume driver (order per key, at-least-once,
//! dead-lettering, drain on revoke), readers that fold reference topics
//! into read models, health endpoints, traces, metrics and logs, and
//! shutdown.

pub mod checkpoint;
pub mod consume;
pub mod dead_letter;
pub mod headers;
pub mod health;
pub mod http;
pub mod locator;
pub mod logs;
pub mod metrics;
pub mod offsets;
pub mod partitioner;
pub mod producer;
pub mod quotas;
pub mod reference;
pub mod retry;
pub mod service;
pub mod settings;
pub mod shutdown;
pub mod snapshot;
pub mod telemetry;
pub mod topics;
pub mod trace;
pub mod transaction;
pub mod watermarks;

mod error;
mod inbound;

pub use checkpoint::{InstanceSettings, ReadModel};
pub use consume::{HandlerError, RecordHandler};
pub use dead_letter::DeadLetters;
pub use error::{Error, Result};
pub use headers::EventHeaders;
pub use health::Readiness;
pub use http::HttpLimits;
pub use inbound::{next_record, Inbound};
pub use producer::{EventProducer, Outbound};
pub use reference::ReferenceReader;
pub use service::RunningService;
pub use settings::KafkaSettings;
pub use telemetry::{Telemetry, TelemetrySettings};
pub use topics::Topics;

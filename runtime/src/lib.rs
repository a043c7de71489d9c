//! The Kafka plumbing every storefront service shares: typed settings, topic
//! names and creation, an idempotent producer that stamps the standard
//! headers, an at-least-once consumer loop with dead-lettering, readers that
//! fold reference topics into read models, health endpoints, traces,
//! metrics and logs, and shutdown.

pub mod dead_letter;
pub mod headers;
pub mod health;
pub mod logs;
pub mod metrics;
pub mod offsets;
pub mod partitioner;
pub mod processor;
pub mod producer;
pub mod reference;
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

pub use dead_letter::DeadLetters;
pub use error::{Error, Result};
pub use headers::EventHeaders;
pub use health::Readiness;
pub use inbound::{next_record, Inbound};
pub use processor::{HandlerError, Processor, RecordHandler};
pub use producer::{EventProducer, Outbound};
pub use reference::ReferenceReader;
pub use service::RunningService;
pub use settings::KafkaSettings;
pub use telemetry::{Telemetry, TelemetrySettings};
pub use topics::Topics;

/// What can go wrong in the shared plumbing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kafka client error while trying to {action}: {source}")]
    Kafka {
        action: &'static str,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("topic {topic} could not be created: {reason}")]
    TopicCreation { topic: String, reason: String },
    #[error("request-path topics must have equal partition counts, found {0}")]
    PartitionMismatch(String),
    #[error("failed to bind the HTTP listener on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("a task of {0} panicked")]
    TaskPanicked(&'static str),
    #[error("telemetry could not be set up: {0}")]
    Telemetry(String),
    #[error("gave up waiting for {0}")]
    TimedOut(&'static str),
    #[error("the transactional producer cannot go on: {0}")]
    Transaction(String),
    #[error("the client quota could not be set: {0}")]
    Quota(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether trying again cannot help: the broker refused the record
    /// itself (too large, malformed) or this client's right to write it.
    pub fn is_permanent(&self) -> bool {
        use rdkafka::types::RDKafkaErrorCode as Code;
        match self {
            Self::Kafka { source, .. } => matches!(
                source.rdkafka_error_code(),
                Some(
                    Code::MessageSizeTooLarge
                        | Code::InvalidMessageSize
                        | Code::InvalidMessage
                        | Code::MessageBatchTooLarge
                        | Code::InvalidRecord
                        | Code::InvalidTopic
                        | Code::TopicAuthorizationFailed
                        | Code::ClusterAuthorizationFailed
                )
            ),
            _ => false,
        }
    }
}

/// Adds the action that failed to a Kafka error.
pub(crate) trait KafkaContext<T> {
    fn context(self, action: &'static str) -> Result<T>;
}

impl<T> KafkaContext<T> for std::result::Result<T, rdkafka::error::KafkaError> {
    fn context(self, action: &'static str) -> Result<T> {
        self.map_err(|source| Error::Kafka { action, source })
    }
}

//! Where Kafka is and how the storefront uses it.

use rdkafka::ClientConfig;

use crate::Topics;

/// Kafka settings shared by every service, from flags or `STOREFRONT_*` /
/// `KAFKA_BOOTSTRAP_SERVERS` environment variables.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaSettings {
    /// Kafka bootstrap servers, comma separated.
    #[arg(
        long,
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap_servers: String,
    /// Prefix of every topic and consumer group name (a namespace per test or tenant).
    #[arg(long, env = "STOREFRONT_TOPIC_PREFIX", default_value = "")]
    pub topic_prefix: String,
    /// Partitions of every topic created at start-up; request-path topics must agree.
    #[arg(long, env = "STOREFRONT_PARTITIONS", default_value_t = 3)]
    pub partitions: i32,
    /// Replication factor of topics created at start-up.
    #[arg(long, env = "STOREFRONT_REPLICATION_FACTOR", default_value_t = 1)]
    pub replication_factor: i32,
    /// How long the broker may hold a fetch that found no data (fetch.wait.max.ms).
    /// Kafka answers a held fetch as soon as a record arrives, so this costs no latency.
    #[arg(long, env = "STOREFRONT_FETCH_WAIT_MS", default_value_t = 500)]
    pub fetch_wait_ms: u32,
    /// How long the producer waits to fill a batch (linger.ms): per-hop latency against requests to the broker.
    #[arg(long, env = "STOREFRONT_LINGER_MS", default_value_t = 1)]
    pub linger_ms: u32,
}

impl KafkaSettings {
    /// Settings for a broker at `bootstrap_servers` with every other value at its default.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            topic_prefix: String::new(),
            partitions: 3,
            replication_factor: 1,
            fetch_wait_ms: 500,
            linger_ms: 1,
        }
    }

    /// The topic names under this prefix.
    pub fn topics(&self) -> Topics {
        Topics::with_prefix(&self.topic_prefix)
    }

    /// A consumer group name under this prefix.
    pub fn group(&self, name: &str) -> String {
        format!("{}{name}", self.topic_prefix)
    }

    /// The base client configuration: where the brokers are and who is asking.
    pub fn client_config(&self, client_id: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", client_id)
            .set("log_level", "4");
        config
    }
}

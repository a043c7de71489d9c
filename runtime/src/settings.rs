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

/// Settings parsed from `args` alone, as if no environment variable were
/// set: every default is the one written in the clap attributes, never a
/// second copy of it. Panics if `args` do not parse (they are the
/// program's own).
pub fn defaults<T: clap::Parser>(args: &[&str]) -> T {
    let command = T::command().mut_args(|arg| arg.env(None::<&str>));
    let matches = command
        .try_get_matches_from(std::iter::once("defaults").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("default settings do not parse: {e}"));
    T::from_arg_matches(&matches).unwrap_or_else(|e| panic!("default settings do not parse: {e}"))
}

/// Kafka settings alone, for [`defaults`].
#[derive(clap::Parser)]
struct KafkaOnly {
    #[command(flatten)]
    kafka: KafkaSettings,
}

impl KafkaSettings {
    /// Settings for a broker at `bootstrap_servers` with every other value at its default.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        let bootstrap_servers = bootstrap_servers.into();
        defaults::<KafkaOnly>(&["--bootstrap-servers", &bootstrap_servers]).kafka
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_come_from_the_clap_attributes_and_the_args_given() {
        let settings = KafkaSettings::new("broker:9092");
        assert_eq!(settings.bootstrap_servers, "broker:9092");
        assert_eq!(
            (
                settings.topic_prefix.as_str(),
                settings.partitions,
                settings.replication_factor,
                settings.fetch_wait_ms,
                settings.linger_ms
            ),
            ("", 3, 1, 500, 1)
        );
    }
}

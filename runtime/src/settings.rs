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
    /// librdkafka's debug contexts for every client (`eos`, `cgrp,fetch`,
    /// `all`...), logged at debug level under the `librdkafka` target
    /// (`RUST_LOG=info,librdkafka=debug`): how a client followed a fault.
    #[arg(long, env = KAFKA_DEBUG_VAR)]
    pub kafka_debug: Option<String>,
}

/// The environment variable that sets [`KafkaSettings::kafka_debug`].
pub const KAFKA_DEBUG_VAR: &str = "STOREFRONT_KAFKA_DEBUG";

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

    /// The base configuration of a producer or admin client: where the
    /// brokers are, who is asking, and how fast it follows a moved leader
    /// or coordinator ([`FAILOVER`]).
    pub fn client_config(&self, client_id: &str) -> ClientConfig {
        self.config_for(client_id, Clients::All)
    }

    /// The base configuration of a consumer: [`Self::client_config`] and
    /// the consumers' own failover settings.
    pub fn consumer_config(&self, client_id: &str) -> ClientConfig {
        self.config_for(client_id, Clients::Consumers)
    }

    fn config_for(&self, client_id: &str, clients: Clients) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", client_id)
            .set("log_level", "4");
        if let Some(contexts) = &self.kafka_debug {
            config.set("debug", contexts).set("log_level", "7");
        }
        for setting in FAILOVER {
            if setting.clients == Clients::All || setting.clients == clients {
                config.set(setting.key, setting.value);
            }
        }
        config
    }
}

/// One librdkafka setting of [`FAILOVER`], and why it has its value.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub key: &'static str,
    pub value: &'static str,
    pub clients: Clients,
    pub why: &'static str,
}

/// Which clients a setting applies to (librdkafka warns of a consumer
/// setting given to a producer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clients {
    All,
    Consumers,
}

/// How every client of the storefront notices and follows a broker that
/// stopped, crashed, froze or was cut off, written once (docs/reliability.md
/// lists them). librdkafka's defaults are made for clients that can wait
/// seconds: a fetch error pauses a partition 500 ms, a request to a frozen
/// broker waits 60 s, a connection to a cut-off one 30 s, and leaders
/// are looked up again every 5 minutes. A page has 250 ms.
pub const FAILOVER: &[Setting] = &[
    Setting {
        key: "fetch.error.backoff.ms",
        value: "20",
        clients: Clients::Consumers,
        why: "a partition whose leader moved is fetched from its new leader after 20 ms, not 500",
    },
    Setting {
        key: "retry.backoff.ms",
        value: "20",
        clients: Clients::All,
        why: "a refused request (not the leader, not the coordinator) is sent again after 20 ms; the metadata lookup that finds the new leader starts at this interval too",
    },
    Setting {
        key: "retry.backoff.max.ms",
        value: "500",
        clients: Clients::All,
        why: "and its backoff grows to 500 ms at most while the cluster is moving",
    },
    Setting {
        key: "topic.metadata.refresh.interval.ms",
        value: "1000",
        clients: Clients::All,
        why: "leaders are looked up every second: a frozen or cut-off leader that the cluster fenced is left within a second of its fencing",
    },
    Setting {
        key: "socket.timeout.ms",
        value: "3000",
        clients: Clients::All,
        why: "a request to a broker that stopped answering (frozen, cut off) fails after 3 s, and its connection is closed",
    },
    Setting {
        key: "socket.connection.setup.timeout.ms",
        value: "3000",
        clients: Clients::All,
        why: "a connection that is not set up in 3 s is given up and tried again",
    },
    Setting {
        key: "reconnect.backoff.ms",
        value: "50",
        clients: Clients::All,
        why: "a closed connection is opened again after 50 ms",
    },
    Setting {
        key: "reconnect.backoff.max.ms",
        value: "1000",
        clients: Clients::All,
        why: "and at least once a second while its broker is away, so a returning broker is used at once",
    },
];

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

    #[test]
    fn every_client_gets_the_failover_settings_and_only_consumers_the_consumer_ones() {
        let settings = KafkaSettings::new("broker:9092");
        let (client, consumer) = (settings.client_config("p"), settings.consumer_config("c"));
        for setting in FAILOVER {
            assert_eq!(
                consumer.get(setting.key),
                Some(setting.value),
                "{}",
                setting.key
            );
            let expected = (setting.clients == Clients::All).then_some(setting.value);
            assert_eq!(client.get(setting.key), expected, "{}", setting.key);
        }
        assert!(FAILOVER.iter().any(|s| s.clients == Clients::Consumers));
    }
}

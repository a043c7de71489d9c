//! Topic names, and their idempotent creation at start-up.

use std::{collections::BTreeMap, time::Duration};

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    types::RDKafkaErrorCode,
};

use crate::{
    error::KafkaContext,
    retry::{retry_blocking, Failure, GaveUp, Policy},
    Error, KafkaSettings, Result,
};

/// Every topic of the storefront, under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub page_requested: String,
    pub user_resolved: String,
    pub history_fetched: String,
    pub ads_selected: String,
    pub page_completed: String,
    pub callback_reported: String,
    pub customers: String,
    pub credentials: String,
    pub catalog: String,
    pub orders: String,
    pub sessions: String,
    pub dead_letters: String,
    /// Written by the analytics Kafka Streams job (`examples/analytics-java`), not by a service.
    pub pages_per_minute: String,
}

impl Topics {
    pub fn with_prefix(prefix: &str) -> Self {
        let name = |n: &str| format!("{prefix}{n}");
        Self {
            page_requested: name("page.requested"),
            user_resolved: name("user.resolved"),
            history_fetched: name("history.fetched"),
            ads_selected: name("ads.selected"),
            page_completed: name("page.completed"),
            callback_reported: name("callback.reported"),
            customers: name("customers"),
            credentials: name("credentials"),
            catalog: name("catalog"),
            orders: name("orders"),
            sessions: name("sessions"),
            dead_letters: name("dead-letters"),
            pages_per_minute: name("analytics.pages-per-minute"),
        }
    }

    /// Topics that carry one request's events, keyed and co-partitioned by session.
    pub fn request_path(&self) -> [&str; 6] {
        [
            &self.page_requested,
            &self.user_resolved,
            &self.history_fetched,
            &self.ads_selected,
            &self.page_completed,
            &self.callback_reported,
        ]
    }

    /// Topics the read models are built from; kept forever.
    pub fn reference(&self) -> [&str; 5] {
        [
            &self.customers,
            &self.credentials,
            &self.catalog,
            &self.orders,
            &self.sessions,
        ]
    }

    /// The `event-type` of the one contract `topic` carries (the schema
    /// every record on it is written with); `None` for the dead letters,
    /// which carry records of any, and for a topic of another prefix.
    pub fn contract_of(&self, topic: &str) -> Option<&'static str> {
        let carried = [
            (&self.page_requested, "page.requested"),
            (&self.user_resolved, "user.resolved"),
            (&self.history_fetched, "history.fetched"),
            (&self.ads_selected, "ads.selected"),
            (&self.page_completed, "page.completed"),
            (&self.callback_reported, "callback.reported"),
            (&self.customers, "customer"),
            (&self.credentials, "credential"),
            (&self.catalog, "product"),
            (&self.orders, "order"),
            (&self.sessions, "session"),
            (&self.pages_per_minute, "pages_per_minute"),
        ];
        carried
            .into_iter()
            .find(|(name, _)| name.as_str() == topic)
            .map(|(_, event_type)| event_type)
    }

    /// Every topic.
    pub fn all(&self) -> Vec<&str> {
        let mut all = self.request_path().to_vec();
        all.extend(self.reference());
        all.push(&self.dead_letters);
        all.push(&self.pages_per_minute);
        all
    }
}

const ONE_WEEK_MS: &str = "604800000";
const THIRTY_DAYS_MS: &str = "2592000000";
const ONE_YEAR_MS: &str = "31536000000";

/// Creates every missing topic, then checks that the request-path topics
/// have equal partition counts (whoever created them).
pub async fn ensure_topics(settings: &KafkaSettings) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = settings
        .client_config("storefront-admin")
        .create()
        .context("create an admin client")?;
    let topics = settings.topics();
    // With three replicas or more, a write is acknowledged once two have
    // it (producers use acks=all), so one broker can fail without loss or
    // downtime; said on each topic, whatever the cluster's default.
    let new_topic = |name, partitions, retention_ms| {
        let topic = NewTopic::new(
            name,
            partitions,
            TopicReplication::Fixed(settings.replication_factor),
        )
        .set("retention.ms", retention_ms);
        match settings.replication_factor {
            3.. => topic.set("min.insync.replicas", "2"),
            _ => topic,
        }
    };
    let mut new_topics = Vec::new();
    for name in topics.request_path() {
        new_topics.push(new_topic(name, settings.partitions, ONE_WEEK_MS));
    }
    for name in topics.reference() {
        // Reference data must outlive the default retention (a week): the
        // read models are rebuilt from the whole topic at every start.
        new_topics.push(new_topic(name, settings.partitions, "-1"));
    }
    new_topics.push(new_topic(&topics.dead_letters, 1, THIRTY_DAYS_MS));
    // One record a minute, in order on one partition, kept a year.
    new_topics.push(new_topic(&topics.pages_per_minute, 1, ONE_YEAR_MS));

    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .context("create topics")?;
    for result in results {
        match result {
            Ok(name) => tracing::info!(topic = %name, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(Error::TopicCreation {
                    topic: name,
                    reason: code.to_string(),
                });
            }
        }
    }
    // Creation returns before the partitions have leaders: wait for them
    // all, so that what the caller does next finds every partition served.
    let counts = partition_counts(settings, &topics.all()).await?;
    let distinct: std::collections::BTreeSet<_> = topics
        .request_path()
        .iter()
        .filter_map(|t| counts.get(*t))
        .collect();
    if distinct.len() > 1 {
        return Err(Error::PartitionMismatch(format!("{counts:?}")));
    }
    Ok(())
}

/// Partition count of each topic, waiting until metadata knows them all
/// and every partition has a leader.
pub async fn partition_counts(
    settings: &KafkaSettings,
    topics: &[&str],
) -> Result<BTreeMap<String, i32>> {
    let settings = settings.clone();
    let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let consumer: rdkafka::consumer::BaseConsumer = settings
            .consumer_config("storefront-metadata")
            .create()
            .context("create a metadata client")?;
        let mut counts = BTreeMap::new();
        for topic in &topics {
            // A topic just created has no leaders for a moment.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            let partitions = retry_blocking(Policy::BROKER, deadline, |_| {
                let metadata = rdkafka::consumer::Consumer::fetch_metadata(
                    &consumer,
                    Some(topic),
                    Duration::from_secs(5),
                )
                .context("fetch topic metadata")
                .map_err(Failure::Permanent)?;
                metadata
                    .topics()
                    .first()
                    .filter(|t| t.error().is_none())
                    .filter(|t| {
                        t.partitions()
                            .iter()
                            .all(|p| p.leader() >= 0 && p.error().is_none())
                    })
                    .map(|t| t.partitions().len() as i32)
                    .filter(|&partitions| partitions > 0)
                    .ok_or(Failure::Transient(Error::TimedOut("topic metadata")))
            })
            .map_err(GaveUp::into_inner)?;
            counts.insert(topic.clone(), partitions);
        }
        Ok(counts)
    })
    .await
    .expect("metadata task does not panic")
}

//! `storefront dlq`: list the dead letters, and re-publish chosen ones to
//! where they came from once what refused them is fixed.

use std::time::Duration;

use storefront_runtime::{
    dead_letter::DeadLetter,
    snapshot::{self, Since},
    EventProducer, KafkaSettings, Telemetry,
};

/// Which dead letters a command is about.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Selection {
    /// Only those from this source topic (with the topic prefix).
    #[arg(long)]
    pub source_topic: Option<String>,
    /// Only those a service refused.
    #[arg(long)]
    pub service: Option<String>,
    /// Only these dead letters, as `<partition>:<offset>` of the dead-letter topic (repeatable).
    #[arg(long = "at", value_parser = parse_position)]
    pub positions: Vec<(i32, i64)>,
}

/// `<partition>:<offset>` of the dead-letter topic.
pub fn parse_position(text: &str) -> Result<(i32, i64), String> {
    let (partition, offset) = text
        .split_once(':')
        .ok_or("expected <partition>:<offset>")?;
    Ok((
        partition.parse().map_err(|_| "bad partition")?,
        offset.parse().map_err(|_| "bad offset")?,
    ))
}

impl Selection {
    fn matches(&self, letter: &DeadLetter) -> bool {
        self.source_topic
            .as_ref()
            .is_none_or(|t| *t == letter.source_topic)
            && self.service.as_ref().is_none_or(|s| *s == letter.service)
            && (self.positions.is_empty()
                || self.positions.contains(&(letter.partition, letter.offset)))
    }
}

/// The dead letters now on the topic that `selection` picks, oldest first per partition.
pub async fn list(kafka: &KafkaSettings, selection: &Selection) -> anyhow::Result<Vec<DeadLetter>> {
    let (kafka, selection) = (kafka.clone(), selection.clone());
    tokio::task::spawn_blocking(move || {
        let mut letters = Vec::new();
        snapshot::read_topic(
            &kafka,
            "storefront-dlq",
            &kafka.topics().dead_letters,
            Since::Beginning,
            Duration::from_secs(120),
            |record| {
                if let Some(letter) = DeadLetter::from_record(&record) {
                    if selection.matches(&letter) {
                        letters.push(letter);
                    }
                }
            },
        )?;
        Ok(letters)
    })
    .await?
}

/// Re-publishes each letter to its source; returns how many.
pub async fn republish(kafka: &KafkaSettings, letters: &[DeadLetter]) -> anyhow::Result<usize> {
    let producer = EventProducer::new(kafka, &Telemetry::local("storefront-dlq"))?;
    for letter in letters {
        letter.republish(&producer).await?;
    }
    Ok(letters.len())
}

/// One line per dead letter, for a terminal.
pub fn describe(letter: &DeadLetter) -> String {
    format!(
        "{}:{}\t{}\t{}\t{}[{}]@{}\t{}",
        letter.partition,
        letter.offset,
        letter.timestamp_ms.unwrap_or_default(),
        letter.service,
        letter.source_topic,
        letter.source_partition,
        letter.source_offset,
        letter.reason.replace(['\n', '\t'], " ")
    )
}

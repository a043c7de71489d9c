//! A read model's checkpoint: its state and the offsets of the reference
//! topics it reflects, in one local file, so a restarted service restores
//! it and reads only what came after (Kafka Streams keeps a local store and
//! a checkpoint of changelog offsets for the same reason).
//!
//! The file is the magic line, then (postcard) a [`Stamp`] and the model,
//! then a CRC-32 of everything before it. It is written to a temporary
//! file, synced and renamed over the last one, so a crash mid-write leaves
//! the previous checkpoint whole. A file that fails its CRC, was written by
//! another layout of the model, another service or namespace, another
//! cluster, or names offsets the topics no longer have is never trusted:
//! the model is rebuilt from the topics.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::{Inbound, Topics};

const MAGIC: &[u8] = b"storefront read-model checkpoint 1\n";

/// State folded from reference topics, kept in a checkpoint between runs.
pub trait ReadModel: Serialize + DeserializeOwned + Default + Send + Sync + 'static {
    /// Names the serialized form: change it whenever the form changes, so
    /// that a checkpoint of the old form is rebuilt, never misread.
    const LAYOUT: &'static str;

    /// Folds a record of one of the reference topics; says why a record is bad.
    fn apply(&mut self, record: &Inbound, topics: &Topics) -> Result<(), String>;

    /// Rebuilds what the checkpoint leaves out (indexes derived from the
    /// rest), after a restore.
    fn restored(&mut self) {}
}

/// Where a reference partition's next record is: one entry per partition
/// of every reference topic.
pub type Positions = BTreeMap<(String, i32), i64>;

/// What a checkpoint was taken of; compared with the running service
/// before the checkpoint is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub layout: String,
    pub service: String,
    pub topic_prefix: String,
    /// The Kafka cluster's id: a broker started afresh has other offsets.
    pub cluster_id: Option<String>,
    /// The next offset to read, per reference partition.
    pub positions: Positions,
}

impl Stamp {
    /// Why this checkpoint cannot be used by `expected` (same fields, its
    /// own positions empty) when the partitions now hold `watermarks`
    /// (low, high), or `None` if it can. (The layout is checked before the
    /// model is decoded, by [`Checkpoints::load`].)
    pub fn mismatch(
        &self,
        expected: &Stamp,
        watermarks: &BTreeMap<(String, i32), (i64, i64)>,
    ) -> Option<String> {
        if (&self.service, &self.topic_prefix) != (&expected.service, &expected.topic_prefix) {
            return Some(format!(
                "written by {} in namespace {:?}",
                self.service, self.topic_prefix
            ));
        }
        if self.cluster_id != expected.cluster_id {
            return Some(format!(
                "written for cluster {:?}, the broker is cluster {:?}",
                self.cluster_id, expected.cluster_id
            ));
        }
        if !self.positions.keys().eq(watermarks.keys()) {
            return Some("the reference topics' partitions changed".to_owned());
        }
        for ((topic, partition), &next) in &self.positions {
            let (low, high) = watermarks[&(topic.clone(), *partition)];
            if next > high {
                return Some(format!(
                    "{topic}/{partition} ends at {high}, the checkpoint is at {next}: the topic was recreated"
                ));
            }
            if next < low {
                return Some(format!(
                    "{topic}/{partition} starts at {low}, the checkpoint is at {next}: records it needs were deleted"
                ));
            }
        }
        None
    }
}

/// Where one service keeps its checkpoint, and how often it writes it.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    pub path: PathBuf,
    pub interval: Duration,
}

/// One instance of a service that folds reference topics: its name in its
/// group and where it keeps its read model, from flags or `STOREFRONT_*`
/// environment variables.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct InstanceSettings {
    /// This instance's name, unique among the running instances of the service and kept across its restarts: the group hands a restarted instance its partitions at once (static membership), where a new member waits for its old self to time out. A named instance that stops does not leave its group: its partitions wait for it for the session timeout. Unset: a new member at every start.
    #[arg(long, env = "STOREFRONT_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Directory where the read model's checkpoint is kept (one file per service and namespace); unset, the model is rebuilt from the topics at every start.
    #[arg(long, env = "STOREFRONT_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// How often a changed read model is written to its checkpoint, in seconds.
    #[arg(
        long,
        env = "STOREFRONT_CHECKPOINT_INTERVAL_SECS",
        value_name = "SECS",
        default_value_t = 30
    )]
    pub checkpoint_interval_secs: u64,
}

impl InstanceSettings {
    /// The checkpoint of `service` in `topic_prefix`'s namespace, if kept.
    pub fn checkpoints(&self, service: &str, topic_prefix: &str) -> Option<Checkpoints> {
        let dir = self.state_dir.as_ref()?;
        Some(Checkpoints {
            path: dir.join(format!("{topic_prefix}{service}.checkpoint")),
            interval: Duration::from_secs(self.checkpoint_interval_secs.max(1)),
        })
    }
}

/// Why a checkpoint file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0} is not a checkpoint (no magic line)")]
    Foreign(PathBuf),
    #[error("{0} is corrupt (its CRC does not match)")]
    Corrupt(PathBuf),
    #[error("{path} holds layout {found:?} of the model, this is {expected:?}")]
    OtherLayout {
        path: PathBuf,
        found: String,
        expected: &'static str,
    },
    #[error("{path} does not decode: {reason}")]
    Undecodable { path: PathBuf, reason: String },
}

impl Checkpoints {
    /// The checkpoint's stamp and model, `None` if there is no file.
    pub fn load<M: ReadModel>(&self) -> Result<Option<(Stamp, M)>, CheckpointError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CheckpointError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        decode(&bytes, &self.path).map(Some)
    }

    /// Writes `model` as of `stamp`, replacing the last checkpoint only once
    /// the new one is whole on disk. Returns the file's size.
    pub fn save<M: ReadModel>(&self, stamp: &Stamp, model: &M) -> io::Result<u64> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let temporary = self.path.with_extension("checkpoint.tmp");
        let file = owner_only(&temporary)?;
        let mut out = CrcWriter::new(BufWriter::with_capacity(1 << 16, file));
        out.write_all(MAGIC)?;
        let to_io = |e: postcard::Error| io::Error::other(e.to_string());
        postcard::to_io(stamp, &mut out).map_err(to_io)?;
        postcard::to_io(model, &mut out).map_err(to_io)?;
        let (crc, written, mut buffered) = out.finish();
        buffered.write_all(&crc.to_le_bytes())?;
        let file = buffered.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&temporary, &self.path)?;
        if let Some(dir) = self.path.parent() {
            // The rename itself, made durable.
            File::open(dir)?.sync_all()?;
        }
        Ok(written + 4)
    }
}

/// The checkpoint in `bytes` (read from `path`), checked whole before any
/// of it is decoded.
fn decode<M: ReadModel>(bytes: &[u8], path: &Path) -> Result<(Stamp, M), CheckpointError> {
    if !bytes.starts_with(MAGIC) {
        return Err(CheckpointError::Foreign(path.to_owned()));
    }
    let Some(split) = bytes.len().checked_sub(4).filter(|&at| at >= MAGIC.len()) else {
        return Err(CheckpointError::Corrupt(path.to_owned()));
    };
    let (covered, crc) = bytes.split_at(split);
    if crc32fast::hash(covered).to_le_bytes() != crc {
        return Err(CheckpointError::Corrupt(path.to_owned()));
    }
    let undecodable = |e: postcard::Error| CheckpointError::Undecodable {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let (stamp, rest): (Stamp, _) =
        postcard::take_from_bytes(&covered[MAGIC.len()..]).map_err(undecodable)?;
    if stamp.layout != M::LAYOUT {
        // Another form: decoding it as this one would fail or, worse, not.
        return Err(CheckpointError::OtherLayout {
            path: path.to_owned(),
            found: stamp.layout,
            expected: M::LAYOUT,
        });
    }
    let (mut model, rest): (M, _) = postcard::take_from_bytes(rest).map_err(undecodable)?;
    if !rest.is_empty() {
        return Err(CheckpointError::Undecodable {
            path: path.to_owned(),
            reason: format!("{} bytes left after the model", rest.len()),
        });
    }
    model.restored();
    Ok((stamp, model))
}

/// A new file only its owner can read: checkpoints hold personal data.
fn owner_only(path: &Path) -> io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Passes bytes on, keeping their CRC-32 and count.
struct CrcWriter<W> {
    inner: W,
    hasher: crc32fast::Hasher,
    written: u64,
}

impl<W: Write> CrcWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: crc32fast::Hasher::new(),
            written: 0,
        }
    }

    fn finish(self) -> (u32, u64, W) {
        (self.hasher.finalize(), self.written, self.inner)
    }
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    struct Tally {
        seen: Vec<String>,
        #[serde(skip)]
        count: usize,
    }

    impl ReadModel for Tally {
        const LAYOUT: &'static str = "tally 1";

        fn apply(&mut self, record: &Inbound, _: &Topics) -> Result<(), String> {
            self.seen.push(record.topic.clone());
            self.count += 1;
            Ok(())
        }

        fn restored(&mut self) {
            self.count = self.seen.len();
        }
    }

    fn stamp(next: i64) -> Stamp {
        Stamp {
            layout: Tally::LAYOUT.into(),
            service: "history-svc".into(),
            topic_prefix: "t-".into(),
            cluster_id: Some("cluster-a".into()),
            positions: [(("t-orders".to_owned(), 0), next)].into(),
        }
    }

    fn store() -> (tempfile::TempDir, Checkpoints) {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = InstanceSettings {
            state_dir: Some(dir.path().to_owned()),
            ..Default::default()
        }
        .checkpoints("history-svc", "t-");
        (dir, checkpoints.unwrap())
    }

    fn tally() -> Tally {
        Tally {
            seen: vec!["a".into(), "b".into()],
            count: 2,
        }
    }

    #[test]
    fn a_saved_checkpoint_restores_the_model_and_its_positions() {
        let (_dir, checkpoints) = store();
        assert!(checkpoints.load::<Tally>().unwrap().is_none());
        checkpoints.save(&stamp(7), &tally()).unwrap();
        let (restored_stamp, model) = checkpoints.load::<Tally>().unwrap().unwrap();
        assert_eq!(restored_stamp, stamp(7));
        assert_eq!(model, tally());
        assert_eq!(model.count, 2, "what the file leaves out is rebuilt");
    }

    #[test]
    fn a_flipped_byte_anywhere_is_found_by_the_crc() {
        let (_dir, checkpoints) = store();
        checkpoints.save(&stamp(7), &tally()).unwrap();
        let good = std::fs::read(&checkpoints.path).unwrap();
        for at in MAGIC.len()..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            std::fs::write(&checkpoints.path, &bad).unwrap();
            assert!(
                matches!(
                    checkpoints.load::<Tally>(),
                    Err(CheckpointError::Corrupt(_))
                ),
                "byte {at} flipped"
            );
        }
        std::fs::write(&checkpoints.path, &good[..good.len() / 2]).unwrap();
        assert!(matches!(
            checkpoints.load::<Tally>(),
            Err(CheckpointError::Corrupt(_))
        ));
    }

    #[test]
    fn a_checkpoint_of_another_layout_is_not_decoded() {
        let (_dir, checkpoints) = store();
        let older = Stamp {
            layout: "tally 0".into(),
            ..stamp(7)
        };
        checkpoints.save(&older, &tally()).unwrap();
        assert!(matches!(
            checkpoints.load::<Tally>(),
            Err(CheckpointError::OtherLayout { .. })
        ));
    }

    #[test]
    fn a_file_that_is_no_checkpoint_is_refused() {
        let (_dir, checkpoints) = store();
        std::fs::write(&checkpoints.path, b"{\"orders\": []}").unwrap();
        assert!(matches!(
            checkpoints.load::<Tally>(),
            Err(CheckpointError::Foreign(_))
        ));
    }

    #[test]
    fn a_checkpoint_of_another_service_cluster_or_topic_is_not_used() {
        let watermarks: BTreeMap<_, _> = [(("t-orders".to_owned(), 0), (0, 10))].into();
        let expected = Stamp {
            positions: Positions::new(),
            ..stamp(0)
        };
        assert_eq!(stamp(7).mismatch(&expected, &watermarks), None);
        assert_eq!(stamp(10).mismatch(&expected, &watermarks), None);
        let other = |change: fn(&mut Stamp)| {
            let mut s = stamp(7);
            change(&mut s);
            s.mismatch(&expected, &watermarks)
        };
        assert!(other(|s| s.service = "ads-svc".into())
            .unwrap()
            .contains("ads-svc"));
        assert!(other(|s| s.topic_prefix = "u-".into())
            .unwrap()
            .contains("namespace"));
        assert!(other(|s| s.cluster_id = None).unwrap().contains("cluster"));
        assert!(
            other(|s| s.positions = [(("t-orders".into(), 1), 3)].into())
                .unwrap()
                .contains("partitions")
        );
        assert!(stamp(11)
            .mismatch(&expected, &watermarks)
            .unwrap()
            .contains("recreated"));
        let trimmed: BTreeMap<_, _> = [(("t-orders".to_owned(), 0), (8, 10))].into();
        assert!(stamp(7)
            .mismatch(&expected, &trimmed)
            .unwrap()
            .contains("deleted"));
    }

    #[test]
    fn a_checkpoint_file_is_readable_by_its_owner_alone() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, checkpoints) = store();
        checkpoints.save(&stamp(7), &tally()).unwrap();
        let mode = std::fs::metadata(&checkpoints.path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

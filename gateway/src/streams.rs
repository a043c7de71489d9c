//! Event streams of request status: bounded per session and in total, and
//! fed by one follower of the partitions they watch rather than by a read
//! of the topics per stream.
//!
//! The follower is one Kafka reader on its own thread. A stream registers
//! its request with it before looking the request up: the follower then
//! follows the request's partitions (from their end, if no other stream
//! had them), so a record of the request is either written before the
//! lookup began (and the lookup finds it) or polled by the follower (and
//! sent to the stream). A partition no stream watches is let go.

use std::{
    collections::HashMap,
    sync::{mpsc, Arc, Mutex, OnceLock},
    time::Duration,
};

use storefront_runtime::{
    metrics::Metrics,
    snapshot::{PartitionReader, TopicPartition},
    KafkaSettings, Topics,
};
use storefront_schemas::{RequestEvent, RequestId, SessionId};
use tokio::sync::{mpsc as async_mpsc, oneshot};

use crate::error::ApiError;

/// How long the follower waits for a record before it looks at its mail.
const POLL: Duration = Duration::from_millis(50);
/// Events buffered per stream (a request has at most six).
const STREAM_BUFFER: usize = 16;

/// How many event streams may be open.
#[derive(Debug, Clone, clap::Args)]
pub struct StreamLimits {
    /// Event streams one session may hold open at once (then 429).
    #[arg(long, env = "STOREFRONT_MAX_STREAMS_PER_SESSION", default_value_t = 8)]
    pub max_streams_per_session: usize,
    /// Event streams open at once on this gateway (then 429).
    #[arg(long, env = "STOREFRONT_MAX_STREAMS", default_value_t = 1000)]
    pub max_streams: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct LimitsOnly {
            #[command(flatten)]
            limits: StreamLimits,
        }
        storefront_runtime::settings::defaults::<LimitsOnly>(&[]).limits
    }
}

/// The gateway's event streams: their count, and the follower behind them.
#[derive(Clone)]
pub struct Streams {
    shared: Arc<Shared>,
}

struct Shared {
    limits: StreamLimits,
    metrics: Metrics,
    settings: KafkaSettings,
    open: Mutex<OpenStreams>,
    follower: OnceLock<mpsc::Sender<Command>>,
}

#[derive(Default)]
struct OpenStreams {
    total: usize,
    per_session: HashMap<SessionId, usize>,
    next_watch: u64,
}

impl Streams {
    pub fn new(limits: StreamLimits, settings: &KafkaSettings, metrics: Metrics) -> Self {
        Self {
            shared: Arc::new(Shared {
                limits,
                metrics,
                settings: settings.clone(),
                open: Mutex::default(),
                follower: OnceLock::new(),
            }),
        }
    }

    /// A place for one more stream of `session`: 429 past either limit.
    pub fn open(&self, session: SessionId) -> Result<StreamSlot, ApiError> {
        let shared = &self.shared;
        let mut open = shared.open.lock().expect("streams lock");
        let of_session = open.per_session.get(&session).copied().unwrap_or(0);
        let refused = if of_session >= shared.limits.max_streams_per_session {
            Some("session")
        } else if open.total >= shared.limits.max_streams {
            Some("total")
        } else {
            None
        };
        if let Some(limit) = refused {
            shared
                .metrics
                .streams_refused
                .with_label_values(&[limit])
                .inc();
            return Err(ApiError::TooManyStreams);
        }
        open.total += 1;
        *open.per_session.entry(session).or_default() += 1;
        open.next_watch += 1;
        shared.metrics.streams_open.inc();
        let (events, received) = async_mpsc::channel(STREAM_BUFFER);
        Ok(StreamSlot {
            streams: self.clone(),
            session,
            id: open.next_watch,
            events,
            received: Some(received),
        })
    }

    /// The follower's mailbox; its thread starts with the first stream.
    fn follower(&self) -> &mpsc::Sender<Command> {
        self.shared.follower.get_or_init(|| {
            let (tx, rx) = mpsc::channel();
            let follower = Follower {
                settings: self.shared.settings.clone(),
                topics: self.shared.settings.topics(),
                metrics: self.shared.metrics.clone(),
                reader: None,
                ends: None,
                followed: HashMap::new(),
                watchers: HashMap::new(),
            };
            std::thread::Builder::new()
                .name("stream-follower".into())
                .spawn(move || follower.run(rx))
                .expect("spawn the stream follower");
            tx
        })
    }
}

/// One open stream; dropping it closes it and ends its watches.
pub struct StreamSlot {
    streams: Streams,
    session: SessionId,
    id: u64,
    events: async_mpsc::Sender<RequestEvent>,
    received: Option<async_mpsc::Receiver<RequestEvent>>,
}

impl StreamSlot {
    /// Has the follower send this stream (see [`Self::events`]) every
    /// record of `request` on `partitions` written from now on. Returns
    /// once they are followed.
    pub async fn watch(
        &self,
        request: RequestId,
        partitions: Vec<TopicPartition>,
    ) -> Result<(), ApiError> {
        let (done, followed) = oneshot::channel();
        let command = Command::Watch {
            id: self.id,
            request,
            partitions,
            events: self.events.clone(),
            done,
        };
        self.streams
            .follower()
            .send(command)
            .map_err(|_| ApiError::Internal("the stream follower stopped".into()))?;
        match followed.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not follow a request's partitions");
                Err(ApiError::BrokerUnavailable)
            }
            Err(_) => Err(ApiError::Internal("the stream follower stopped".into())),
        }
    }
}

impl StreamSlot {
    /// The records the follower sends this stream (once).
    pub fn events(&mut self) -> async_mpsc::Receiver<RequestEvent> {
        self.received.take().expect("the events are taken once")
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let shared = &self.streams.shared;
        let mut open = shared.open.lock().expect("streams lock");
        open.total -= 1;
        if let Some(count) = open.per_session.get_mut(&self.session) {
            *count -= 1;
            if *count == 0 {
                open.per_session.remove(&self.session);
            }
        }
        shared.metrics.streams_open.dec();
        drop(open);
        if let Some(follower) = shared.follower.get() {
            let _ = follower.send(Command::Forget { id: self.id });
        }
    }
}

enum Command {
    Watch {
        id: u64,
        request: RequestId,
        partitions: Vec<TopicPartition>,
        events: async_mpsc::Sender<RequestEvent>,
        done: oneshot::Sender<Result<(), String>>,
    },
    Forget {
        id: u64,
    },
}

/// A stream's watch: which request, on which partitions, and where to send.
struct Watcher {
    id: u64,
    partitions: Vec<TopicPartition>,
    events: async_mpsc::Sender<RequestEvent>,
}

/// The follower's thread: one reader, the partitions it follows with how
/// many streams watch each, and the streams by request.
struct Follower {
    settings: KafkaSettings,
    topics: Topics,
    metrics: Metrics,
    /// Follows the partitions; made with the first stream.
    reader: Option<PartitionReader>,
    /// Reads where partitions end, for `reader` to follow from there.
    ends: Option<PartitionReader>,
    followed: HashMap<TopicPartition, usize>,
    watchers: HashMap<RequestId, Vec<Watcher>>,
}

impl Follower {
    fn run(mut self, mail: mpsc::Receiver<Command>) {
        loop {
            // Nothing followed: sleep until a stream asks for something.
            let first = if self.followed.is_empty() {
                match mail.recv() {
                    Ok(command) => Some(command),
                    Err(_) => return,
                }
            } else {
                None
            };
            for command in first.into_iter().chain(mail.try_iter()) {
                self.handle(command);
            }
            if self.followed.is_empty() {
                continue;
            }
            let reader = self.reader.as_ref().expect("a reader while following");
            // Records for a while, then the mail again.
            let mut record = reader.poll(POLL);
            while let Some(inbound) = record {
                self.dispatch(&inbound);
                let reader = self.reader.as_ref().expect("a reader while following");
                record = reader.poll(Duration::ZERO);
            }
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Watch {
                id,
                request,
                partitions,
                events,
                done,
            } => {
                let outcome = self.follow(&partitions);
                if outcome.is_ok() {
                    for tp in &partitions {
                        *self.followed.entry(tp.clone()).or_default() += 1;
                    }
                    let watcher = Watcher {
                        id,
                        partitions,
                        events,
                    };
                    self.watchers.entry(request).or_default().push(watcher);
                }
                let _ = done.send(outcome.map_err(|e| e.to_string()));
            }
            Command::Forget { id } => {
                let mut let_go = Vec::new();
                self.watchers.retain(|_, watchers| {
                    watchers.retain(|w| {
                        if w.id != id {
                            return true;
                        }
                        let_go.extend(w.partitions.iter().cloned());
                        false
                    });
                    !watchers.is_empty()
                });
                self.unwatch(&let_go);
            }
        }
        self.metrics
            .followed_partitions
            .set(self.followed.len() as i64);
    }

    /// Starts following those of `partitions` no stream watched yet.
    fn follow(&mut self, partitions: &[TopicPartition]) -> storefront_runtime::Result<()> {
        let new: Vec<TopicPartition> = partitions
            .iter()
            .filter(|tp| !self.followed.contains_key(*tp))
            .cloned()
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        if self.reader.is_none() {
            self.ends = Some(PartitionReader::new(
                &self.settings,
                "gateway-streams-ends",
            )?);
            self.reader = Some(PartitionReader::follower(
                &self.settings,
                "gateway-streams",
            )?);
        }
        let (Some(reader), Some(ends)) = (&self.reader, &self.ends) else {
            unreachable!("both made together")
        };
        reader.follow_from_end(&ends.positions(&new, None)?)
    }

    /// One watch fewer on each of `partitions`; those none watch are let go.
    fn unwatch(&mut self, partitions: &[TopicPartition]) {
        let mut unfollowed = Vec::new();
        for tp in partitions {
            if let Some(count) = self.followed.get_mut(tp) {
                *count -= 1;
                if *count == 0 {
                    self.followed.remove(tp);
                    unfollowed.push(tp.clone());
                }
            }
        }
        if let (Some(reader), false) = (&self.reader, unfollowed.is_empty()) {
            if let Err(error) = reader.unfollow(&unfollowed) {
                tracing::warn!(%error, "could not stop following partitions");
            }
        }
    }

    /// Sends a record to the streams watching its request.
    fn dispatch(&mut self, inbound: &storefront_runtime::Inbound) {
        let Ok(event) = inbound.event::<RequestEvent>(&self.topics) else {
            return;
        };
        let Some(watchers) = self.watchers.get(&event.context().request_id) else {
            return;
        };
        for watcher in watchers {
            // A full buffer means a stream that stopped reading: it ends
            // at its own timeout, and what it missed is on the topics.
            let _ = watcher.events.try_send(event.clone());
        }
    }
}

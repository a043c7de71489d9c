//! A running service: its HTTP address, readiness, and the tasks to stop.

use std::{net::SocketAddr, time::Duration};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{Readiness, Result, Telemetry};

/// A started service. Dropping it does not stop it; call [`Self::stop`].
pub struct RunningService {
    pub name: &'static str,
    pub http_addr: SocketAddr,
    pub readiness: Readiness,
    pub telemetry: Telemetry,
    shutdown: CancellationToken,
    tasks: JoinSet<Result<()>>,
}

impl RunningService {
    pub fn new(
        telemetry: Telemetry,
        http_addr: SocketAddr,
        readiness: Readiness,
        shutdown: CancellationToken,
        tasks: JoinSet<Result<()>>,
    ) -> Self {
        Self {
            name: telemetry.service(),
            http_addr,
            readiness,
            telemetry,
            shutdown,
            tasks,
        }
    }

    /// Waits until the service is ready, or fails after `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        tokio::time::timeout(timeout, self.readiness.wait()).await.map_err(|_| {
            tracing::error!(service = self.name, pending = ?self.readiness.pending(), "not ready in time");
            crate::Error::TimedOut("the service to become ready")
        })
    }

    /// Runs until a task fails or the shutdown token is cancelled, then stops.
    /// Tasks that finish their work (a warm-up) do not stop the service.
    pub async fn run_until_stopped(mut self) -> Result<()> {
        let outcome = loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break Ok(()),
                Some(done) = self.tasks.join_next() => match done {
                    Ok(Ok(())) => continue,
                    Ok(Err(error)) => {
                        tracing::error!(service = self.name, %error, "task failed; stopping");
                        break Err(error);
                    }
                    Err(join) => {
                        tracing::error!(service = self.name, %join, "task panicked; stopping");
                        break Err(crate::Error::TaskPanicked(self.name));
                    }
                },
                else => break Ok(()),
            }
        };
        self.stop().await;
        outcome
    }

    /// Stops taking work, lets tasks finish what is in flight (10 s at
    /// most), then aborts what is left.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let drained = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(done) = self.tasks.join_next().await {
                if let Ok(Err(error)) = done {
                    tracing::warn!(service = self.name, %error, "task ended with an error");
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                service = self.name,
                "tasks did not stop in time; aborting them"
            );
            // A task blocked outside the runtime cannot be aborted (a
            // rebalance callback waiting for a transaction the broker has
            // not answered): it is left to the end of the process.
            if tokio::time::timeout(Duration::from_secs(1), self.tasks.shutdown())
                .await
                .is_err()
            {
                tracing::warn!(service = self.name, "a task is blocked; leaving it");
            }
        }
        self.telemetry.flush().await;
        tracing::info!(service = self.name, "stopped");
    }
}

/// What a stream service is made of: input topics handled by `handler`, and
/// reference topics folded into its read `model`.
pub struct StreamService<H, M> {
    pub name: &'static str,
    pub http_addr: SocketAddr,
    pub inputs: Vec<String>,
    pub reference_topics: Vec<String>,
    pub model: std::sync::Arc<std::sync::RwLock<M>>,
    /// Its name in its group, and where it keeps its read model.
    pub instance: crate::InstanceSettings,
    pub handler: std::sync::Arc<H>,
    /// Records taken and not yet done, at most (each key's run in order).
    pub max_in_flight: usize,
    pub telemetry: Telemetry,
}

/// Readiness condition met once the idempotent producer has its id.
pub const PRODUCER_WARM: &str = "producer warm";

/// A task that marks [`PRODUCER_WARM`] once `producer` has its id.
pub async fn warm_up(producer: crate::EventProducer, readiness: Readiness) -> Result<()> {
    producer.wait_until_warm(Duration::from_secs(30)).await?;
    readiness.done(PRODUCER_WARM);
    Ok(())
}

/// Serves `router` and `/metrics` on `addr` (port 0 picks one) as one of
/// `tasks` until `shutdown`, measuring every route, within `limits`;
/// returns the bound address.
pub async fn serve_http(
    tasks: &mut JoinSet<Result<()>>,
    addr: SocketAddr,
    router: axum::Router,
    limits: &crate::HttpLimits,
    telemetry: &Telemetry,
    shutdown: CancellationToken,
) -> Result<SocketAddr> {
    let metrics = telemetry.metrics().clone();
    let router = router
        .route(
            "/metrics",
            axum::routing::get(crate::metrics::serve).with_state(metrics.clone()),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            metrics.clone(),
            crate::metrics::track_http,
        ));
    let bind_error = |source| crate::Error::Bind { addr, source };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    let limits = limits.clone();
    tasks.spawn(async move {
        crate::http::serve(listener, router, limits, metrics, shutdown).await;
        Ok(())
    });
    Ok(bound)
}

impl<H, M> StreamService<H, M>
where
    H: crate::RecordHandler,
    M: crate::ReadModel,
{
    /// Creates missing topics, then starts the reference reader, the
    /// consume driver and the health endpoints. Ready once the producer is
    /// warm, partitions are assigned and reference data is loaded.
    pub async fn start(
        self,
        settings: &crate::KafkaSettings,
        shutdown: CancellationToken,
    ) -> Result<RunningService> {
        crate::topics::ensure_topics(settings).await?;
        let readiness = Readiness::new(&[
            PRODUCER_WARM,
            crate::consume::PARTITIONS_ASSIGNED,
            crate::reference::REFERENCE_LOADED,
        ]);
        let producer = crate::EventProducer::new(settings, &self.telemetry)?;
        let dead_letters =
            crate::DeadLetters::new(producer.clone(), settings.topics().dead_letters);
        let mut tasks = JoinSet::new();

        tasks.spawn(warm_up(producer.clone(), readiness.clone()));

        let reader = crate::ReferenceReader {
            service: self.name,
            topics: self.reference_topics,
            model: self.model,
            checkpoints: self.instance.checkpoints(self.name, &settings.topic_prefix),
        };
        let (reader_settings, reader_dead_letters, ready, stop) = (
            settings.clone(),
            dead_letters.clone(),
            readiness.clone(),
            shutdown.clone(),
        );
        tasks.spawn(async move {
            reader
                .run(&reader_settings, reader_dead_letters, ready, stop)
                .await
        });

        let inputs: Vec<&str> = self.inputs.iter().map(String::as_str).collect();
        let driver = crate::consume::Driver::new(
            settings,
            &self.telemetry,
            &crate::consume::GroupOptions {
                instance_id: self.instance.instance_id.clone(),
                ..crate::consume::GroupOptions::at_least_once(self.name)
            },
            &inputs,
            self.max_in_flight,
            readiness.clone(),
            None,
        )?;
        tasks.spawn(driver.run(self.handler, producer, dead_letters, shutdown.clone()));

        let router = crate::health::router(readiness.clone());
        let http_addr = serve_http(
            &mut tasks,
            self.http_addr,
            router,
            &crate::HttpLimits::default(),
            &self.telemetry,
            shutdown.clone(),
        )
        .await?;
        tracing::info!(service = self.name, %http_addr, "started");
        Ok(RunningService::new(
            self.telemetry,
            http_addr,
            readiness,
            shutdown,
            tasks,
        ))
    }
}

impl RunningService {
    /// Runs until SIGINT/SIGTERM (or a failed task), then stops cleanly.
    pub async fn run_until_signal(self) -> Result<()> {
        let token = self.shutdown.clone();
        tokio::spawn(async move {
            crate::shutdown::shutdown_signal().await;
            token.cancel();
        });
        self.run_until_stopped().await
    }
}

//! A running service: its HTTP address, readiness, and the tasks to stop.

use std::{net::SocketAddr, time::Duration};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{Readiness, Result};

/// A started service. Dropping it does not stop it; call [`Self::stop`].
pub struct RunningService {
    pub name: &'static str,
    pub http_addr: SocketAddr,
    pub readiness: Readiness,
    shutdown: CancellationToken,
    tasks: JoinSet<Result<()>>,
}

impl RunningService {
    pub fn new(
        name: &'static str,
        http_addr: SocketAddr,
        readiness: Readiness,
        shutdown: CancellationToken,
        tasks: JoinSet<Result<()>>,
    ) -> Self {
        Self { name, http_addr, readiness, shutdown, tasks }
    }

    /// Waits until the service is ready, or fails after `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        tokio::time::timeout(timeout, self.readiness.wait()).await.map_err(|_| {
            tracing::error!(service = self.name, pending = ?self.readiness.pending(), "not ready in time");
            crate::Error::TimedOut("the service to become ready")
        })
    }

    /// Runs until a task fails or the shutdown token is cancelled, then stops.
    pub async fn run_until_stopped(mut self) -> Result<()> {
        let outcome = tokio::select! {
            _ = self.shutdown.cancelled() => Ok(()),
            Some(done) = self.tasks.join_next() => match done {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(error),
                Err(join) => { tracing::error!(service = self.name, %join, "task panicked"); Ok(()) }
            },
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
            tracing::warn!(service = self.name, "tasks did not stop in time; aborting them");
            self.tasks.shutdown().await;
        }
        tracing::info!(service = self.name, "stopped");
    }
}

//! A `redis-server` child process for the redis design's benchmarks and
//! tests: on a free port of 127.0.0.1, with no persistence, killed when
//! stopped or dropped. Debian's `redis-server` package provides the binary
//! (`scripts/prepare.sh` installs it).

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::process::{Child, Command};

use crate::{Error, Result};

/// A running `redis-server`.
pub struct RedisServer {
    child: Child,
    pub addr: SocketAddr,
    /// Its log file.
    pub log: PathBuf,
}

impl RedisServer {
    /// The program run: `$STOREFRONT_REDIS_SERVER`, else `redis-server` on the PATH.
    pub fn program() -> PathBuf {
        std::env::var_os("STOREFRONT_REDIS_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("redis-server"))
    }

    /// Starts `redis-server` on a free port, its log in `work_dir`, and
    /// waits until it answers PING.
    pub async fn start(work_dir: &Path) -> Result<Self> {
        let port = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| Error::RedisServer(format!("no free port: {e}")))?
            .port();
        Self::start_on(port, work_dir).await
    }

    /// Starts `redis-server` on `port` of 127.0.0.1 (nothing saved, nothing
    /// appended), its log in `work_dir`, and waits up to 10 s until it
    /// answers PING.
    pub async fn start_on(port: u16, work_dir: &Path) -> Result<Self> {
        let program = Self::program();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = work_dir.join(format!("redis-{port}.log"));
        let failed =
            |reason: String| Error::RedisServer(format!("{}: {reason}", program.display()));
        let child = Command::new(&program)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(work_dir)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                failed(format!(
                    "{e} (install Debian's redis-server, or set STOREFRONT_REDIS_SERVER)"
                ))
            })?;
        let mut server = Self { child, addr, log };
        let client = redis::Client::open(server.url()).map_err(|e| failed(e.to_string()))?;
        let started = tokio::time::Instant::now();
        loop {
            if let Ok(mut connection) = client.get_multiplexed_async_connection().await {
                if redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
                    .is_ok()
                {
                    tracing::info!(%addr, log = %server.log.display(), "redis-server started");
                    return Ok(server);
                }
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(failed(format!(
                    "exited at start ({status}); see {}",
                    server.log.display()
                )));
            }
            if started.elapsed() > Duration::from_secs(10) {
                server.child.kill().await.ok();
                return Err(failed(format!(
                    "no answer on {addr} within 10 s; see {}",
                    server.log.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The URL the redis design's roles take (`--redis-url`).
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Its process ID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Stops it (SIGKILL: there is nothing to save) and waits for it to exit.
    pub async fn stop(mut self) {
        if let Err(error) = self.child.kill().await {
            tracing::warn!(%error, "could not stop redis-server");
        }
    }
}

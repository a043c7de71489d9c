//! The embedded broker: nisshi, a Kafka-compatible broker in Rust, installed
//! once into a cache directory with `cargo install` (about 20 minutes on two
//! cores, with cargo's progress shown) and reused by every later run.

use std::{
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

pub const NISSHI_VERSION: &str = "0.8.1";

/// Where the storefront caches what it installs: `$STOREFRONT_CACHE_DIR`,
/// else `$XDG_CACHE_HOME/storefront`, else `~/.cache/storefront`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("STOREFRONT_CACHE_DIR") {
        return dir.into();
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("storefront")
}

/// The nisshi binary: `$STOREFRONT_NISSHI_BIN`, else the cached install.
pub fn nisshi_path() -> PathBuf {
    std::env::var_os("STOREFRONT_NISSHI_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("nisshi/bin/nisshi"))
}

/// Installs nisshi into the cache unless it is there already.
pub fn install() -> anyhow::Result<PathBuf> {
    let path = nisshi_path();
    if path.exists() {
        return Ok(path);
    }
    let root = cache_dir().join("nisshi");
    let build_dir = cache_dir().join("nisshi-build");
    eprintln!(
        "Installing the embedded broker (nisshi {NISSHI_VERSION}) into {}: a one-time build of about 20 minutes on two cores.",
        root.display()
    );
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "install",
            "nisshi",
            "--version",
            NISSHI_VERSION,
            "--locked",
            "--ignore-rust-version",
            "--root",
        ])
        .arg(&root)
        .env("CARGO_TARGET_DIR", &build_dir)
        .status()
        .context("failed to run cargo install nisshi")?;
    if !status.success() {
        bail!("cargo install nisshi failed ({status}); see its output above");
    }
    let _ = std::fs::remove_dir_all(&build_dir);
    Ok(path)
}

/// Where the broker keeps its records.
#[derive(Debug, Clone)]
pub enum Storage {
    /// Records in a SQLite file: they survive restarts.
    Sqlite(PathBuf),
    /// Records in memory: faster, gone when the broker stops.
    Memory,
}

/// A running nisshi broker. Stopped when dropped, and also when this
/// process dies: a watchdog shell stops it when its stdin closes.
pub struct Broker {
    pub addr: SocketAddr,
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Broker {
    /// Starts nisshi on `addr` and waits until it answers Kafka metadata requests.
    pub fn start(
        nisshi: &Path,
        addr: SocketAddr,
        storage: &Storage,
        log: &Path,
    ) -> anyhow::Result<Self> {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            bail!(
                "{addr} is already in use: stop what listens there or choose another broker port"
            );
        }
        let storage_url = match storage {
            Storage::Sqlite(file) => {
                let file = std::path::absolute(file)
                    .context("failed to resolve the broker's data file")?;
                if let Some(dir) = file.parent() {
                    std::fs::create_dir_all(dir)
                        .context("failed to create the broker's data directory")?;
                }
                // nisshi reads the URL path without its leading slash: an
                // absolute file needs one slash more.
                format!("sqlite:///{}", file.display())
            }
            Storage::Memory => "memory://nisshi/".to_owned(),
        };
        let url = format!("tcp://{addr}");
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("failed to create {}", log.display()))?;
        // The shell starts the broker, and stops it when our end of its
        // stdin closes, which also happens when this process dies.
        // (A background list reads /dev/null unless told otherwise: hence fd 3.)
        let watchdog = r#"exec 3<&0; "$0" "$@" </dev/null & broker=$!; (cat <&3 >/dev/null; kill -TERM $broker 2>/dev/null) & wait $broker"#;
        let mut command = Command::new("sh");
        command
            .args(["-c", watchdog])
            .arg(nisshi)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", &storage_url])
            .args([
                "--group-initial-rebalance-delay",
                "0s",
                "--group-poll-interval",
                "50ms",
            ])
            .stdin(Stdio::piped())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        // Its own process group: a terminal's Ctrl-C reaches us first, so the
        // services can commit before the broker stops.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .spawn()
            .with_context(|| format!("failed to start {}", nisshi.display()))?;
        let stdin = child.stdin.take();
        let mut broker = Self { addr, child, stdin };
        broker.wait_until_serving(Duration::from_secs(30), log)?;
        Ok(broker)
    }

    fn wait_until_serving(&mut self, timeout: Duration, log: &Path) -> anyhow::Result<()> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(status) = self.child.try_wait()? {
                let tail = std::fs::read_to_string(log).unwrap_or_default();
                bail!(
                    "the broker exited at start ({status}):\n{}",
                    last_lines(&tail, 20)
                );
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                let client: BaseConsumer = rdkafka::ClientConfig::new()
                    .set("bootstrap.servers", self.addr.to_string())
                    .set("log_level", "3")
                    .create()?;
                if client.fetch_metadata(None, Duration::from_secs(2)).is_ok() {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "the broker did not answer on {} within {timeout:?}",
            self.addr
        )
    }

    /// The broker's own process (the child of its watchdog shell), for measuring it.
    pub fn pid(&self) -> Option<u32> {
        let shell = self.child.id();
        let children =
            std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).ok()?;
        children
            .split_whitespace()
            .filter_map(|pid| pid.parse().ok())
            .find(|pid: &u32| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|name| name.trim() == "nisshi")
            })
    }

    /// Stops the broker and waits for it to exit.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if self.stdin.take().is_some() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

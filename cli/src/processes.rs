//! Services as child processes of the `storefront` binary, for the fault
//! suite and the benchmarks: started, waited for, killed and restarted,
//! frozen, stopped, and measured (peak resident memory, CPU time).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use tokio::process::{Child, ChildStdin, Command};

/// One service as a child process: `storefront <args>`, serving HTTP on `addr`.
pub struct ServiceProcess {
    pub name: String,
    pub addr: SocketAddr,
    pub log: PathBuf,
    storefront: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    child: Child,
    /// Our end of the child's stdin (never written): the child stops when it closes,
    /// also when this process dies without dropping it.
    lifeline: Option<ChildStdin>,
    peak_rss_kib: u64,
    /// CPU time of the runs before this one, in clock ticks.
    earlier_cpu_ticks: u64,
}

impl ServiceProcess {
    /// Starts `storefront args...` with `env` and `STOREFRONT_HTTP_ADDR=addr`, its output in `log`.
    pub fn spawn(
        storefront: &Path,
        name: impl Into<String>,
        args: &[&str],
        addr: SocketAddr,
        env: Vec<(String, String)>,
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let mut child = Self::start(storefront, &args, addr, &env, &log)?;
        let lifeline = child.stdin.take();
        Ok(Self {
            name: name.into(),
            addr,
            log,
            storefront: storefront.to_owned(),
            args,
            env,
            child,
            lifeline,
            peak_rss_kib: 0,
            earlier_cpu_ticks: 0,
        })
    }

    fn start(
        storefront: &Path,
        args: &[String],
        addr: SocketAddr,
        env: &[(String, String)],
        log: &Path,
    ) -> anyhow::Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        Command::new(storefront)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("STOREFRONT_HTTP_ADDR", addr.to_string())
            .env("STOREFRONT_LOG_FORMAT", "json")
            .env(storefront_runtime::shutdown::STOP_WITH_PARENT_VAR, "1")
            .stdin(std::process::Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("failed to start storefront {}", args.join(" ")))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sets an environment variable for the next start (after a restart).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        wait_ready(self.addr, timeout)
            .await
            .with_context(|| format!("{} did not start; see {}", self.name, self.log.display()))
    }

    /// Reads the peak RSS of the running process into the running maximum.
    pub fn sample_memory(&mut self) {
        if let Some(kib) = self.pid().and_then(peak_rss_kib) {
            self.peak_rss_kib = self.peak_rss_kib.max(kib);
        }
    }

    /// The highest resident memory seen, over all its runs (KiB).
    pub fn peak_rss_kib(&mut self) -> u64 {
        self.sample_memory();
        self.peak_rss_kib
    }

    /// CPU time (user and system) used so far, over all its runs.
    pub fn cpu_time(&self) -> Duration {
        let ticks = self.earlier_cpu_ticks + self.pid().and_then(cpu_ticks).unwrap_or(0);
        ticks_to_duration(ticks)
    }

    /// SIGKILL, `down_for` with no process, then a fresh start, waited
    /// for; returns how long the new process took to be ready.
    pub async fn kill_and_restart(&mut self, down_for: Duration) -> anyhow::Result<Duration> {
        self.end_run();
        self.child.start_kill()?;
        self.child.wait().await?;
        tokio::time::sleep(down_for).await;
        self.relaunch().await
    }

    /// SIGTERM, wait for a clean exit, start again: one step of a rolling restart.
    pub async fn restart_gracefully(&mut self) -> anyhow::Result<()> {
        self.end_run();
        self.signal("-TERM").await?;
        let exited = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
        match exited {
            Ok(Ok(status)) if status.success() => {}
            other => bail!("{} did not stop cleanly on SIGTERM: {other:?}", self.name),
        }
        self.relaunch().await.map(drop)
    }

    /// Starts the process again, as it was first started, and waits until
    /// it is ready; returns how long that took from the start.
    async fn relaunch(&mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        self.child = Self::start(
            &self.storefront,
            &self.args,
            self.addr,
            &self.env,
            &self.log,
        )?;
        self.lifeline = self.child.stdin.take();
        wait_ready(self.addr, Duration::from_secs(60)).await?;
        Ok(started.elapsed())
    }

    /// Records what the current run used before it ends.
    fn end_run(&mut self) {
        self.sample_memory();
        self.earlier_cpu_ticks += self.pid().and_then(cpu_ticks).unwrap_or(0);
    }

    pub async fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.pid().context("the process has exited")?;
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .await?;
        if !status.success() {
            bail!("kill {signal} {pid} failed");
        }
        Ok(())
    }

    /// SIGTERM and wait (then SIGKILL); returns the peak RSS over all runs (KiB).
    pub async fn stop(mut self) -> u64 {
        self.sample_memory();
        if self.signal("-TERM").await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await;
        }
        let _ = self.child.kill().await;
        self.peak_rss_kib
    }
}

/// `VmHWM` of a process: its peak resident set, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

/// `VmRSS` of a process: its resident set now, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// A size field of `/proc/<pid>/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User and system CPU time of a process and its waited-for children, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime, stime, cutime, cstime are fields 14 to 17 of the whole line.
    let ticks: Option<Vec<u64>> = fields.get(11..15)?.iter().map(|f| f.parse().ok()).collect();
    Some(ticks?.iter().sum())
}

/// Clock ticks as time (Linux's USER_HZ is 100).
pub fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_millis(ticks * 10)
}

pub async fn wait_ready(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    while started.elapsed() < timeout {
        if let Ok(response) = client.get(format!("http://{addr}/readyz")).send().await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        // Often enough to time a restart to a few tens of milliseconds.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("{addr} was not ready within {timeout:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_peak_rss_and_cpu_time() {
        let pid = std::process::id();
        assert!(peak_rss_kib(pid).unwrap() > 0);
        // The resident size first: the other tests of this process allocate
        // meanwhile, and only the peak read after it is sure to cover it.
        let rss = rss_kib(pid).unwrap();
        assert!((1..=peak_rss_kib(pid).unwrap()).contains(&rss));
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(50) {
            std::hint::black_box(0);
        }
        assert!(cpu_ticks(pid).unwrap() > 0);
    }
}

//! The browser specs of `tests/browser/` (`<spec>.mjs`, plain Node ES
//! modules): run with `node`, driving Debian's headless Chromium through
//! playwright-core, both installed by `scripts/prepare.sh --test`. Each run
//! writes its screenshots into `target/browser-screenshots/<spec>/`, emptied
//! first. A missing tool fails the test with what to run: it never passes
//! without a browser.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use tokio::io::AsyncReadExt;

/// How long a spec may run, browser start included; the spec's own watchdog
/// (`STOREFRONT_BROWSER_TIMEOUT_MS`) fires 30 s earlier, with screenshots.
pub const SPEC_TIMEOUT: Duration = Duration::from_secs(240);

const PREPARE: &str =
    "run scripts/prepare.sh --test, which installs Debian's chromium and playwright-core";

/// The workspace's root directory.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate is in the workspace")
        .to_path_buf()
}

/// The `node_modules` holding playwright-core: `STOREFRONT_NODE_MODULES`,
/// else `node/node_modules` in the cache `scripts/prepare.sh` fills
/// (`STOREFRONT_CACHE_DIR`, else `${XDG_CACHE_HOME:-~/.cache}/storefront`).
pub fn node_modules() -> PathBuf {
    if let Some(dir) = std::env::var_os("STOREFRONT_NODE_MODULES") {
        return dir.into();
    }
    let cache = std::env::var_os("STOREFRONT_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .unwrap_or_default()
                .join("storefront")
        });
    cache.join("node/node_modules")
}

/// The browser the specs drive: `STOREFRONT_CHROMIUM`, else Debian's.
pub fn chromium() -> PathBuf {
    std::env::var_os("STOREFRONT_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/chromium".into())
}

/// Panics, saying what to run, unless node, Chromium and playwright-core
/// are all there. Cheap: call it before starting stacks.
pub fn require_tools() {
    let mut missing = Vec::new();
    match std::process::Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => {}
        Ok(out) => missing.push(format!("node does not run ({})", out.status)),
        Err(e) => missing.push(format!("node is not on PATH ({e})")),
    }
    let chromium = chromium();
    if !chromium.is_file() {
        missing.push(format!("no Chromium at {}", chromium.display()));
    }
    let playwright = node_modules().join("playwright-core/package.json");
    if !playwright.is_file() {
        missing.push(format!(
            "no playwright-core ({} is missing)",
            playwright.display()
        ));
    }
    assert!(
        missing.is_empty(),
        "the browser tests cannot run: {}; {PREPARE}",
        missing.join("; ")
    );
}

/// Runs `node tests/browser/<spec>.mjs` with `env` added to its
/// environment, and returns its screenshots' directory. Panics with node's
/// output if the spec fails, or runs past [`SPEC_TIMEOUT`].
pub async fn run_spec(spec: &str, env: &[(&str, String)]) -> PathBuf {
    require_tools();
    let root = workspace();
    let script = root.join("tests/browser").join(format!("{spec}.mjs"));
    assert!(script.is_file(), "no browser spec at {}", script.display());
    let screenshots = root.join("target/browser-screenshots").join(spec);
    if screenshots.exists() {
        std::fs::remove_dir_all(&screenshots)
            .unwrap_or_else(|e| panic!("could not empty {}: {e}", screenshots.display()));
    }
    std::fs::create_dir_all(&screenshots)
        .unwrap_or_else(|e| panic!("could not create {}: {e}", screenshots.display()));

    let started = Instant::now();
    let mut child = tokio::process::Command::new("node")
        .arg(&script)
        .current_dir(&root)
        .env("STOREFRONT_NODE_MODULES", node_modules())
        .env("STOREFRONT_CHROMIUM", chromium())
        .env("STOREFRONT_SCREENSHOTS", &screenshots)
        .env(
            "STOREFRONT_BROWSER_TIMEOUT_MS",
            (SPEC_TIMEOUT.as_millis() - 30_000).to_string(),
        )
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("node does not start ({e}); {PREPARE}"));
    let stdout = read_all(child.stdout.take().expect("stdout is piped"));
    let stderr = read_all(child.stderr.take().expect("stderr is piped"));
    let outcome = match tokio::time::timeout(SPEC_TIMEOUT, child.wait()).await {
        Ok(status) => Some(status.expect("node's exit status")),
        Err(_) => {
            let _ = child.kill().await;
            None
        }
    };
    // Chromium is node's child on its own pipes: node's close when node ends.
    let read = |task: tokio::task::JoinHandle<String>| async move {
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .map(|r| r.unwrap_or_default())
            .unwrap_or_else(|_| "(output not closed)".into())
    };
    let (stdout, stderr) = (read(stdout).await, read(stderr).await);
    let elapsed = started.elapsed().as_secs_f64();
    let verdict = match outcome {
        Some(status) if status.success() => {
            println!(
                "browser spec {spec} passed in {elapsed:.1} s, screenshots in {}\n{stdout}{stderr}",
                screenshots.display()
            );
            return screenshots;
        }
        Some(status) => format!("failed ({status}) after {elapsed:.1} s"),
        None => format!("did not finish in {} s (killed)", SPEC_TIMEOUT.as_secs()),
    };
    panic!(
        "browser spec tests/browser/{spec}.mjs {verdict}; screenshots in {}\n\
         --- node's stdout ---\n{stdout}\n--- node's stderr ---\n{stderr}",
        screenshots.display()
    );
}

fn read_all(
    mut pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes).await;
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

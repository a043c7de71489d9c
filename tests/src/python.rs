//! The Python that holds the outside implementations the tests check
//! against (fastavro, oteltest, prometheus_client): `STOREFRONT_PYTHON`, else
//! the venv `scripts/prepare.sh --test` makes, else `python3`. Shared by file
//! with the schema tests, which cannot depend on this crate.

use std::{
    io::Write,
    path::PathBuf,
    process::{Command, Output, Stdio},
};

pub fn python() -> PathBuf {
    if let Ok(path) = std::env::var("STOREFRONT_PYTHON") {
        return path.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_default();
    let venv = cache.join("storefront/venv/bin/python3");
    if venv.exists() {
        venv
    } else {
        "python3".into()
    }
}

/// Runs `python -c script args...` with `input` on its stdin and returns
/// what it printed, whatever its exit status: the caller says what failure means.
pub fn run_script(script: &str, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs (scripts/prepare.sh --test makes its venv)");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input)
        .expect("python reads its input");
    child.wait_with_output().expect("python's output")
}

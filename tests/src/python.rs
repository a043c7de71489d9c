//! The Python that holds the outside implementations the tests check
//! against (fastavro, oteltest, prometheus_client): `STOREFRONT_PYTHON`, else
//! the venv `scripts/prepare.sh --test` makes, else `python3`. Shared by file
//! with the schema tests, which cannot depend on this crate.

use std::path::PathBuf;

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

//! Logging. Building the subscriber is separate from installing it, so tests
//! can install a quieter one.

use tracing_subscriber::{fmt, EnvFilter};

/// A subscriber that logs at `RUST_LOG`, else `default_filter`.
pub fn subscriber(default_filter: &str) -> impl tracing::Subscriber + Send + Sync {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .finish()
}

/// Installs `subscriber` as the global default, and routes the `log`
/// records of librdkafka's wrapper into it; later calls do nothing.
pub fn init(default_filter: &str) {
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = subscriber(default_filter).try_init();
}

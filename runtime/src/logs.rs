//! Logs: JSON lines by default (pretty on a terminal, or with
//! `STOREFRONT_LOG_FORMAT=pretty`), filtered by `RUST_LOG`. Lines written
//! while a request or record is handled carry its `request_id`,
//! `session_id` and `trace_id` from the enclosing span.

use tracing_subscriber::{fmt, fmt::MakeWriter, EnvFilter};

/// The log formats a service can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

impl LogFormat {
    /// `STOREFRONT_LOG_FORMAT` if set (`json` or `pretty`), else pretty on
    /// a terminal and JSON otherwise.
    pub fn from_env() -> Self {
        match std::env::var("STOREFRONT_LOG_FORMAT").as_deref() {
            Ok("json") => Self::Json,
            Ok("pretty") => Self::Pretty,
            _ if std::io::IsTerminal::is_terminal(&std::io::stderr()) => Self::Pretty,
            _ => Self::Json,
        }
    }
}

/// A subscriber that logs at `RUST_LOG`, else `default_filter`, to `writer`.
pub fn subscriber<W>(
    default_filter: &str,
    format: LogFormat,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = fmt().with_env_filter(filter).with_writer(writer);
    match format {
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
        LogFormat::Pretty => Box::new(
            builder
                .with_target(false)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .finish(),
        ),
    }
}

/// Installs the subscriber as the global default; later calls do nothing.
pub fn init(default_filter: &str) {
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = subscriber(default_filter, LogFormat::from_env(), std::io::stderr).try_init();
}

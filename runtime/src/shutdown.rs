//! Stopping on SIGINT or SIGTERM, and a process's runtime that does not
//! outlive its work.

use std::{future::Future, time::Duration};

/// Runs a process's `main` on a multi-threaded runtime. Once it returns,
/// blocking work still under way is waited for one second at most: a
/// stopped service has already handed back what it did not finish, and a
/// Kafka call the broker has not answered yet (a transaction's commit
/// after an outage can take several of its timeouts) must not keep the
/// process alive for it.
pub fn run_main<F: Future>(main: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the Tokio runtime starts");
    let outcome = runtime.block_on(main);
    runtime.shutdown_timeout(Duration::from_secs(1));
    outcome
}

/// Set (to anything) by a parent that starts a service as its child and
/// holds the other end of its stdin: the service stops when that end
/// closes, so it never outlives the parent, however the parent ended
/// (`storefront chaos` and the benchmarks set it).
pub const STOP_WITH_PARENT_VAR: &str = "STOREFRONT_STOP_WITH_PARENT";

/// Resolves at the first SIGINT (Ctrl-C) or SIGTERM, or, under a parent
/// that set [`STOP_WITH_PARENT_VAR`], once the parent is gone.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c()
            .await
            .expect("SIGINT handler installs");
    };
    #[cfg(unix)]
    let terminate = async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs")
            .recv()
            .await;
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        _ = terminate => tracing::info!("SIGTERM received, shutting down"),
        _ = parent_gone() => tracing::info!("the parent process is gone, shutting down"),
    }
}

/// Resolves when stdin reaches its end, if [`STOP_WITH_PARENT_VAR`] is
/// set; never otherwise (a service's stdin is usually a terminal or
/// /dev/null).
async fn parent_gone() {
    if std::env::var_os(STOP_WITH_PARENT_VAR).is_none() {
        return std::future::pending().await;
    }
    let eof = tokio::task::spawn_blocking(|| {
        use std::io::Read as _;
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while stdin.read(&mut sink).is_ok_and(|n| n > 0) {}
    });
    let _ = eof.await;
}

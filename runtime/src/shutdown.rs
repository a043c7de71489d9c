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

/// Resolves at the first SIGINT (Ctrl-C) or SIGTERM.
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
    }
}

//! HTTP servers: the reward server (`engine serve`) and the OpenAI-compatible judge server (`engine serve-judge`).
//!
//! - [`reward`]: `POST /score`, OpenRLHF's `POST /get_reward`, `GET /health`, with request
//!   batching and graceful shutdown, over any [`crate::eval::RewardScorer`]. An axum
//!   application on a tokio runtime; the model runs on a blocking thread, so a slow
//!   forward pass never stops the server from accepting requests, answering `/health` or
//!   shutting down.

pub mod judge;
pub mod reward;

/// Completes on Ctrl-C or (on Unix) SIGTERM. A signal whose handler cannot be installed
/// is not waited for.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

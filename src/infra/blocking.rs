//! Sync code calling async clients (the CLI's Docker and daemon calls): each call on a small
//! single-threaded runtime of its own, since the CLI's calls are sequential.

/// Runs a future to completion on a fresh current-thread runtime.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(fut)
}

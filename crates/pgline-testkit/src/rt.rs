//! A private Tokio runtime for the blocking API, usable from any thread, including a
//! thread that is already driving another runtime.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::Runtime;

use crate::TestkitError;

fn runtime() -> Result<&'static Runtime, TestkitError> {
    static RT: OnceLock<Result<Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("pgline-testkit")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| TestkitError::Internal(format!("cannot build the background runtime: {e}")))
}

/// Runs `fut` to completion on the private runtime and blocks this thread until it is
/// done. Unlike `Runtime::block_on`, this does not panic when called from inside another
/// runtime (it blocks that runtime's thread meanwhile, which tests can afford).
pub(crate) fn block_on<F>(fut: F) -> Result<F::Output, TestkitError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime()?.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .map_err(|_| TestkitError::Internal("a background task panicked".into()))
}

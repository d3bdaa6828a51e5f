//! [`SyncPool`] as a core [`Database`] handle, for async code.
//!
//! Each statement blocks inside [`run_blocking`]: `block_in_place` on tokio's
//! multi-thread runtime, a scoped helper thread on a current-thread runtime,
//! directly elsewhere. A transaction's closure future is polled by the
//! caller's own executor like any future, so it may await timers, channels or
//! other pools between statements; only the statements themselves block.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgline_core::{
    BoxFuture, CloseReport, Database, DbError, HealthReport, LayerChain, Params, PoolStats, Row,
    Session, SessionLayer, ToSql, TransactionError,
};

use crate::blocking::run_blocking;
use crate::client::SyncClient;
use crate::pool::SyncPool;

/// The [`Session`] a transaction closure gets: the transaction's connection.
/// Its futures block when polled (see the module docs).
struct SyncSession<'c> {
    client: &'c mut SyncClient,
}

impl Session for SyncSession<'_> {
    fn query<'a>(
        &'a mut self,
        sql: &'a str,
        params: Params<'a>,
    ) -> BoxFuture<'a, Result<Vec<Row>, DbError>> {
        Box::pin(async move { run_blocking(|| self.client.exec_query(sql, params))? })
    }

    fn execute<'a>(
        &'a mut self,
        sql: &'a str,
        params: Params<'a>,
    ) -> BoxFuture<'a, Result<u64, DbError>> {
        Box::pin(async move { run_blocking(|| self.client.exec_execute(sql, params))? })
    }

    fn batch_execute<'a>(&'a mut self, sql: &'a str) -> BoxFuture<'a, Result<(), DbError>> {
        Box::pin(async move { run_blocking(|| self.client.exec_batch(sql))? })
    }
}

impl Database for SyncPool {
    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, DbError> {
        SyncPool::query(self, sql, params)
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, DbError> {
        SyncPool::execute(self, sql, params)
    }

    async fn batch_execute(&self, sql: &str) -> Result<(), DbError> {
        SyncPool::batch_execute(self, sql)
    }

    async fn transaction<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send,
        E: TransactionError,
        F: for<'s> Fn(&'s mut dyn Session) -> BoxFuture<'s, Result<T, E>> + Send + Sync,
    {
        self.transaction_with(None, f).await
    }

    async fn transaction_with<T, E, F>(
        &self,
        layer: Option<Arc<dyn SessionLayer>>,
        f: F,
    ) -> Result<T, E>
    where
        T: Send,
        E: TransactionError,
        F: for<'s> Fn(&'s mut dyn Session) -> BoxFuture<'s, Result<T, E>> + Send + Sync,
    {
        let mut conn = self.get()?;
        run_blocking(|| conn.begin_now())??;
        // Cancellation and panics: `conn` is dropped here with its
        // transaction flag set; its guard rolls it back on a thread of its
        // own before r2d2 gets it back.
        let outcome = {
            let mut session = LayerChain::apply(layer.as_ref(), SyncSession { client: &mut conn });
            f(&mut *session).await
        };
        let finished = run_blocking(move || {
            let result = match outcome {
                Ok(value) => conn.commit_now().map(|()| value).map_err(E::from),
                Err(error) => {
                    if let Err(rollback) = conn.rollback_now() {
                        tracing::debug!(error = %rollback, "rollback failed; the connection is reset on return");
                    }
                    Err(error)
                }
            };
            // Returned here, where blocking is allowed.
            drop(conn);
            result
        });
        finished?
    }

    fn stats(&self) -> PoolStats {
        SyncPool::stats(self)
    }

    async fn health(&self, timeout: Duration) -> HealthReport {
        let started = Instant::now();
        let outcome = run_blocking(|| {
            let mut conn = self.get_now(timeout.min(self.options().acquire_timeout))?;
            let left = timeout
                .saturating_sub(started.elapsed())
                .max(Duration::from_millis(1));
            conn.ping(left)
        })
        .and_then(|checked| checked);
        HealthReport::new(
            outcome.is_ok(),
            started.elapsed(),
            SyncPool::stats(self),
            "sync",
            outcome.err().map(|e| e.to_string()),
        )
    }

    async fn close(&self, timeout: Duration) -> CloseReport {
        let started = Instant::now();
        let deadline = started + timeout;
        let first = run_blocking(|| self.begin_close()).unwrap_or_else(|_| {
            self.mark_closed();
            Default::default()
        });
        // Wait in short blocking slices and yield between them, so tasks of
        // this runtime that hold connections can finish and return them (on
        // a current-thread runtime they could not run otherwise).
        let still = loop {
            let slice_end = deadline.min(Instant::now() + Duration::from_millis(20));
            let busy = run_blocking(|| self.wait_for_returns(slice_end));
            match busy {
                Ok(0) => break 0,
                Ok(busy) if Instant::now() >= deadline => break busy,
                Err(_) if Instant::now() >= deadline => break SyncPool::stats(self).in_use,
                _ => tokio::task::yield_now().await,
            }
        };
        first.report(still, started)
    }

    fn backend(&self) -> &'static str {
        "sync"
    }
}

//! `Pool<PgManager>` as a core [`Database`] handle.

use std::sync::Arc;
use std::time::Duration;

use pgline_core::{
    BoxFuture, CloseReport, Database, DbError, ErrorKind, HealthReport, LayerChain, Params,
    PoolStats, Session, SessionLayer, TransactionError,
};
use tokio::time::Instant;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{PgConnection, PgManager};
use crate::pool::Pool;

/// The PostgreSQL pool.
pub type PgPool = Pool<PgManager>;

/// The [`Session`] a transaction closure gets: the transaction's connection.
struct PgSession<'c> {
    conn: &'c PgConnection,
}

impl Session for PgSession<'_> {
    fn query<'a>(
        &'a mut self,
        sql: &'a str,
        params: Params<'a>,
    ) -> BoxFuture<'a, Result<Vec<Row>, DbError>> {
        Box::pin(self.conn.query(sql, params))
    }

    fn execute<'a>(
        &'a mut self,
        sql: &'a str,
        params: Params<'a>,
    ) -> BoxFuture<'a, Result<u64, DbError>> {
        Box::pin(self.conn.execute(sql, params))
    }

    fn batch_execute<'a>(&'a mut self, sql: &'a str) -> BoxFuture<'a, Result<(), DbError>> {
        Box::pin(self.conn.batch_execute(sql))
    }
}

impl Database for Pool<PgManager> {
    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, DbError> {
        let conn = self.acquire().await?;
        conn.query(sql, params).await
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, DbError> {
        let conn = self.acquire().await?;
        conn.execute(sql, params).await
    }

    async fn batch_execute(&self, sql: &str) -> Result<(), DbError> {
        let conn = self.acquire().await?;
        conn.batch_execute(sql).await
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
        // Cancellation and panics: `conn` is dropped while its transaction
        // flag is set, so the pool rolls it back before reuse.
        let conn = self.acquire().await?;
        conn.begin().await?;
        let mut session = LayerChain::apply(layer.as_ref(), PgSession { conn: &conn });
        match f(&mut *session).await {
            Ok(value) => {
                conn.commit().await?;
                Ok(value)
            }
            Err(error) => {
                if let Err(rollback) = conn.rollback().await {
                    tracing::debug!(error = %rollback, "rollback failed; the connection is reset on return");
                }
                Err(error)
            }
        }
    }

    fn stats(&self) -> PoolStats {
        Pool::stats(self)
    }

    async fn health(&self, timeout: Duration) -> HealthReport {
        let started = Instant::now();
        let check = async {
            let conn = self.acquire().await?;
            conn.query_one("SELECT 1", &[]).await.map(|_| ())
        };
        let outcome = match tokio::time::timeout(timeout, check).await {
            Ok(result) => result,
            Err(_) => Err(DbError::new(ErrorKind::Timeout)
                .with_context(format!("health check exceeded {timeout:?}"))),
        };
        HealthReport::new(
            outcome.is_ok(),
            started.elapsed(),
            Pool::stats(self),
            "async",
            outcome.err().map(|e| e.to_string()),
        )
    }

    async fn close(&self, timeout: Duration) -> CloseReport {
        Pool::close(self, timeout).await
    }

    fn backend(&self) -> &'static str {
        "async"
    }
}

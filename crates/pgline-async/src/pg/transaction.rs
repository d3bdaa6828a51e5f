//! A transaction guard on a pooled connection.

use pgline_core::DbError;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::connection::PgConnection;

/// An open transaction. [`commit`](Self::commit) ends it; dropping it
/// without commit leaves the rollback to the pool, which runs it before the
/// connection is handed to anyone else.
#[must_use = "a transaction that is neither committed nor rolled back is rolled back on return"]
pub struct PgTransaction<'c> {
    conn: &'c PgConnection,
    done: bool,
}

impl<'c> PgTransaction<'c> {
    pub(crate) fn new(conn: &'c PgConnection) -> Self {
        Self { conn, done: false }
    }

    /// The connection, for statements inside the transaction.
    pub fn connection(&self) -> &'c PgConnection {
        self.conn
    }

    /// Runs a statement inside the transaction.
    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, DbError> {
        self.conn.query(sql, params).await
    }

    /// Runs a statement inside the transaction and returns the affected rows.
    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, DbError> {
        self.conn.execute(sql, params).await
    }

    /// Commits. A lost connection during `COMMIT` is `CommitOutcomeUnknown`.
    pub async fn commit(mut self) -> Result<(), DbError> {
        self.done = true;
        self.conn.commit().await
    }

    /// Rolls back now (instead of on return).
    pub async fn rollback(mut self) -> Result<(), DbError> {
        self.done = true;
        self.conn.rollback().await
    }
}

impl Drop for PgTransaction<'_> {
    fn drop(&mut self) {
        if !self.done {
            tracing::debug!(
                connection_id = self.conn.id(),
                "transaction dropped without commit; rolled back on return"
            );
        }
    }
}

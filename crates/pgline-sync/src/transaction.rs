//! A transaction guard on a pooled connection.

use pgline_core::{DbError, Row, ToSql, at_most_one, exactly_one};

use crate::blocking::{can_block_here, run_blocking};
use crate::client::SyncClient;

/// An open transaction. [`commit`](Self::commit) ends it; dropped without
/// commit (an error returned with `?`, a panic) it is rolled back: at once
/// when the thread may block, otherwise before the connection runs anything
/// else or goes back to the pool.
#[must_use = "a transaction that is neither committed nor rolled back is rolled back"]
pub struct SyncTransaction<'c> {
    client: &'c mut SyncClient,
    done: bool,
}

impl<'c> SyncTransaction<'c> {
    pub(crate) fn new(client: &'c mut SyncClient) -> Self {
        Self {
            client,
            done: false,
        }
    }

    /// Runs a statement inside the transaction and returns its rows.
    pub fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, DbError> {
        run_blocking(|| self.client.exec_query(sql, params))?
    }

    /// Runs a statement that must return exactly one row.
    pub fn query_one(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, DbError> {
        exactly_one(self.query(sql, params)?)
    }

    /// Runs a statement that returns at most one row.
    pub fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, DbError> {
        at_most_one(self.query(sql, params)?)
    }

    /// Runs a statement inside the transaction and returns the affected rows.
    pub fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, DbError> {
        run_blocking(|| self.client.exec_execute(sql, params))?
    }

    /// Runs statements separated by semicolons inside the transaction.
    pub fn batch_execute(&mut self, sql: &str) -> Result<(), DbError> {
        run_blocking(|| self.client.exec_batch(sql))?
    }

    /// Commits. A lost connection during `COMMIT` is
    /// [`CommitOutcomeUnknown`](pgline_core::ErrorKind::CommitOutcomeUnknown).
    pub fn commit(mut self) -> Result<(), DbError> {
        self.done = true;
        run_blocking(|| self.client.commit_now())?
    }

    /// Rolls back now.
    pub fn rollback(mut self) -> Result<(), DbError> {
        self.done = true;
        run_blocking(|| self.client.rollback_now())?
    }
}

impl Drop for SyncTransaction<'_> {
    fn drop(&mut self) {
        if self.done || !can_block_here() || self.client.flags.interrupted {
            // Not here: the connection's flag stays set, and the next
            // statement or the return to the pool rolls back first (an
            // interrupted connection is closed instead).
            return;
        }
        if let Err(e) = self.client.rollback_now() {
            tracing::debug!(
                connection_id = self.client.id(),
                error = %e,
                "rollback of a dropped transaction failed; the connection is reset on return"
            );
        }
    }
}

impl std::fmt::Debug for SyncTransaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncTransaction")
            .field("connection_id", &self.client.id())
            .field("done", &self.done)
            .finish()
    }
}

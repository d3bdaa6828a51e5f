//! One PostgreSQL connection with the bookkeeping that keeps it clean.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use pgline_core::{DbError, ErrorKind, RemoveReason, Row, ToSql, at_most_one, exactly_one};
use r2d2_postgres::postgres::types::Type;
use r2d2_postgres::postgres::{Client, SimpleQueryMessage, Statement};

use crate::blocking::{can_block_here, off_thread, run_blocking};
use crate::shared::Shared;
use crate::transaction::SyncTransaction;
use crate::unnamed;
use pgline_core::may_open_transaction;

/// A connection of the sync pool: a `postgres::Client` and what the pool
/// knows about its session.
///
/// Every statement goes through these methods so the connection knows when it
/// may be dirty (see the crate docs, "Clean state");
/// [`client_unchecked`](Self::client_unchecked) is the escape hatch, and
/// using it marks the connection for a `ROLLBACK` when it is returned.
///
/// The methods block. They may be called from plain threads and also from
/// async code: on a tokio runtime they leave it first (`block_in_place`, or a
/// helper thread on a current-thread runtime) instead of panicking.
pub struct SyncClient {
    /// `None` only while the connection is being dropped.
    client: Option<Client>,
    /// The pool-unique id, set by the event handler once r2d2 numbered the
    /// connection (see `events.rs`).
    id: Arc<AtomicU64>,
    pub(crate) flags: Flags,
    pub(crate) created_at: Instant,
    /// When the connection was last returned (or opened).
    pub(crate) last_used: Instant,
    cache: Option<StatementCache>,
    /// With the cache off: parameter types per SQL text (see `unnamed`).
    types: pgline_core::ParamTypes,
    shared: Arc<Shared>,
}

/// What the connection knows about its session.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    /// `BEGIN` was sent by this crate and no `COMMIT`/`ROLLBACK` finished it.
    pub(crate) in_transaction: bool,
    /// A statement that may open a transaction ran, or the raw client was used.
    pub(crate) suspect: bool,
    /// A statement was interrupted by a panic: the protocol state is unknown.
    pub(crate) interrupted: bool,
    /// The connection must be closed, not reused, and why.
    pub(crate) discard: Option<RemoveReason>,
}

impl Flags {
    /// A `ROLLBACK` makes the connection clean again.
    pub(crate) fn needs_reset(&self) -> bool {
        self.in_transaction || self.suspect
    }
}

impl SyncClient {
    pub(crate) fn new(client: Client, shared: Arc<Shared>, cache_size: usize) -> Self {
        let now = Instant::now();
        Self {
            client: Some(client),
            id: Arc::new(AtomicU64::new(0)),
            flags: Flags::default(),
            created_at: now,
            last_used: now,
            cache: (cache_size > 0).then(|| StatementCache::new(cache_size)),
            types: pgline_core::ParamTypes::default(),
            shared,
        }
    }

    /// The pool-unique id of this connection (as in events).
    pub fn id(&self) -> u64 {
        self.id.load(Relaxed)
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub(crate) fn id_cell(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.id)
    }

    /// True when the socket is closed (no IO).
    pub fn is_closed(&self) -> bool {
        self.client.as_ref().is_none_or(Client::is_closed)
    }

    /// The underlying `postgres::Client`. Statements sent through it bypass
    /// the clean-state tracking, so the connection is rolled back when it
    /// returns to the pool. Like every blocking call, using it on a tokio
    /// runtime thread panics: call it from a plain thread.
    pub fn client_unchecked(&mut self) -> Result<&mut Client, DbError> {
        self.flags.suspect = true;
        self.client.as_mut().ok_or_else(gone)
    }

    /// Runs a statement (prepared through the per-connection cache) and
    /// returns its rows.
    pub fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, DbError> {
        run_blocking(|| {
            self.settle()?;
            self.exec_query(sql, params)
        })?
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

    /// Runs a statement and returns the number of rows it affected.
    pub fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, DbError> {
        run_blocking(|| {
            self.settle()?;
            self.exec_execute(sql, params)
        })?
    }

    /// Runs statements separated by semicolons with the simple protocol.
    pub fn batch_execute(&mut self, sql: &str) -> Result<(), DbError> {
        run_blocking(|| {
            self.settle()?;
            self.exec_batch(sql)
        })?
    }

    /// Runs statements with the simple protocol and returns their messages
    /// (text results, one round trip).
    pub fn simple_query(&mut self, sql: &str) -> Result<Vec<SimpleQueryMessage>, DbError> {
        run_blocking(|| {
            self.settle()?;
            self.flags.suspect |= may_open_transaction(sql);
            let client = self.client.as_mut().ok_or_else(gone)?;
            self.flags.interrupted = true;
            let result = client.simple_query(sql);
            self.flags.interrupted = false;
            result.map_err(DbError::query)
        })?
    }

    /// Starts a transaction. Commit it with [`SyncTransaction::commit`];
    /// dropped without commit it is rolled back (at once on a plain thread,
    /// else before the connection is used again).
    pub fn transaction(&mut self) -> Result<SyncTransaction<'_>, DbError> {
        run_blocking(|| {
            self.settle()?;
            self.begin_now()
        })??;
        Ok(SyncTransaction::new(self))
    }

    /// Rolls back a transaction whose guard was dropped where blocking was not
    /// allowed, before anything else runs on the connection.
    fn settle(&mut self) -> Result<(), DbError> {
        if self.flags.in_transaction {
            self.rollback_now()?;
        }
        Ok(())
    }

    /// The statement for `sql` and whether it may open a transaction.
    fn statement(&mut self, sql: &str) -> Result<(Statement, bool), DbError> {
        if let Some(hit) = self.cache.as_ref().and_then(|c| c.get(sql)) {
            return Ok(hit);
        }
        let suspect = may_open_transaction(sql);
        let client = self.client.as_mut().ok_or_else(gone)?;
        self.flags.interrupted = true;
        let prepared = client.prepare(sql);
        self.flags.interrupted = false;
        let statement = prepared.map_err(DbError::query)?;
        if let Some(cache) = &mut self.cache {
            cache.insert(sql, statement.clone(), suspect);
        }
        Ok((statement, suspect))
    }

    /// With the cache off: `params` paired with the parameter types of `sql`
    /// (from the type cache or the server; see the `unnamed` module).
    fn typed<'p>(
        &mut self,
        sql: &str,
        params: &[&'p (dyn ToSql + Sync)],
    ) -> Result<Vec<(&'p (dyn ToSql + Sync), Type)>, DbError> {
        self.flags.suspect |= may_open_transaction(sql);
        let types = match self.types.get(sql) {
            Some(types) => types,
            None => {
                let own_transaction = !self.flags.in_transaction && !self.flags.suspect;
                let client = self.client.as_mut().ok_or_else(gone)?;
                self.flags.interrupted = true;
                let described = unnamed::describe(client, sql, own_transaction);
                self.flags.interrupted = false;
                let types = described.map_err(DbError::query)?;
                self.types.insert(sql, types.clone());
                types
            }
        };
        pgline_core::ParamTypes::check_count(&types, params.len())?;
        Ok(params.iter().copied().zip(types).collect())
    }

    // The `exec_*` methods block right here: callers are inside
    // `run_blocking` or on a thread that may block. With the statement cache
    // off they run on the unnamed statement (PgBouncer-safe).

    pub(crate) fn exec_query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, DbError> {
        if self.cache.is_none() {
            let typed = self.typed(sql, params)?;
            let client = self.client.as_mut().ok_or_else(gone)?;
            self.flags.interrupted = true;
            let result = client.query_typed(sql, &typed);
            self.flags.interrupted = false;
            return result.map_err(DbError::query);
        }
        let (statement, suspect) = self.statement(sql)?;
        self.flags.suspect |= suspect;
        let client = self.client.as_mut().ok_or_else(gone)?;
        // Left set if a panic (in a `ToSql`, say) unwinds out of the call.
        self.flags.interrupted = true;
        let result = client.query(&statement, params);
        self.flags.interrupted = false;
        result.map_err(DbError::query)
    }

    pub(crate) fn exec_execute(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, DbError> {
        if self.cache.is_none() {
            let typed = self.typed(sql, params)?;
            let client = self.client.as_mut().ok_or_else(gone)?;
            self.flags.interrupted = true;
            let result = client.execute_typed(sql, &typed);
            self.flags.interrupted = false;
            return result.map_err(DbError::query);
        }
        let (statement, suspect) = self.statement(sql)?;
        self.flags.suspect |= suspect;
        let client = self.client.as_mut().ok_or_else(gone)?;
        self.flags.interrupted = true;
        let result = client.execute(&statement, params);
        self.flags.interrupted = false;
        result.map_err(DbError::query)
    }

    pub(crate) fn exec_batch(&mut self, sql: &str) -> Result<(), DbError> {
        self.flags.suspect |= may_open_transaction(sql);
        self.raw_batch(sql)
    }

    fn raw_batch(&mut self, sql: &str) -> Result<(), DbError> {
        let client = self.client.as_mut().ok_or_else(gone)?;
        self.flags.interrupted = true;
        let result = client.batch_execute(sql);
        self.flags.interrupted = false;
        result.map_err(DbError::query)
    }

    /// A bounded empty-query round trip (the validation and health check).
    pub(crate) fn ping(&mut self, timeout: std::time::Duration) -> Result<(), DbError> {
        let client = self.client.as_mut().ok_or_else(gone)?;
        self.flags.interrupted = true;
        let result = client.is_valid(timeout);
        self.flags.interrupted = false;
        if result.is_err() {
            // A timed-out check may still be in flight: never reuse.
            self.flags.discard = Some(RemoveReason::Broken);
        }
        result.map_err(|e| DbError::postgres(ErrorKind::Query, e))
    }

    pub(crate) fn begin_now(&mut self) -> Result<(), DbError> {
        // Marked before the round trip: a failed BEGIN may still have opened one.
        self.flags.in_transaction = true;
        self.raw_batch("BEGIN")
    }

    /// Sends `COMMIT`. A lost connection while it is in flight is reported as
    /// [`ErrorKind::CommitOutcomeUnknown`].
    pub(crate) fn commit_now(&mut self) -> Result<(), DbError> {
        match self.raw_batch("COMMIT") {
            Ok(()) => {
                self.flags.in_transaction = false;
                Ok(())
            }
            Err(error) if error.is_connection_lost() || error.code().is_none() => {
                Err(DbError::new(ErrorKind::CommitOutcomeUnknown).with_context(error.to_string()))
            }
            Err(error) => {
                // The server answered with an error: it rolled back.
                self.flags.in_transaction = false;
                Err(error)
            }
        }
    }

    pub(crate) fn rollback_now(&mut self) -> Result<(), DbError> {
        self.raw_batch("ROLLBACK")?;
        self.flags.in_transaction = false;
        Ok(())
    }

    /// Leaves any transaction block, aborted or not (a harmless notice when
    /// there was none), so the connection can be handed out again.
    pub(crate) fn reset_now(&mut self) -> Result<(), DbError> {
        if self.flags.interrupted {
            return Err(DbError::new(ErrorKind::Rejected)
                .with_context("a statement was interrupted; the connection cannot be reset"));
        }
        self.raw_batch("ROLLBACK")
            .map_err(|e| e.with_context("reset"))?;
        self.flags.in_transaction = false;
        self.flags.suspect = false;
        Ok(())
    }
}

impl Drop for SyncClient {
    fn drop(&mut self) {
        let reason = self
            .flags
            .discard
            .unwrap_or_else(|| self.shared.inferred_reason(self.created_at));
        self.shared.removed(self.id(), reason);
        let Some(client) = self.client.take() else {
            return;
        };
        if can_block_here() {
            drop(client);
            return;
        }
        // Dropping a `postgres::Client` blocks on its own runtime, which
        // panics inside another runtime: close it on a thread of its own.
        if let Err(client) = off_thread("pgline-sync-close", client, drop) {
            tracing::warn!(
                connection_id = self.id(),
                "no thread to close a connection on; leaking its socket"
            );
            std::mem::forget(client);
        }
    }
}

impl std::fmt::Debug for SyncClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncClient")
            .field("id", &self.id())
            .field("closed", &self.is_closed())
            .field("flags", &self.flags)
            .finish()
    }
}

fn gone() -> DbError {
    DbError::new(ErrorKind::Rejected).with_context("the connection is being closed")
}

/// A bounded per-connection cache of prepared statements (FIFO eviction),
/// with each statement's scan verdict so the scan runs once per text.
struct StatementCache {
    capacity: usize,
    map: HashMap<Box<str>, (Statement, bool)>,
    order: VecDeque<Box<str>>,
}

impl StatementCache {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            map: HashMap::with_capacity(capacity.min(64)),
            order: VecDeque::new(),
        }
    }

    fn get(&self, sql: &str) -> Option<(Statement, bool)> {
        self.map.get(sql).cloned()
    }

    fn insert(&mut self, sql: &str, statement: Statement, suspect: bool) {
        if self.map.contains_key(sql) {
            return;
        }
        while self.map.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        self.map.insert(sql.into(), (statement, suspect));
        self.order.push_back(sql.into());
    }
}

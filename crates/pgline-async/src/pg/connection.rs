//! One PostgreSQL connection with the bookkeeping that keeps it clean.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use pgline_core::{DbError, ErrorKind, at_most_one, exactly_one};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{CancelToken, Client, Row, SimpleQueryMessage, Statement};

use super::transaction::PgTransaction;
use super::unnamed;
use pgline_core::may_open_transaction;

/// A connection of the PostgreSQL pool.
///
/// It does not hand out its `tokio_postgres::Client` freely: every statement
/// goes through these methods so the connection knows when it may be dirty
/// (see the crate docs, "Clean state"). [`client_unchecked`](Self::client_unchecked)
/// is the escape hatch; using it marks the connection for a reset on return.
pub struct PgConnection {
    client: Client,
    cancel: CancelToken,
    pub(crate) id: u64,
    flags: Flags,
    cache: Option<Mutex<StatementCache>>,
    /// With the cache off: parameter types per SQL text (see `unnamed`).
    types: Mutex<pgline_core::ParamTypes>,
    query_timeout: Option<Duration>,
}

/// What the connection knows about its session.
#[derive(Default)]
pub(crate) struct Flags {
    /// A transaction opened through [`PgConnection::transaction`] is not finished.
    pub(crate) in_transaction: AtomicBool,
    /// A statement that may open a transaction ran, or the raw client was used.
    pub(crate) suspect: AtomicBool,
    /// A statement's future was dropped before it completed.
    pub(crate) cancelled: AtomicBool,
}

impl Flags {
    pub(crate) fn needs_reset(&self) -> bool {
        self.in_transaction.load(Relaxed)
            || self.suspect.load(Relaxed)
            || self.cancelled.load(Relaxed)
    }

    pub(crate) fn clear(&self) {
        self.in_transaction.store(false, Relaxed);
        self.suspect.store(false, Relaxed);
        self.cancelled.store(false, Relaxed);
    }
}

/// Marks the connection when a statement's future is dropped mid-flight.
struct InFlight<'a> {
    flags: &'a Flags,
}

impl InFlight<'_> {
    fn done(self) {
        std::mem::forget(self);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        // Cancellation: the statement may still run on the server; the
        // connection is cancelled and rolled back before anyone reuses it.
        self.flags.cancelled.store(true, Relaxed);
    }
}

/// A bounded per-connection cache of prepared statements (FIFO eviction).
pub(crate) struct StatementCache {
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

impl PgConnection {
    pub(crate) fn new(client: Client, cache_size: usize, query_timeout: Option<Duration>) -> Self {
        let cancel = client.cancel_token();
        Self {
            client,
            cancel,
            id: 0,
            flags: Flags::default(),
            cache: (cache_size > 0).then(|| Mutex::new(StatementCache::new(cache_size))),
            types: Mutex::new(pgline_core::ParamTypes::default()),
            query_timeout,
        }
    }

    /// The pool-unique id of this connection.
    pub fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn flags(&self) -> &Flags {
        &self.flags
    }

    pub(crate) fn raw(&self) -> &Client {
        &self.client
    }

    pub(crate) fn cancel_token(&self) -> &CancelToken {
        &self.cancel
    }

    /// True when the socket is closed (no IO).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// The underlying client. Statements sent through it bypass the
    /// clean-state tracking, so the connection is reset (rolled back) when it
    /// returns to the pool.
    pub fn client_unchecked(&self) -> &Client {
        self.flags.suspect.store(true, Relaxed);
        &self.client
    }

    /// Runs one protocol exchange within the query timeout. On expiry the
    /// inner future is dropped, so its `InFlight` guard marks the connection
    /// cancelled and the pool cancels the statement on the server.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, DbError> {
        match self.query_timeout {
            None => call.await.map_err(DbError::query),
            Some(limit) => match tokio::time::timeout(limit, call).await {
                Ok(result) => result.map_err(DbError::query),
                Err(_) => {
                    self.flags.cancelled.store(true, Relaxed);
                    Err(DbError::new(ErrorKind::Timeout)
                        .with_context(format!("statement exceeded the query timeout of {limit:?}")))
                }
            },
        }
    }

    /// Prepares `sql`, or takes it from the statement cache.
    pub async fn prepare_cached(&self, sql: &str) -> Result<Statement, DbError> {
        Ok(self.statement(sql).await?.0)
    }

    async fn statement(&self, sql: &str) -> Result<(Statement, bool), DbError> {
        let Some(cache) = &self.cache else {
            let suspect = may_open_transaction(sql);
            let guard = InFlight { flags: &self.flags };
            let prepared = self.bounded(self.client.prepare(sql)).await;
            guard.done();
            return Ok((prepared?, suspect));
        };
        if let Some(hit) = lock(cache).get(sql) {
            return Ok(hit);
        }
        let suspect = may_open_transaction(sql);
        let guard = InFlight { flags: &self.flags };
        let prepared = self.bounded(self.client.prepare(sql)).await;
        guard.done();
        let statement = prepared?;
        lock(cache).insert(sql, statement.clone(), suspect);
        Ok((statement, suspect))
    }

    /// The parameter types of `sql` with the statement cache off (see the
    /// `unnamed` module), from the type cache or the server.
    pub(crate) async fn param_types(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Type>, DbError> {
        if may_open_transaction(sql) {
            self.flags.suspect.store(true, Relaxed);
        }
        let cached = lock(&self.types).get(sql);
        let types = match cached {
            Some(types) => types,
            None => {
                let own_transaction =
                    !self.flags.in_transaction.load(Relaxed) && !self.flags.suspect.load(Relaxed);
                let guard = InFlight { flags: &self.flags };
                let described = self
                    .bounded(unnamed::describe(&self.client, sql, own_transaction))
                    .await;
                guard.done();
                let types = described?;
                lock(&self.types).insert(sql, types.clone());
                types
            }
        };
        pgline_core::ParamTypes::check_count(&types, params.len())?;
        Ok(types)
    }

    /// Runs a statement and returns its rows: prepared through the cache, or
    /// with the cache off on the unnamed statement in one exchange (the
    /// PgBouncer-safe way; see the `unnamed` module).
    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, DbError> {
        if self.cache.is_none() {
            let types = self.param_types(sql, params).await?;
            let typed: Vec<_> = params.iter().copied().zip(types).collect();
            let guard = InFlight { flags: &self.flags };
            let result = self.bounded(self.client.query_typed(sql, &typed)).await;
            guard.done();
            return result;
        }
        let (statement, suspect) = self.statement(sql).await?;
        if suspect {
            self.flags.suspect.store(true, Relaxed);
        }
        let guard = InFlight { flags: &self.flags };
        let result = self.bounded(self.client.query(&statement, params)).await;
        guard.done();
        result
    }

    /// Runs a statement that must return exactly one row.
    pub async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, DbError> {
        exactly_one(self.query(sql, params).await?)
    }

    /// Runs a statement that returns at most one row.
    pub async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, DbError> {
        at_most_one(self.query(sql, params).await?)
    }

    /// Runs a statement and returns the number of rows it affected.
    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, DbError> {
        if self.cache.is_none() {
            let types = self.param_types(sql, params).await?;
            let typed: Vec<_> = params.iter().copied().zip(types).collect();
            let guard = InFlight { flags: &self.flags };
            let result = self.bounded(self.client.execute_typed(sql, &typed)).await;
            guard.done();
            return result;
        }
        let (statement, suspect) = self.statement(sql).await?;
        if suspect {
            self.flags.suspect.store(true, Relaxed);
        }
        let guard = InFlight { flags: &self.flags };
        let result = self.bounded(self.client.execute(&statement, params)).await;
        guard.done();
        result
    }

    /// Runs statements separated by semicolons with the simple protocol.
    pub async fn batch_execute(&self, sql: &str) -> Result<(), DbError> {
        if may_open_transaction(sql) {
            self.flags.suspect.store(true, Relaxed);
        }
        let guard = InFlight { flags: &self.flags };
        let result = self.bounded(self.client.batch_execute(sql)).await;
        guard.done();
        result
    }

    /// Runs statements with the simple protocol and returns their messages
    /// (one round trip, text results).
    pub async fn simple_query(&self, sql: &str) -> Result<Vec<SimpleQueryMessage>, DbError> {
        if may_open_transaction(sql) {
            self.flags.suspect.store(true, Relaxed);
        }
        let guard = InFlight { flags: &self.flags };
        let result = self.bounded(self.client.simple_query(sql)).await;
        guard.done();
        result
    }

    /// Starts a transaction. Commit it with [`PgTransaction::commit`]; dropped
    /// without commit, it is rolled back before the connection is reused.
    pub async fn transaction(&self) -> Result<PgTransaction<'_>, DbError> {
        self.begin().await?;
        Ok(PgTransaction::new(self))
    }

    pub(crate) async fn begin(&self) -> Result<(), DbError> {
        // Marked before the round trip: a cancelled BEGIN may still open one.
        self.flags.in_transaction.store(true, Relaxed);
        let guard = InFlight { flags: &self.flags };
        let result = self.bounded(self.client.batch_execute("BEGIN")).await;
        guard.done();
        result
    }

    /// Sends `COMMIT`. A lost connection while it is in flight is reported as
    /// [`ErrorKind::CommitOutcomeUnknown`].
    pub(crate) async fn commit(&self) -> Result<(), DbError> {
        let guard = InFlight { flags: &self.flags };
        let result = self.client.batch_execute("COMMIT").await;
        guard.done();
        match result {
            Ok(()) => {
                self.flags.in_transaction.store(false, Relaxed);
                Ok(())
            }
            Err(e) => {
                let error = DbError::query(e);
                if error.is_connection_lost() || error.code().is_none() {
                    Err(DbError::new(ErrorKind::CommitOutcomeUnknown)
                        .with_context(error.to_string()))
                } else {
                    // The server answered with an error: it rolled back.
                    self.flags.in_transaction.store(false, Relaxed);
                    Err(error)
                }
            }
        }
    }

    pub(crate) async fn rollback(&self) -> Result<(), DbError> {
        let guard = InFlight { flags: &self.flags };
        let result = self.bounded(self.client.batch_execute("ROLLBACK")).await;
        guard.done();
        result?;
        self.flags.in_transaction.store(false, Relaxed);
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl std::fmt::Debug for PgConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConnection")
            .field("id", &self.id)
            .field("closed", &self.client.is_closed())
            .field("needs_reset", &self.flags.needs_reset())
            .finish()
    }
}

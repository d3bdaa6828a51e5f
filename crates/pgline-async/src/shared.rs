//! The shared (pipelined) path: single autocommit statements that share
//! connections instead of borrowing one exclusively.
//!
//! tokio-postgres pipelines requests that are sent concurrently on one
//! `Client`: the second statement is written before the first one's answer
//! arrives. A [`SharedLane`] takes `k` connections out of the pool
//! *exclusively* (they count as in use, and a connection is never in both
//! modes at once) and spreads statements over them, the least busy first.
//! Many more tasks than connections then run statements without queueing
//! for a connection of their own.
//!
//! # Example
//!
//! ```no_run
//! use pgline_async::{PgPool, SharedOptions};
//! use pgline_core::DbError;
//!
//! # async fn demo(pool: PgPool) -> Result<(), DbError> {
//! // Four of the pool's connections, shared by every task that uses the lane.
//! let lane = pool.shared(SharedOptions::new(4)).await?;
//! let n: i64 = lane
//!     .query_one("SELECT count(*) FROM panels WHERE status = $1", &[&"PENDING"])
//!     .await?
//!     .get(0);
//! lane.execute("UPDATE panels SET status = 'IN_PROGRESS' WHERE barcode = $1", &[&"P-1"])
//!     .await?;
//! // Statements that open transactions or change session state are refused:
//! assert!(lane.execute("SET search_path = other", &[]).await.is_err());
//! // Give the connections back (reset first) and wait until they are back.
//! lane.close().await;
//! # let _ = n;
//! # Ok(()) }
//! ```
//!
//! # What may run here
//!
//! A statement runs on the shared path only if [`check_shared_statement`]
//! accepts it; otherwise the call fails at once with
//! [`ErrorKind::Rejected`] and a message that says why, before anything is
//! sent. Run such statements on an exclusive connection
//! ([`Pool::acquire`](crate::Pool::acquire),
//! [`Database::transaction`](pgline_core::Database::transaction)). The check
//! looks at the SQL text outside comments, string literals and
//! dollar-quoted bodies (quoted identifiers are checked too):
//!
//! - **one statement**: nothing but whitespace and comments after a `;`;
//! - **allowed first keyword** (after any `(`): `SELECT`, `WITH`, `VALUES`,
//!   `TABLE`, `INSERT`, `UPDATE`, `DELETE`, `MERGE`. Everything else is
//!   refused, among them `BEGIN`/`START`/`COMMIT`/`ROLLBACK`/`SAVEPOINT`/
//!   `RELEASE`/`ABORT`/`END`, `SET`/`RESET`/`SHOW`, `LISTEN`/`UNLISTEN`/
//!   `NOTIFY`, `CREATE` (temporary tables included), `DISCARD`,
//!   `PREPARE`/`EXECUTE`/`DEALLOCATE`, `DECLARE`/`FETCH`/`CLOSE`/`MOVE`,
//!   `LOCK`, `COPY`, `DO`, `CALL`, `EXPLAIN`, `VACUUM` and all DDL;
//! - **no denied word** anywhere, as a whole word, case-insensitive:
//!   `begin`, `start`, `commit`, `rollback`, `savepoint`, `abort`, `listen`,
//!   `unlisten`, `notify`, `prepare`, `deallocate`, `declare`, `discard`,
//!   `copy`, `lock`, `call`, `temp`, `temporary`, `set_config`, `currval`,
//!   `lastval`, `pg_cancel_backend`, `pg_terminate_backend`; any word that
//!   starts with `pg_temp` or `dblink` or contains `advisory`
//!   (`pg_advisory_lock`, `pg_try_advisory_xact_lock`...);
//! - **nothing the scan cannot read**: an unterminated string, comment,
//!   quoted identifier or dollar quote, and any `U&'…'` / `U&"…"` (Unicode
//!   escapes could spell a denied name), are refused.
//!
//! The denied words are function calls and clauses that change the session
//! (`set_config`, advisory locks, `dblink` connections), read another
//! caller's session state (`currval`, `lastval`), stop what the shared
//! backend runs (`pg_cancel_backend`, `pg_terminate_backend`) or touch
//! temporary tables; the statement keywords are refused again as words for
//! defence in depth. False positives (a column named `start` or `lock`) only
//! send the caller to the exclusive path. The scan assumes
//! `standard_conforming_strings = on` (the default since PostgreSQL 9.1).
//! It cannot see inside user-defined functions: a function that changes
//! session state must not be called on this path.
//!
//! The lane also only speaks the extended protocol (every statement is
//! prepared), which the server itself refuses for several statements in one
//! string.
//!
//! # Errors and isolation
//!
//! Every request carries its own `Sync`: the server runs it in its own
//! implicit transaction, and an error ends only that request. The others
//! queued on the same connection are unaffected.
//!
//! # Cancellation and time limits
//!
//! A PostgreSQL cancel request stops whatever the backend is running, which
//! on a shared connection may be another caller's statement, so **the lane
//! never sends one**:
//!
//! - A dropped statement future abandons its answer: tokio-postgres reads and
//!   discards it when it arrives. The statement itself still runs to its end
//!   on the server (it was already written), within the server-side bound
//!   below.
//! - Each lane connection gets `SET statement_timeout` at checkout
//!   ([`SharedOptions::statement_timeout`], 30 s by default), so the server
//!   stops any statement that runs longer; the caller gets the server's
//!   `57014` error.
//! - A caller waits at most [`SharedOptions::response_timeout`] for its
//!   answer (queueing on the connection included) and then gets
//!   [`ErrorKind::Timeout`]. The connection is then taken out of rotation
//!   (it may be stalled): it gets no new statements and is released when its
//!   last statement is done.
//!
//! # Behind PgBouncer (statement cache off)
//!
//! When the pool's statement cache is off (`statement_cache_size = 0`, the
//! PgBouncer setting), the lane prepares no named statement and makes no
//! session setting: each statement goes out as one self-contained exchange
//! on the unnamed statement (`query_typed`: Parse, Bind, Execute, Sync), so
//! PgBouncer in transaction mode may run each pipelined request on any server
//! connection. Parameter types are described once per SQL text on an
//! *exclusive* connection of the pool (inside `BEGIN` … `ROLLBACK`; never on
//! a shared one, where a transaction would capture other callers'
//! statements), so the pool needs one connection more than the lane holds
//! for the first use of each statement. `SharedOptions::statement_timeout` is
//! not set then: give the role a `statement_timeout`
//! (`ALTER ROLE … SET statement_timeout`); the response timeout still
//! applies.
//!
//! # Giving connections back
//!
//! A lane connection goes back to the pool when the lane is closed or
//! dropped, when it has served the lane for [`SharedOptions::max_hold`]
//! (with a random spread, so the pool's lifetimes and idle checks still
//! apply) or when it was taken out of rotation. Once no statement uses it
//! any more, a background task sends `RESET ALL` (queued behind any
//! abandoned statement, so it runs after them) and then returns it,
//! clean: no transaction (every statement was autocommit) and no session
//! setting. A connection that cannot be reset within
//! `statement_timeout + 5 s`, is broken, or whose reset never ran (the lane
//! dropped while the runtime shuts down) is discarded by the pool instead:
//! it is marked as having a cancelled statement from checkout until the reset
//! succeeds, which is the pool's own rule for "never reuse". (That discard
//! sends the pool's usual cancel request, but only to a backend no caller
//! uses any more.) A broken connection is replaced in the background.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use pgline_core::{DbError, ErrorKind, at_most_one, exactly_one};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row, Statement};

use crate::pg::{PgManager, PgPool};
use crate::pooled::Pooled;

/// How a [`SharedLane`] is sized and bounded.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SharedOptions {
    /// Connections the lane takes from the pool (at least 1).
    pub connections: u32,
    /// Server-side bound on every statement (`SET statement_timeout` on the
    /// lane's connections). Default 30 s.
    pub statement_timeout: Duration,
    /// How long a caller waits for its answer, queueing on the connection
    /// included, before it gets [`ErrorKind::Timeout`]. Default
    /// `2 × statement_timeout + 5 s`.
    pub response_timeout: Duration,
    /// A connection that has served the lane this long (minus up to 10 %,
    /// at random) goes back to the pool and is replaced. Default 5 min.
    pub max_hold: Duration,
    /// Prepared statements cached per lane connection. Default 100.
    pub statement_cache: usize,
    /// How often the lane replaces broken connections and rotates old ones.
    /// Default 1 s.
    pub maintenance_interval: Duration,
}

impl SharedOptions {
    /// Defaults for a lane of `connections` connections.
    pub fn new(connections: u32) -> Self {
        let statement_timeout = Duration::from_secs(30);
        Self {
            connections,
            statement_timeout,
            response_timeout: statement_timeout * 2 + Duration::from_secs(5),
            max_hold: Duration::from_secs(300),
            statement_cache: 100,
            maintenance_interval: Duration::from_secs(1),
        }
    }

    /// Sets the server-side `statement_timeout` (and the response timeout
    /// to twice that plus 5 s).
    #[must_use]
    pub fn with_statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self.response_timeout = timeout * 2 + Duration::from_secs(5);
        self
    }

    /// Sets how long a caller waits for its answer.
    #[must_use]
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Sets how long a connection serves the lane before it is rotated.
    #[must_use]
    pub fn with_max_hold(mut self, hold: Duration) -> Self {
        self.max_hold = hold;
        self
    }

    /// Sets the per-connection statement cache size (at least 1).
    #[must_use]
    pub fn with_statement_cache(mut self, size: usize) -> Self {
        self.statement_cache = size;
        self
    }

    fn validate(&self) -> Result<(), DbError> {
        let problem = if self.connections == 0 {
            Some("connections must be at least 1")
        } else if self.statement_timeout.as_millis() == 0 {
            Some("statement_timeout must be at least 1 ms")
        } else if self.response_timeout.is_zero() {
            Some("response_timeout must be positive")
        } else if self.max_hold.is_zero() || self.maintenance_interval.is_zero() {
            Some("max_hold and maintenance_interval must be positive")
        } else {
            None
        };
        match problem {
            Some(p) => Err(DbError::new(ErrorKind::Rejected)
                .with_context(format!("invalid shared-lane options: {p}"))),
            None => Ok(()),
        }
    }
}

impl PgPool {
    /// Takes `options.connections` connections from the pool for a
    /// [`SharedLane`] and sets them up (see the [module docs](crate::shared)).
    /// Fails like [`acquire`](crate::Pool::acquire) when the pool cannot
    /// hand them out; connections already taken go back.
    pub async fn shared(&self, options: SharedOptions) -> Result<SharedLane, DbError> {
        SharedLane::open(self.clone(), options).await
    }
}

/// Statements that share a few of the pool's connections; see the
/// [module docs](crate::shared). Cloning is cheap; all clones share the lane,
/// which gives its connections back when [closed](Self::close) or when the
/// last clone is dropped.
#[derive(Clone)]
pub struct SharedLane {
    inner: Arc<LaneInner>,
}

impl std::fmt::Debug for SharedLane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLane")
            .field("options", &self.inner.options)
            .field("connections", &self.connections())
            .field("outstanding", &self.outstanding())
            .finish()
    }
}

struct LaneInner {
    pool: PgPool,
    options: SharedOptions,
    state: Mutex<LaneState>,
    /// Woken when a connection joins the lane or an opener gives up.
    joined: Notify,
    /// Lane connections not yet given back (including ones being reset).
    held: Arc<Held>,
    task: Mutex<Option<JoinHandle<()>>>,
    runtime: tokio::runtime::Handle,
    /// In the unnamed (PgBouncer-safe) mode: parameter types per SQL text.
    types: Mutex<pgline_core::ParamTypes>,
}

#[derive(Default)]
struct LaneState {
    conns: Vec<Arc<LaneConn>>,
    /// Connections being taken from the pool for the lane.
    opening: u32,
    closed: bool,
    /// Where the least-busy search starts (spreads ties round-robin).
    next: usize,
    last_error: Option<String>,
}

/// Counts lane connections that have not gone back to the pool yet.
#[derive(Default)]
struct Held {
    count: AtomicUsize,
    changed: Notify,
}

impl Held {
    fn add(&self) {
        self.count.fetch_add(1, Relaxed);
    }

    fn done(&self) {
        self.count.fetch_sub(1, Relaxed);
        self.changed.notify_waiters();
    }
}

/// One connection of the lane. Dropping the last reference gives it back to
/// the pool through a reset (see the module docs).
struct LaneConn {
    guard: Option<Pooled<PgManager>>,
    /// Statements of callers in flight on this connection.
    outstanding: AtomicU32,
    /// When the lane rotates it back to the pool.
    rotate_at: Instant,
    /// Taken out of rotation after a response timeout: discard, don't reset.
    stalled: AtomicBool,
    cache: Mutex<HashMap<Box<str>, Statement>>,
    cache_size: usize,
    reset_limit: Duration,
    held: Arc<Held>,
    runtime: tokio::runtime::Handle,
}

impl LaneConn {
    fn client(&self) -> &Client {
        match &self.guard {
            Some(guard) => guard.raw(),
            None => unreachable!("the guard is only taken in drop"),
        }
    }

    fn is_closed(&self) -> bool {
        self.client().is_closed()
    }

    fn cached(&self, sql: &str) -> Option<Statement> {
        lock(&self.cache).get(sql).cloned()
    }

    fn remember(&self, sql: &str, statement: &Statement) {
        let mut cache = lock(&self.cache);
        if cache.len() >= self.cache_size {
            // Simple and bounded: start over (the next uses prepare again).
            cache.clear();
        }
        cache.insert(sql.into(), statement.clone());
    }
}

impl Drop for LaneConn {
    fn drop(&mut self) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        let held = Arc::clone(&self.held);
        // Still marked "cancelled" since checkout: if this task never runs
        // or the reset fails, the pool discards the connection.
        if guard.is_closed() || self.stalled.load(Relaxed) {
            drop(guard);
            held.done();
            return;
        }
        let limit = self.reset_limit;
        // Cancellation: should the runtime drop this task unrun, the guard
        // is dropped with the mark set and the pool discards the connection.
        self.runtime.spawn(async move {
            let reset = tokio::time::timeout(limit, guard.raw().batch_execute("RESET ALL")).await;
            if matches!(reset, Ok(Ok(()))) {
                guard.flags().cancelled.store(false, Relaxed);
            } else {
                tracing::debug!(
                    connection_id = guard.id(),
                    "shared lane: reset failed; the pool discards the connection"
                );
            }
            drop(guard);
            held.done();
        });
    }
}

/// A caller's claim on a lane connection; counts it as outstanding.
struct Busy {
    conn: Arc<LaneConn>,
}

impl Busy {
    fn new(conn: Arc<LaneConn>) -> Self {
        conn.outstanding.fetch_add(1, Relaxed);
        Self { conn }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.conn.outstanding.fetch_sub(1, Relaxed);
    }
}

impl SharedLane {
    async fn open(pool: PgPool, options: SharedOptions) -> Result<Self, DbError> {
        options.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            DbError::new(ErrorKind::Rejected)
                .with_context("a shared lane must be opened inside a tokio runtime")
        })?;
        let types = Mutex::new(pgline_core::ParamTypes::new(options.statement_cache));
        let inner = Arc::new(LaneInner {
            pool,
            options,
            state: Mutex::new(LaneState::default()),
            joined: Notify::new(),
            held: Arc::new(Held::default()),
            task: Mutex::new(None),
            runtime,
            types,
        });
        // Cancellation: connections taken so far are in `inner`; dropping
        // this future drops the lane, which gives them back.
        for _ in 0..inner.options.connections {
            match inner.take_connection().await {
                Ok(conn) => lock(&inner.state).conns.push(Arc::new(conn)),
                Err(e) => {
                    inner.shut();
                    return Err(e);
                }
            }
        }
        let task = inner.runtime.spawn(maintenance_loop(
            Arc::downgrade(&inner),
            inner.options.maintenance_interval,
        ));
        *lock(&inner.task) = Some(task);
        Ok(Self { inner })
    }

    /// Runs one statement on a shared connection and returns its rows.
    /// Refused with [`ErrorKind::Rejected`] when [`check_shared_statement`]
    /// refuses it.
    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, DbError> {
        check_shared_statement(sql)?;
        if self.inner.unnamed() {
            let typed = self.inner.typed(sql, params).await?;
            let busy = self.inner.checkout().await?;
            // Cancellation: as below.
            return self
                .inner
                .bounded(&busy, busy.conn.client().query_typed(sql, &typed))
                .await;
        }
        let busy = self.inner.checkout().await?;
        let statement = self.inner.statement(&busy, sql).await?;
        // Cancellation: dropping this future abandons the answer
        // (tokio-postgres discards it); no cancel request is sent.
        self.inner
            .bounded(&busy, busy.conn.client().query(&statement, params))
            .await
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

    /// Runs one statement on a shared connection and returns the number of
    /// rows it affected. Refused like [`query`](Self::query).
    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, DbError> {
        check_shared_statement(sql)?;
        if self.inner.unnamed() {
            let typed = self.inner.typed(sql, params).await?;
            let busy = self.inner.checkout().await?;
            // Cancellation: as in `query`.
            return self
                .inner
                .bounded(&busy, busy.conn.client().execute_typed(sql, &typed))
                .await;
        }
        let busy = self.inner.checkout().await?;
        let statement = self.inner.statement(&busy, sql).await?;
        // Cancellation: as in `query`.
        self.inner
            .bounded(&busy, busy.conn.client().execute(&statement, params))
            .await
    }

    /// Connections currently serving the lane.
    pub fn connections(&self) -> usize {
        lock(&self.inner.state).conns.len()
    }

    /// Statements in flight on the lane's connections.
    pub fn outstanding(&self) -> u32 {
        lock(&self.inner.state)
            .conns
            .iter()
            .map(|c| c.outstanding.load(Relaxed))
            .sum()
    }

    /// Refuses new statements, lets those in flight finish, and waits until
    /// every connection is reset and back in the pool (statements still
    /// running end within the response timeout; so does this call).
    pub async fn close(&self) {
        self.inner.shut();
        let held = &self.inner.held;
        let deadline = Instant::now() + self.inner.options.response_timeout;
        loop {
            let changed = held.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if held.count.load(Relaxed) == 0 || Instant::now() >= deadline {
                return;
            }
            let _ = tokio::time::timeout_at(deadline, changed).await;
        }
    }

    /// True once [`close`](Self::close) has been called.
    pub fn is_closed(&self) -> bool {
        lock(&self.inner.state).closed
    }
}

impl LaneInner {
    /// True when the pool's statement cache is off: the PgBouncer-safe mode,
    /// where every statement runs on the unnamed statement in one exchange
    /// and no session setting is made.
    fn unnamed(&self) -> bool {
        self.pool.manager().statement_cache() == 0
    }

    /// In the unnamed mode: `params` paired with the parameter types of
    /// `sql`, from the lane's type cache or described once on an exclusive
    /// connection of the pool (inside `BEGIN` … `ROLLBACK`, never on a shared
    /// connection, where a transaction would capture other callers'
    /// statements).
    async fn typed<'p>(
        &self,
        sql: &str,
        params: &[&'p (dyn ToSql + Sync)],
    ) -> Result<Vec<(&'p (dyn ToSql + Sync), Type)>, DbError> {
        let cached = lock(&self.types).get(sql);
        let types = match cached {
            Some(types) => types,
            None => {
                // Cancellation: the exclusive connection goes back through
                // the pool's usual clean-state rules.
                let conn = self.pool.acquire().await?;
                let types = conn.param_types(sql, params).await?;
                drop(conn);
                lock(&self.types).insert(sql, types.clone());
                types
            }
        };
        pgline_core::ParamTypes::check_count(&types, params.len())?;
        Ok(params.iter().copied().zip(types).collect())
    }

    /// Takes a connection from the pool and prepares it for the lane.
    async fn take_connection(&self) -> Result<LaneConn, DbError> {
        let guard = self.pool.acquire().await?;
        // Marked before anything else: until the reset on release succeeds,
        // any path that returns this connection makes the pool discard it.
        guard.flags().cancelled.store(true, Relaxed);
        // Behind PgBouncer (statement cache off) a session `SET` would land
        // on whichever server connection PgBouncer picks: the server-side
        // bound then comes from the role's `statement_timeout`.
        if !self.unnamed() {
            let ms = self.options.statement_timeout.as_millis().max(1);
            // Cancellation: dropping here drops the guard with the mark set.
            guard
                .raw()
                .batch_execute(&format!("SET statement_timeout = {ms}"))
                .await
                .map_err(|e| {
                    DbError::query(e).with_context("shared lane: setting statement_timeout")
                })?;
        }
        let spread = self.options.max_hold.mul_f64(0.1 * fastrand::f64());
        let rotate_at = Instant::now() + self.options.max_hold.saturating_sub(spread);
        self.held.add();
        Ok(LaneConn {
            guard: Some(guard),
            outstanding: AtomicU32::new(0),
            rotate_at,
            stalled: AtomicBool::new(false),
            cache: Mutex::new(HashMap::new()),
            cache_size: self.options.statement_cache.max(1),
            reset_limit: self.options.statement_timeout + Duration::from_secs(5),
            held: Arc::clone(&self.held),
            runtime: self.runtime.clone(),
        })
    }

    /// The least busy live connection (ties go round-robin), waiting for one
    /// to join when the lane has none.
    async fn checkout(self: &Arc<Self>) -> Result<Busy, DbError> {
        let deadline = Instant::now() + self.pool.options().acquire_timeout;
        loop {
            let joined = self.joined.notified();
            tokio::pin!(joined);
            joined.as_mut().enable();
            {
                let mut st = lock(&self.state);
                if st.closed {
                    return Err(DbError::new(ErrorKind::PoolClosed)
                        .with_context("the shared lane is closed"));
                }
                if let Some(conn) = pick(&mut st) {
                    self.replenish(&mut st);
                    return Ok(Busy::new(conn));
                }
                self.replenish(&mut st);
            }
            if tokio::time::timeout_at(deadline, joined).await.is_err() {
                let st = lock(&self.state);
                let mut error = DbError::new(ErrorKind::AcquireTimeout {
                    waited: self.pool.options().acquire_timeout,
                    waiting: 1,
                    in_use: self.pool.stats().in_use,
                    max: self.pool.options().max_size,
                })
                .with_context("the shared lane has no connection");
                if let Some(last) = &st.last_error {
                    error = error.with_context(format!(
                        "the shared lane has no connection; last error: {last}"
                    ));
                }
                return Err(error);
            }
        }
    }

    /// Starts background openers for missing connections.
    fn replenish(self: &Arc<Self>, st: &mut LaneState) {
        if st.closed {
            return;
        }
        let want = self.options.connections as usize;
        while st.conns.len() + (st.opening as usize) < want {
            st.opening += 1;
            self.runtime.spawn(open_one(Arc::downgrade(self)));
        }
    }

    /// The statement for `sql` on this connection: cached or prepared now.
    async fn statement(&self, busy: &Busy, sql: &str) -> Result<Statement, DbError> {
        if let Some(statement) = busy.conn.cached(sql) {
            return Ok(statement);
        }
        // Cancellation: an abandoned prepare is discarded by tokio-postgres;
        // the statement it creates on the server is closed when dropped.
        let statement = self.bounded(busy, busy.conn.client().prepare(sql)).await?;
        busy.conn.remember(sql, &statement);
        Ok(statement)
    }

    /// Waits for one answer within the response timeout; on expiry takes the
    /// connection out of rotation (it may be stalled).
    async fn bounded<T>(
        &self,
        busy: &Busy,
        call: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, DbError> {
        let limit = self.options.response_timeout;
        match tokio::time::timeout(limit, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                let error = DbError::query(e);
                if busy.conn.is_closed() {
                    self.remove(&busy.conn);
                }
                Err(error)
            }
            Err(_) => {
                busy.conn.stalled.store(true, Relaxed);
                self.remove(&busy.conn);
                Err(DbError::new(ErrorKind::Timeout).with_context(format!(
                    "no answer on the shared lane within {limit:?}; connection taken out of rotation"
                )))
            }
        }
    }

    /// Takes a connection out of rotation; it goes back to the pool when its
    /// last statement is done.
    fn remove(&self, conn: &Arc<LaneConn>) {
        let mut st = lock(&self.state);
        st.conns.retain(|c| !Arc::ptr_eq(c, conn));
    }

    /// Marks the lane closed and lets go of its connections.
    fn shut(&self) {
        let conns = {
            let mut st = lock(&self.state);
            st.closed = true;
            std::mem::take(&mut st.conns)
        };
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
        self.joined.notify_waiters();
        drop(conns);
    }

    /// Replaces broken connections and rotates old ones back to the pool.
    fn maintain(self: &Arc<Self>) {
        let now = Instant::now();
        let retired: Vec<Arc<LaneConn>> = {
            let mut st = lock(&self.state);
            if st.closed {
                return;
            }
            let (keep, retired) = std::mem::take(&mut st.conns)
                .into_iter()
                .partition(|c| !c.is_closed() && c.rotate_at > now);
            st.conns = keep;
            self.replenish(&mut st);
            retired
        };
        drop(retired);
    }
}

impl Drop for LaneInner {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

/// The least busy live connection, starting the search at `st.next`; drops
/// closed connections from the lane on the way.
fn pick(st: &mut LaneState) -> Option<Arc<LaneConn>> {
    let n = st.conns.len();
    if n == 0 {
        return None;
    }
    let mut best: Option<(usize, u32)> = None;
    let mut dead = false;
    for k in 0..n {
        let i = (st.next + k) % n;
        let conn = &st.conns[i];
        if conn.is_closed() {
            dead = true;
            continue;
        }
        let load = conn.outstanding.load(Relaxed);
        if best.is_none_or(|(_, b)| load < b) {
            best = Some((i, load));
            if load == 0 {
                break;
            }
        }
    }
    let chosen = best.map(|(i, _)| Arc::clone(&st.conns[i]));
    st.next = st.next.wrapping_add(1);
    if dead {
        st.conns.retain(|c| !c.is_closed());
    }
    chosen
}

/// Takes one connection from the pool for the lane, on its own task.
async fn open_one(lane: Weak<LaneInner>) {
    let Some(inner) = lane.upgrade() else { return };
    let outcome = inner.take_connection().await;
    let mut st = lock(&inner.state);
    st.opening -= 1;
    match outcome {
        Ok(conn) => {
            let conn = Arc::new(conn);
            if st.closed {
                drop(st);
                drop(conn);
            } else {
                st.conns.push(conn);
                st.last_error = None;
                drop(st);
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "shared lane: could not take a connection from the pool");
            st.last_error = Some(e.to_string());
            drop(st);
        }
    }
    inner.joined.notify_waiters();
}

/// Runs lane maintenance until the lane is closed or dropped.
async fn maintenance_loop(lane: Weak<LaneInner>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(inner) = lane.upgrade() else { return };
        inner.maintain();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

// ------------------------------------------------------------ the SQL check

/// First keywords a shared statement may start with.
const ALLOWED_FIRST: [&str; 8] = [
    "select", "with", "values", "table", "insert", "update", "delete", "merge",
];

/// Words refused anywhere in a shared statement (whole words, any case).
const DENIED_WORDS: [&str; 23] = [
    "begin",
    "start",
    "commit",
    "rollback",
    "savepoint",
    "abort",
    "listen",
    "unlisten",
    "notify",
    "prepare",
    "deallocate",
    "declare",
    "discard",
    "copy",
    "lock",
    "call",
    "temp",
    "temporary",
    "set_config",
    "currval",
    "lastval",
    "pg_cancel_backend",
    "pg_terminate_backend",
];

/// Word prefixes refused anywhere.
const DENIED_PREFIXES: [&str; 2] = ["pg_temp", "dblink"];

/// Word parts refused anywhere.
const DENIED_PARTS: [&str; 1] = ["advisory"];

/// Checks that `sql` may run on the shared path: one statement, an allowed
/// first keyword, no denied word (see the [module docs](crate::shared) for
/// the exact lists). The error is [`ErrorKind::Rejected`] and says why; it
/// names at most the offending keyword, never the rest of the text.
pub fn check_shared_statement(sql: &str) -> Result<(), DbError> {
    scan(sql).map_err(|reason| {
        DbError::new(ErrorKind::Rejected).with_context(format!(
            "not allowed on the shared path ({reason}); run it on an exclusive connection \
             (Pool::acquire, Database::transaction)"
        ))
    })
}

enum Token<'a> {
    /// A keyword or unquoted identifier.
    Word(&'a str),
    /// The contents of a quoted identifier.
    Quoted(&'a str),
    Semicolon,
    Open,
    Other,
}

fn scan(sql: &str) -> Result<(), String> {
    let mut lexer = Lexer {
        s: sql.as_bytes(),
        src: sql,
        i: 0,
    };
    let mut first: Option<String> = None;
    let mut ended = false;
    while let Some(token) = lexer.next()? {
        if ended {
            return Err("more than one statement".into());
        }
        let word = match token {
            Token::Semicolon => {
                ended = true;
                continue;
            }
            Token::Open if first.is_none() => continue,
            Token::Open | Token::Other => {
                if first.is_none() {
                    return Err("the statement does not start with a keyword".into());
                }
                continue;
            }
            Token::Word(w) | Token::Quoted(w) => w,
        };
        let lower = word.to_ascii_lowercase();
        if first.is_none() {
            if matches!(token, Token::Quoted(_)) || !ALLOWED_FIRST.contains(&lower.as_str()) {
                return Err(format!(
                    "a statement starting with `{}` may change the session or open a transaction; \
                     allowed: SELECT, WITH, VALUES, TABLE, INSERT, UPDATE, DELETE, MERGE",
                    short(word)
                ));
            }
            first = Some(lower);
            continue;
        }
        if DENIED_WORDS.contains(&lower.as_str())
            || DENIED_PREFIXES.iter().any(|p| lower.starts_with(p))
            || DENIED_PARTS.iter().any(|p| lower.contains(p))
        {
            return Err(format!(
                "`{}` may change or read session state, open a transaction or stop the shared backend",
                short(word)
            ));
        }
    }
    if first.is_none() {
        return Err("empty statement".into());
    }
    Ok(())
}

/// At most 40 characters of a keyword for an error message.
fn short(word: &str) -> String {
    word.chars().take(40).collect()
}

struct Lexer<'a> {
    s: &'a [u8],
    src: &'a str,
    i: usize,
}

impl<'a> Lexer<'a> {
    fn peek(&self, at: usize) -> Option<u8> {
        self.s.get(self.i + at).copied()
    }

    /// The next token, skipping whitespace, comments and literals.
    fn next(&mut self) -> Result<Option<Token<'a>>, String> {
        loop {
            let Some(b) = self.peek(0) else {
                return Ok(None);
            };
            match b {
                b if b.is_ascii_whitespace() => self.i += 1,
                b'-' if self.peek(1) == Some(b'-') => {
                    while let Some(c) = self.peek(0) {
                        self.i += 1;
                        if c == b'\n' {
                            break;
                        }
                    }
                }
                b'/' if self.peek(1) == Some(b'*') => self.block_comment()?,
                b'\'' => self.string(false)?,
                b'"' => return self.quoted_identifier().map(Some),
                b'$' => {
                    if self.peek(1).is_some_and(|c| c.is_ascii_digit()) {
                        // A parameter: $1.
                        self.i += 1;
                        while self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
                            self.i += 1;
                        }
                        return Ok(Some(Token::Other));
                    }
                    self.dollar_quote()?;
                }
                b';' => {
                    self.i += 1;
                    return Ok(Some(Token::Semicolon));
                }
                b'(' => {
                    self.i += 1;
                    return Ok(Some(Token::Open));
                }
                b if b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 => {
                    // U&'…' and U&"…": Unicode escapes could spell any name.
                    if (b == b'u' || b == b'U')
                        && self.peek(1) == Some(b'&')
                        && matches!(self.peek(2), Some(b'\'' | b'"'))
                    {
                        return Err(
                            "Unicode-escaped literals and identifiers (U&) are not read".into()
                        );
                    }
                    let start = self.i;
                    while self.peek(0).is_some_and(|c| {
                        c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
                    }) {
                        self.i += 1;
                    }
                    let word = &self.src[start..self.i];
                    if self.peek(0) == Some(b'\'') {
                        // A prefixed string: E'…' (backslash escapes), B'…', X'…', N'…'.
                        if word.eq_ignore_ascii_case("e") {
                            self.string(true)?;
                            continue;
                        }
                        if ["b", "x", "n"].iter().any(|p| word.eq_ignore_ascii_case(p)) {
                            self.string(false)?;
                            continue;
                        }
                    }
                    return Ok(Some(Token::Word(word)));
                }
                b if b.is_ascii_digit() => {
                    while self
                        .peek(0)
                        .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_')
                    {
                        self.i += 1;
                    }
                    return Ok(Some(Token::Other));
                }
                _ => {
                    self.i += 1;
                    return Ok(Some(Token::Other));
                }
            }
        }
    }

    fn block_comment(&mut self) -> Result<(), String> {
        // Nested, as PostgreSQL reads them.
        let mut depth = 0usize;
        while let Some(c) = self.peek(0) {
            if c == b'/' && self.peek(1) == Some(b'*') {
                depth += 1;
                self.i += 2;
            } else if c == b'*' && self.peek(1) == Some(b'/') {
                depth -= 1;
                self.i += 2;
                if depth == 0 {
                    return Ok(());
                }
            } else {
                self.i += 1;
            }
        }
        Err("unterminated comment".into())
    }

    /// Skips a string literal starting at the quote; `''` is a quote, and a
    /// backslash escapes the next byte in `E'…'` strings.
    fn string(&mut self, backslash: bool) -> Result<(), String> {
        self.i += 1;
        while let Some(c) = self.peek(0) {
            if backslash && c == b'\\' {
                self.i += 2;
            } else if c == b'\'' {
                if self.peek(1) == Some(b'\'') {
                    self.i += 2;
                } else {
                    self.i += 1;
                    return Ok(());
                }
            } else {
                self.i += 1;
            }
        }
        Err("unterminated string literal".into())
    }

    fn quoted_identifier(&mut self) -> Result<Token<'a>, String> {
        self.i += 1;
        let start = self.i;
        while let Some(c) = self.peek(0) {
            if c == b'"' {
                if self.peek(1) == Some(b'"') {
                    // An embedded quote: such a name is never a denied word,
                    // but keep reading it as one identifier.
                    self.i += 2;
                    continue;
                }
                let name = &self.src[start..self.i];
                self.i += 1;
                return Ok(Token::Quoted(name));
            }
            self.i += 1;
        }
        Err("unterminated quoted identifier".into())
    }

    /// Skips `$tag$ … $tag$` (the tag may be empty); a lone `$` is an operator
    /// character.
    fn dollar_quote(&mut self) -> Result<(), String> {
        let start = self.i;
        let mut j = self.i + 1;
        while let Some(&c) = self.s.get(j) {
            if c == b'$' {
                break;
            }
            let ok = if j == self.i + 1 {
                c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
            } else {
                c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
            };
            if !ok {
                // Not a dollar quote.
                self.i += 1;
                return Ok(());
            }
            j += 1;
        }
        if self.s.get(j) != Some(&b'$') {
            self.i += 1;
            return Ok(());
        }
        let tag = &self.s[start..=j];
        let body = j + 1;
        match self.s[body..].windows(tag.len()).position(|w| w == tag) {
            Some(p) => {
                self.i = body + p + tag.len();
                Ok(())
            }
            None => Err("unterminated dollar-quoted string".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_shared_statement as check;

    #[test]
    fn allows_plain_autocommit_statements() {
        for sql in [
            "SELECT 1",
            "select 1;",
            "  SELECT 1 ;  -- done",
            "/* leading */ SELECT $1::int8 + 1",
            "-- a comment\nselect 1",
            "(SELECT 1) UNION (SELECT 2)",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "WITH d AS (DELETE FROM t WHERE v = $1 RETURNING *) INSERT INTO log SELECT * FROM d",
            "VALUES (1), (2)",
            "TABLE panels",
            "INSERT INTO t (v) VALUES ($1) ON CONFLICT (v) DO NOTHING",
            "INSERT INTO t (v) VALUES ($1) ON CONFLICT (v) DO UPDATE SET v = excluded.v",
            "UPDATE panels SET status = 'IN_PROGRESS' WHERE barcode = $1",
            "DELETE FROM t WHERE v = $1",
            "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v",
            "SELECT * FROM t FOR UPDATE SKIP LOCKED",
            "SELECT 'BEGIN; SET x = 1; set_config' AS s",
            "SELECT 'it''s ; begin' AS s",
            "SELECT E'\\' ; begin' AS s",
            "SELECT $$ BEGIN; pg_advisory_lock(1) $$",
            "SELECT $tag$ a $$ b ; commit $tag$",
            "SELECT /* begin; /* nested set_config */ still comment */ 1",
            "SELECT started_at, beginning, restart, locked, temperature FROM t",
            "SELECT \"status\" FROM \"panels\"",
            "SELECT a$b FROM t",
            "SELECT pg_notify('c', 'x')",
            "SELECT now(), current_setting('statement_timeout')",
            "SELECT 1.5e3, x'ff', b'01', n'x'",
        ] {
            assert!(
                check(sql).is_ok(),
                "should be allowed: {sql}: {:?}",
                check(sql).err()
            );
        }
    }

    #[test]
    fn refuses_session_and_transaction_statements() {
        for sql in [
            "BEGIN",
            "begin isolation level serializable",
            "START TRANSACTION",
            "COMMIT",
            "END",
            "ROLLBACK",
            "ABORT",
            "SAVEPOINT a",
            "RELEASE SAVEPOINT a",
            "SET statement_timeout = 0",
            "set local x = 1",
            "SET SESSION AUTHORIZATION other",
            "RESET ALL",
            "SHOW search_path",
            "LISTEN ch",
            "UNLISTEN *",
            "NOTIFY ch",
            "CREATE TEMP TABLE x (v int)",
            "CREATE TABLE x (v int)",
            "DROP TABLE x",
            "DISCARD ALL",
            "PREPARE p AS SELECT 1",
            "EXECUTE p",
            "DEALLOCATE p",
            "DECLARE c CURSOR FOR SELECT 1",
            "FETCH c",
            "CLOSE c",
            "LOCK TABLE t",
            "COPY t FROM STDIN",
            "DO $$ BEGIN PERFORM 1; END $$",
            "CALL p()",
            "EXPLAIN ANALYZE SELECT 1",
            "VACUUM t",
            "ANALYZE t",
            "TRUNCATE t",
            "",
            "   ",
            "-- only a comment",
            ";",
            "\"select\" 1",
        ] {
            assert!(check(sql).is_err(), "should be refused: {sql:?}");
        }
    }

    #[test]
    fn refuses_denied_words_inside_allowed_statements() {
        for sql in [
            "SELECT set_config('search_path', 'x', false)",
            "SELECT pg_catalog.set_config('a', 'b', false)",
            "SELECT SET_CONFIG('a', 'b', false)",
            "SELECT \"set_config\"('a', 'b', false)",
            "SELECT pg_advisory_lock(1)",
            "SELECT pg_try_advisory_lock(1)",
            "SELECT pg_advisory_xact_lock(1)",
            "select PG_ADVISORY_UNLOCK_ALL()",
            "SELECT currval('s')",
            "SELECT lastval()",
            "SELECT pg_cancel_backend(pg_backend_pid())",
            "SELECT pg_terminate_backend(pg_backend_pid())",
            "SELECT dblink_connect('c', 'dbname=x')",
            "SELECT * INTO TEMP t FROM x",
            "SELECT * INTO TEMPORARY TABLE t FROM x",
            "INSERT INTO pg_temp.t VALUES (1)",
            "SELECT * FROM pg_temp_3.t",
            "SELECT 1 /* c */ ; BEGIN",
            "SELECT 1; SELECT 2",
            "select 1;begin",
            "SELECT 1; -- x\n SET x = 1",
            "SELECT 1 -- x\n; COMMIT",
            "WITH x AS (SELECT 1) SELECT * FROM x; ROLLBACK",
            "SELECT U&\"\\0073et_config\"('a','b',false)",
            "SELECT U&'x'",
            "SELECT 'unterminated",
            "SELECT \"unterminated",
            "SELECT /* unterminated",
            "SELECT $$ unterminated",
            "SELECT E'\\' ; begin",
            "SELECT 1 ; ;",
        ] {
            assert!(check(sql).is_err(), "should be refused: {sql:?}");
        }
    }

    #[test]
    fn the_error_says_why_and_is_rejected() {
        let e = check("SET search_path = x").unwrap_err();
        assert!(matches!(e.kind(), pgline_core::ErrorKind::Rejected));
        let text = e.to_string();
        assert!(text.contains("SET"), "{text}");
        assert!(text.contains("shared path"), "{text}");
        let e = check("SELECT 'secret-value', set_config('a','b',false)").unwrap_err();
        assert!(!e.to_string().contains("secret-value"), "{e}");
    }
}

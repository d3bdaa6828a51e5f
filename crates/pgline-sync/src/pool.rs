//! [`SyncPool`]: r2d2 configured from pgline's options, with pgline's
//! acquire, statistics, transactions and close on top.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant};

use pgline_core::{
    CloseReport, DbError, ErrorKind, PoolEvent, PoolStats, RemoveReason, Row, ToSql,
};

use crate::blocking::run_blocking;
use crate::connection::SyncConnection;
use crate::events::{self, ErrorHandler, EventHandler};
use crate::manager::{Manager, SyncManager};
use crate::options::PoolOptions;
use crate::shared::Shared;
use crate::transaction::SyncTransaction;

/// A caller waits for r2d2 in slices this long, so that `close` refuses it
/// within one slice (r2d2 cannot wake its waiters with an error).
const WAIT_SLICE: Duration = Duration::from_millis(100);
/// `initialize` and `close` re-check the pool at least this often.
const POLL_SLICE: Duration = Duration::from_millis(20);

/// The blocking PostgreSQL pool. Cheap to clone (all clones share one pool).
/// Dropping the last clone closes it.
///
/// Its methods block the calling thread. They are meant for plain threads,
/// and they also work from async code: on a tokio runtime they leave it
/// before blocking (see the crate docs). In async code prefer the
/// [`Database`](pgline_core::Database) implementation. Code generic over
/// `D: Database` uses it naturally; on a `SyncPool` value the inherent
/// blocking methods of the same names (`query`, `execute`, `transaction`...)
/// win over the trait's, so call the trait explicitly
/// (`Database::query(&pool, ..).await`) when you hold the concrete type.
#[derive(Clone)]
pub struct SyncPool {
    inner: Arc<Inner>,
}

struct Inner {
    pool: r2d2::Pool<Manager>,
    shared: Arc<Shared>,
    options: PoolOptions,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: connections still borrowed are closed
        // when they come back, idle ones when r2d2's pool is dropped.
        self.shared.close();
    }
}

impl std::fmt::Debug for SyncPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncPool")
            .field("options", &self.inner.options)
            .field("stats", &self.stats())
            .finish()
    }
}

/// How often checkouts skipped or paid for the validation round trip.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ValidationStats {
    /// Checkouts of a connection used within the validation threshold: no round trip.
    pub skipped: u64,
    /// Checkouts that checked the connection with an empty query first.
    pub checked: u64,
}

impl SyncPool {
    /// Creates the pool without waiting for connections: r2d2 starts opening
    /// `min_idle` of them in the background (`build_unchecked`, so a database
    /// that is down does not block or fail start-up). Call
    /// [`initialize`](Self::initialize) to wait for them.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Rejected`] for options r2d2 would panic on (see
    /// [`PoolOptions::validate`]).
    pub fn new(manager: SyncManager, options: PoolOptions) -> Result<Self, DbError> {
        options.validate().map_err(|message| {
            DbError::new(ErrorKind::Rejected)
                .with_context(format!("invalid pool options: {message}"))
        })?;
        let shared = Arc::new(Shared::new(&options));
        let pool = r2d2::Pool::builder()
            .max_size(options.max_size)
            // Explicit: r2d2 reads `None` as "keep max_size idle".
            .min_idle(Some(options.min_idle))
            // r2d2 calls `is_valid` only with this on; ours skips the round
            // trip for recently used connections.
            .test_on_check_out(true)
            .connection_timeout(options.acquire_timeout)
            .idle_timeout(options.idle_timeout)
            .max_lifetime(options.max_lifetime)
            .error_handler(Box::new(ErrorHandler(Arc::clone(&shared))))
            .event_handler(Box::new(EventHandler(Arc::clone(&shared))))
            .build_unchecked(Manager::new(manager, Arc::clone(&shared)));
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                shared,
                options,
            }),
        })
    }

    /// Builds a pool from the service configuration and waits for its
    /// minimum connections. `tls` is the connector for
    /// `config.database.tls` (see [`SyncManager::from_config`]).
    pub fn connect(
        config: &pgline_config::Config,
        tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    ) -> Result<Self, DbError> {
        Self::connect_with(config, tls, PoolOptions::from_config(&config.pool))
    }

    /// Like [`connect`](Self::connect) with explicit options (for a listener, say).
    pub fn connect_with(
        config: &pgline_config::Config,
        tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
        options: PoolOptions,
    ) -> Result<Self, DbError> {
        let pool = Self::new(SyncManager::from_config(config, tls)?, options)?;
        pool.initialize()?;
        Ok(pool)
    }

    /// Waits until `min_idle` connections are open, up to the acquire
    /// timeout. On failure the error carries the last connection error; the
    /// pool keeps trying in the background.
    pub fn initialize(&self) -> Result<(), DbError> {
        run_blocking(|| self.wait_for_min())?
    }

    fn wait_for_min(&self) -> Result<(), DbError> {
        let timeout = self.inner.options.acquire_timeout;
        let deadline = Instant::now() + timeout;
        let min = self.inner.options.min_idle;
        let watch = self.inner.shared.watch();
        loop {
            if self.inner.shared.is_closed() {
                return Err(DbError::new(ErrorKind::PoolClosed));
            }
            if self.inner.pool.state().connections >= min {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                let last = self
                    .inner
                    .shared
                    .last_error()
                    .unwrap_or_else(|| "no answer".into());
                return Err(DbError::new(ErrorKind::Connect).with_context(format!(
                    "could not open {min} connections within {timeout:?}: {last}"
                )));
            }
            watch.wait((deadline - now).min(POLL_SLICE));
        }
    }

    /// Borrows a connection, waiting up to the acquire timeout.
    pub fn get(&self) -> Result<SyncConnection, DbError> {
        self.get_timeout(self.inner.options.acquire_timeout)
    }

    /// Borrows a connection, waiting up to `timeout`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::AcquireTimeout`] (with waiters and in-use counts, and the
    /// last connection error when no connection is open), or
    /// [`ErrorKind::PoolClosed`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<SyncConnection, DbError> {
        run_blocking(|| self.get_now(timeout))?
    }

    /// The acquire itself; blocks right here.
    pub(crate) fn get_now(&self, timeout: Duration) -> Result<SyncConnection, DbError> {
        let shared = &self.inner.shared;
        if shared.is_closed() {
            return Err(DbError::new(ErrorKind::PoolClosed));
        }
        let start = Instant::now();
        let deadline = start + timeout;
        let _waiting = Waiting::new(&shared.waiting);
        let _clock = events::acquire_started(start);
        loop {
            let slice = deadline
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), WAIT_SLICE);
            match self.inner.pool.get_timeout(slice) {
                Ok(pooled) => {
                    let mut conn = SyncConnection::new(pooled);
                    if shared.is_closed() {
                        conn.discard(RemoveReason::Closed);
                        return Err(DbError::new(ErrorKind::PoolClosed));
                    }
                    return Ok(conn);
                }
                Err(_) if shared.is_closed() => return Err(DbError::new(ErrorKind::PoolClosed)),
                Err(_) if Instant::now() >= deadline => return Err(self.timeout_error(start)),
                Err(_) => {}
            }
        }
    }

    fn timeout_error(&self, start: Instant) -> DbError {
        let shared = &self.inner.shared;
        shared.counters.timeouts.fetch_add(1, Relaxed);
        shared.counters.errors.fetch_add(1, Relaxed);
        let waited = start.elapsed();
        shared.counters.record_wait(waited);
        let state = self.inner.pool.state();
        let in_use = state.connections.saturating_sub(state.idle_connections);
        let mut error = DbError::new(ErrorKind::AcquireTimeout {
            waited,
            // This caller is still counted.
            waiting: shared.waiting.load(Relaxed),
            in_use,
            max: self.inner.options.max_size,
        });
        if in_use == 0
            && let Some(last) = shared.last_error()
        {
            error = error.with_context(format!("last connection error: {last}"));
        }
        let kind = error.kind().clone();
        let message = error.to_string();
        shared.emit(|| PoolEvent::Error { kind, message });
        error
    }

    /// Runs a statement on a connection borrowed for it and returns its rows.
    pub fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, DbError> {
        run_blocking(|| {
            self.get_now(self.acquire_timeout())?
                .exec_query(sql, params)
        })?
    }

    /// Runs a statement that must return exactly one row.
    pub fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, DbError> {
        pgline_core::exactly_one(self.query(sql, params)?)
    }

    /// Runs a statement that returns at most one row.
    pub fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, DbError> {
        pgline_core::at_most_one(self.query(sql, params)?)
    }

    /// Runs a statement and returns the number of rows it affected.
    pub fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, DbError> {
        run_blocking(|| {
            self.get_now(self.acquire_timeout())?
                .exec_execute(sql, params)
        })?
    }

    /// Runs statements separated by semicolons, without parameters, in one
    /// round trip.
    pub fn batch_execute(&self, sql: &str) -> Result<(), DbError> {
        run_blocking(|| self.get_now(self.acquire_timeout())?.exec_batch(sql))?
    }

    /// Runs `f` in a transaction: commit when it returns `Ok`, rollback when
    /// it returns `Err` or panics (the panic continues after the rollback).
    ///
    /// ```no_run
    /// # fn demo(pool: &pgline_sync::SyncPool) -> Result<(), pgline_core::DbError> {
    /// let moved = pool.transaction(|tx| {
    ///     let n = tx.execute("UPDATE panels SET status = 'IN_PROGRESS' WHERE barcode = $1", &[&"P-1"])?;
    ///     tx.execute("INSERT INTO panel_events (barcode, event_type) VALUES ($1, 'SCANNED')", &[&"P-1"])?;
    ///     Ok::<_, pgline_core::DbError>(n)
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn transaction<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut SyncTransaction<'_>) -> Result<T, E>,
        E: From<DbError>,
    {
        let mut conn = self.get()?;
        let mut tx = conn.transaction()?;
        match f(&mut tx) {
            Ok(value) => {
                tx.commit()?;
                Ok(value)
            }
            Err(error) => {
                if let Err(rollback) = tx.rollback() {
                    tracing::debug!(error = %rollback, "rollback failed; the connection is reset on return");
                }
                Err(error)
            }
        }
    }

    /// A snapshot of the statistics: r2d2's `State` (one short lock) for the
    /// open and idle connections, atomics for the rest.
    pub fn stats(&self) -> PoolStats {
        let state = self.inner.pool.state();
        let options = &self.inner.options;
        self.inner.shared.counters.snapshot(
            state.connections,
            state.idle_connections,
            self.inner.shared.waiting.load(Relaxed),
            options.min_idle,
            options.max_size,
        )
    }

    /// How many checkouts skipped or ran the validation round trip.
    pub fn validation_stats(&self) -> ValidationStats {
        let counters = &self.inner.shared.counters;
        ValidationStats {
            skipped: counters.validations_skipped.load(Relaxed),
            checked: counters.validations_run.load(Relaxed),
        }
    }

    /// The options the pool runs with.
    pub fn options(&self) -> &PoolOptions {
        &self.inner.options
    }

    /// True once [`close`](Self::close) has been called.
    pub fn is_closed(&self) -> bool {
        self.inner.shared.is_closed()
    }

    /// Closes the pool: new acquires fail with `PoolClosed`, callers waiting
    /// for a connection are refused within 100 ms, idle connections close at
    /// once, connections in use are waited for up to `timeout` (and closed
    /// whenever they come back).
    pub fn close(&self, timeout: Duration) -> CloseReport {
        let started = Instant::now();
        let deadline = started + timeout;
        let outcome = run_blocking(|| {
            let first = self.begin_close();
            let still = self.wait_for_returns(deadline);
            (first, still)
        });
        match outcome {
            Ok((first, still)) => first.report(still, started),
            Err(e) => {
                self.mark_closed();
                tracing::warn!(error = %e, "close could not wait for connections in use");
                CloseReport::new(0, 0, self.stats().in_use, 0, started.elapsed())
            }
        }
    }

    /// Refuses new work from now on (no IO; connections close as they come back).
    pub(crate) fn mark_closed(&self) {
        self.inner.shared.close();
    }

    /// Marks the pool closed and closes its idle connections (blocks).
    pub(crate) fn begin_close(&self) -> CloseStart {
        let shared = &self.inner.shared;
        shared.close();
        let refused = shared.waiting.load(Relaxed);
        let closed_idle = self.close_idle();
        let state = self.inner.pool.state();
        CloseStart {
            closed_idle,
            busy: state.connections.saturating_sub(state.idle_connections),
            refused,
        }
    }

    /// Waits until no connection is in use or `until`, closing connections
    /// that turn idle meanwhile (blocks). Returns the connections still in use.
    pub(crate) fn wait_for_returns(&self, until: Instant) -> u32 {
        let watch = self.inner.shared.watch();
        loop {
            self.close_idle();
            let state = self.inner.pool.state();
            let busy = state.connections.saturating_sub(state.idle_connections);
            let now = Instant::now();
            if busy == 0 || now >= until {
                return busy;
            }
            watch.wait((until - now).min(POLL_SLICE));
        }
    }

    /// Takes every idle connection out of r2d2 and closes it.
    fn close_idle(&self) -> u32 {
        let _quiet = events::draining();
        let mut closed = 0;
        while let Some(mut pooled) = self.inner.pool.try_get() {
            pooled.flags.discard = Some(RemoveReason::Closed);
            // r2d2's `has_broken` sees the mark and drops it.
            drop(pooled);
            closed += 1;
        }
        closed
    }

    fn acquire_timeout(&self) -> Duration {
        self.inner.options.acquire_timeout
    }
}

/// What `close` found when it started.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CloseStart {
    closed_idle: u32,
    busy: u32,
    refused: u32,
}

impl CloseStart {
    pub(crate) fn report(self, still_in_use: u32, started: Instant) -> CloseReport {
        let report = CloseReport::new(
            self.closed_idle,
            self.busy.saturating_sub(still_in_use),
            still_in_use,
            self.refused,
            started.elapsed(),
        );
        tracing::info!(
            closed_idle = report.closed_idle,
            closed_after_return = report.closed_after_return,
            still_in_use = report.still_in_use,
            refused_waiters = report.refused_waiters,
            "pool closed"
        );
        report
    }
}

/// Counts a caller inside `get` for its lifetime.
struct Waiting<'a>(&'a AtomicU32);

impl<'a> Waiting<'a> {
    fn new(counter: &'a AtomicU32) -> Self {
        counter.fetch_add(1, Relaxed);
        Self(counter)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

//! The handle traits: [`Database`] for the domain layer, [`Session`] for the
//! inside of a transaction.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::error::{DbError, ErrorKind, TransactionError};
use crate::health::{CloseReport, HealthReport};
use crate::stats::PoolStats;

/// A boxed, sendable future (the same shape as `futures::future::BoxFuture`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Statement parameters, as tokio-postgres takes them.
pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// One exclusively held connection inside a transaction.
///
/// Dyn-compatible so that a transaction closure has one type whatever the
/// backend and whatever decorators wrap it. Every call is one statement on the
/// transaction's connection; nothing here commits or rolls back — the
/// [`Database::transaction`] that created the session does.
pub trait Session: Send {
    /// Runs a statement and returns its rows.
    fn query<'a>(
        &'a mut self,
        sql: &'a str,
        params: Params<'a>,
    ) -> BoxFuture<'a, Result<Vec<Row>, DbError>>;

    /// Runs a statement and returns the number of rows it affected.
    fn execute<'a>(
        &'a mut self,
        sql: &'a str,
        params: Params<'a>,
    ) -> BoxFuture<'a, Result<u64, DbError>>;

    /// Runs one or more statements separated by semicolons, without parameters.
    fn batch_execute<'a>(&'a mut self, sql: &'a str) -> BoxFuture<'a, Result<(), DbError>>;

    /// Runs a statement that must return exactly one row.
    fn query_one<'a>(
        &'a mut self,
        sql: &'a str,
        params: Params<'a>,
    ) -> BoxFuture<'a, Result<Row, DbError>> {
        Box::pin(async move { exactly_one(self.query(sql, params).await?) })
    }

    /// Runs a statement that returns at most one row.
    fn query_opt<'a>(
        &'a mut self,
        sql: &'a str,
        params: Params<'a>,
    ) -> BoxFuture<'a, Result<Option<Row>, DbError>> {
        Box::pin(async move { at_most_one(self.query(sql, params).await?) })
    }
}

/// A forwarding session: lets a borrowed session be boxed or wrapped.
impl<S: Session + ?Sized> Session for &mut S {
    fn query<'a>(
        &'a mut self,
        sql: &'a str,
        params: Params<'a>,
    ) -> BoxFuture<'a, Result<Vec<Row>, DbError>> {
        (**self).query(sql, params)
    }

    fn execute<'a>(
        &'a mut self,
        sql: &'a str,
        params: Params<'a>,
    ) -> BoxFuture<'a, Result<u64, DbError>> {
        (**self).execute(sql, params)
    }

    fn batch_execute<'a>(&'a mut self, sql: &'a str) -> BoxFuture<'a, Result<(), DbError>> {
        (**self).batch_execute(sql)
    }
}

/// Wraps the [`Session`] a transaction closure sees: how a decorator observes
/// the statements inside a transaction (the telemetry layer gives each one a
/// span) without owning the connection.
///
/// A decorator passes its layer down with [`Database::transaction_with`]; the
/// backend applies it to its own session before calling the closure.
pub trait SessionLayer: Send + Sync {
    /// Returns `session` wrapped; every statement must still reach it.
    fn wrap<'s>(&self, session: Box<dyn Session + 's>) -> Box<dyn Session + 's>;
}

/// Two layers as one: `inner` wraps the backend's session first, `outer`
/// wraps the result.
pub struct LayerChain {
    /// Applied first (closest to the backend).
    pub inner: std::sync::Arc<dyn SessionLayer>,
    /// Applied last (closest to the closure).
    pub outer: std::sync::Arc<dyn SessionLayer>,
}

impl SessionLayer for LayerChain {
    fn wrap<'s>(&self, session: Box<dyn Session + 's>) -> Box<dyn Session + 's> {
        self.outer.wrap(self.inner.wrap(session))
    }
}

impl LayerChain {
    /// `own` under an optional layer from further out: what a decorator with
    /// a layer of its own passes down from `transaction_with`.
    pub fn stack(
        own: std::sync::Arc<dyn SessionLayer>,
        outer: Option<std::sync::Arc<dyn SessionLayer>>,
    ) -> std::sync::Arc<dyn SessionLayer> {
        match outer {
            None => own,
            Some(outer) => std::sync::Arc::new(Self { inner: own, outer }),
        }
    }

    /// The session a backend hands to the transaction closure: its own,
    /// wrapped by `layer` when there is one.
    pub fn apply<'s>(
        layer: Option<&std::sync::Arc<dyn SessionLayer>>,
        session: impl Session + 's,
    ) -> Box<dyn Session + 's> {
        let session: Box<dyn Session + 's> = Box::new(session);
        match layer {
            None => session,
            Some(layer) => layer.wrap(session),
        }
    }
}

/// The database handle the domain layer uses: a pool, or a decorator around one.
///
/// Statements outside [`transaction`](Database::transaction) run in autocommit
/// on a connection borrowed for that one statement. `transaction` borrows a
/// connection, runs `BEGIN`, calls the closure with a [`Session`], and commits
/// when the closure returns `Ok`. It rolls back when the closure returns `Err`,
/// panics, or the future is dropped (cancelled): in the last two cases the
/// backend guarantees the connection is rolled back or discarded before anyone
/// else gets it.
///
/// The closure is `Fn` so that a retry layer may run it again (after a
/// serialization failure, or a connection lost before `COMMIT` was sent):
/// clone what it captures into the future it returns.
pub trait Database: Send + Sync + 'static {
    /// Runs a statement and returns its rows.
    fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Vec<Row>, DbError>> + Send;

    /// Runs a statement and returns the number of rows it affected.
    fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<u64, DbError>> + Send;

    /// Runs statements separated by semicolons, without parameters, in one
    /// round trip (implicitly one transaction, as PostgreSQL runs a simple-query
    /// string).
    fn batch_execute(&self, sql: &str) -> impl Future<Output = Result<(), DbError>> + Send;

    /// Runs `f` inside a transaction: commit on `Ok`, rollback on `Err`, panic
    /// or cancellation.
    fn transaction<T, E, F>(&self, f: F) -> impl Future<Output = Result<T, E>> + Send
    where
        T: Send,
        E: TransactionError,
        F: for<'s> Fn(&'s mut dyn Session) -> BoxFuture<'s, Result<T, E>> + Send + Sync;

    /// [`transaction`](Database::transaction) with the closure's session
    /// wrapped by `layer` (see [`SessionLayer`]); `None` is `transaction`.
    ///
    /// Backends apply the layer; decorators pass it down (adding their own).
    /// The default ignores the layer and calls `transaction`: right only for
    /// handles that have no session to wrap.
    fn transaction_with<T, E, F>(
        &self,
        layer: Option<std::sync::Arc<dyn SessionLayer>>,
        f: F,
    ) -> impl Future<Output = Result<T, E>> + Send
    where
        T: Send,
        E: TransactionError,
        F: for<'s> Fn(&'s mut dyn Session) -> BoxFuture<'s, Result<T, E>> + Send + Sync,
    {
        let _ = layer;
        self.transaction(f)
    }

    /// A snapshot of the pool's statistics. Never blocks the pool.
    fn stats(&self) -> PoolStats;

    /// Borrows a connection within `timeout` and runs a trivial query.
    fn health(&self, timeout: Duration) -> impl Future<Output = HealthReport> + Send;

    /// Refuses new work, waits up to `timeout` for connections in use, and
    /// closes everything.
    fn close(&self, timeout: Duration) -> impl Future<Output = CloseReport> + Send;

    /// The backend's name: `async` or `sync` (decorators pass it through).
    fn backend(&self) -> &'static str;

    /// Runs a read-only statement that tolerates replication lag: a handle
    /// with a read replica ([`Routed`](crate::Routed)) may answer it from a
    /// hot standby, so rows committed moments ago may be missing. Every other
    /// handle runs it as [`query`](Database::query) (the default).
    ///
    /// Use it only for statements that write nothing and lock nothing, and
    /// whose callers accept slightly old data (dashboards, look-ups).
    fn query_replica(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Vec<Row>, DbError>> + Send {
        self.query(sql, params)
    }

    /// Runs a statement that must return exactly one row.
    fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Row, DbError>> + Send {
        async move { exactly_one(self.query(sql, params).await?) }
    }

    /// Runs a statement that returns at most one row.
    fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Option<Row>, DbError>> + Send {
        async move { at_most_one(self.query(sql, params).await?) }
    }
}

/// The single row of `rows`, or an [`ErrorKind::UnexpectedRowCount`] error.
pub fn exactly_one(mut rows: Vec<Row>) -> Result<Row, DbError> {
    if rows.len() == 1
        && let Some(row) = rows.pop()
    {
        return Ok(row);
    }
    Err(DbError::new(ErrorKind::UnexpectedRowCount {
        expected: "exactly one",
        got: rows.len(),
    }))
}

/// The first row of `rows` if there is at most one, else an error.
pub fn at_most_one(mut rows: Vec<Row>) -> Result<Option<Row>, DbError> {
    match rows.len() {
        0 => Ok(None),
        1 => Ok(rows.pop()),
        got => Err(DbError::new(ErrorKind::UnexpectedRowCount {
            expected: "at most one",
            got,
        })),
    }
}

/// A shared handle is a handle: `Arc<PgPool>`, `Arc<Resilient<...>>`.
impl<D: Database> Database for std::sync::Arc<D> {
    fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Vec<Row>, DbError>> + Send {
        (**self).query(sql, params)
    }

    fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<u64, DbError>> + Send {
        (**self).execute(sql, params)
    }

    fn batch_execute(&self, sql: &str) -> impl Future<Output = Result<(), DbError>> + Send {
        (**self).batch_execute(sql)
    }

    fn transaction<T, E, F>(&self, f: F) -> impl Future<Output = Result<T, E>> + Send
    where
        T: Send,
        E: TransactionError,
        F: for<'s> Fn(&'s mut dyn Session) -> BoxFuture<'s, Result<T, E>> + Send + Sync,
    {
        (**self).transaction(f)
    }

    fn transaction_with<T, E, F>(
        &self,
        layer: Option<std::sync::Arc<dyn SessionLayer>>,
        f: F,
    ) -> impl Future<Output = Result<T, E>> + Send
    where
        T: Send,
        E: TransactionError,
        F: for<'s> Fn(&'s mut dyn Session) -> BoxFuture<'s, Result<T, E>> + Send + Sync,
    {
        (**self).transaction_with(layer, f)
    }

    fn stats(&self) -> PoolStats {
        (**self).stats()
    }

    fn health(&self, timeout: Duration) -> impl Future<Output = HealthReport> + Send {
        (**self).health(timeout)
    }

    fn close(&self, timeout: Duration) -> impl Future<Output = CloseReport> + Send {
        (**self).close(timeout)
    }

    fn backend(&self) -> &'static str {
        (**self).backend()
    }

    fn query_replica(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Vec<Row>, DbError>> + Send {
        (**self).query_replica(sql, params)
    }
}

//! [`Routed`]: a primary handle and an optional read-replica handle behind one
//! [`Database`], sending lag-tolerant reads to the replica and falling back to
//! the primary when the replica is unavailable.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::error::{DbError, ErrorKind, TransactionError};
use crate::handle::{BoxFuture, Database, Session};
use crate::health::{CloseReport, HealthReport};
use crate::stats::PoolStats;

/// A primary handle and, optionally, a read-replica handle (a pool on hot
/// standbys) as one [`Database`].
///
/// Everything goes to the primary — statements, transactions, statistics,
/// health — except [`Database::query_replica`], the reads that tolerate
/// replication lag, which go to the replica. Such a read goes to the primary
/// instead when:
///
/// - there is no replica;
/// - the replica failed recently (within the fallback period);
/// - the replica fails now with an availability error — no connection
///   (refused, authentication of a server that is shutting down), no
///   connection within its acquire timeout, its pool closed, its circuit
///   breaker open, the connection lost, a client-side timeout, or server
///   overload (the errors that [`DbError::trips_breaker`] counts, plus a
///   closed pool or open breaker). The replica is then skipped for the
///   fallback period, so a stopped standby costs one failed attempt, not one
///   per request;
/// - the standby cancelled the read because of a recovery conflict
///   (`40001`): that read alone is repeated on the primary.
///
/// Any other error (a bad statement, a constraint) is returned as it is: the
/// primary would answer the same.
///
/// Put `Routed` outermost, around two complete stacks
/// (`Routed<Resilient<Traced<PgPool>>>`): each pool then has its own breaker
/// and metrics, and a failing standby never opens the primary's breaker.
/// Decorators placed around a `Routed` do not forward `query_replica` (the
/// trait's default sends it to `query`, the primary).
///
/// ```
/// use pgline_core::{Database, DbError, Routed};
///
/// /// Reads that tolerate lag take the replica when there is one.
/// async fn pending<D: Database>(db: &D) -> Result<i64, DbError> {
///     let rows = db
///         .query_replica("SELECT count(*) FROM panels WHERE status = 'PENDING'", &[])
///         .await?;
///     Ok(pgline_core::exactly_one(rows)?.get(0))
/// }
/// ```
#[derive(Debug)]
pub struct Routed<D> {
    primary: D,
    replica: Option<D>,
    fallback_period: Duration,
    down_until: Mutex<Option<Instant>>,
    counts: Counts,
}

#[derive(Debug, Default)]
struct Counts {
    replica: AtomicU64,
    fallback: AtomicU64,
    replica_errors: AtomicU64,
}

/// How reads were routed, for `/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct RoutingStats {
    /// Whether a replica is configured.
    pub configured: bool,
    /// Whether the replica is currently skipped after a failure.
    pub replica_skipped: bool,
    /// Lag-tolerant reads answered by the replica.
    pub replica_reads: u64,
    /// Lag-tolerant reads answered by the primary (no replica, replica
    /// skipped, or replica failed).
    pub primary_reads: u64,
    /// Replica failures that sent a read to the primary.
    pub replica_failures: u64,
}

impl<D: Database> Routed<D> {
    /// Every read on `primary`: no replica.
    pub fn primary_only(primary: D) -> Self {
        Self::new(primary, None, Duration::ZERO)
    }

    /// Reads that tolerate lag on `replica` (when given), everything else on
    /// `primary`; after a replica failure, reads stay on the primary for
    /// `fallback_period`.
    pub fn new(primary: D, replica: Option<D>, fallback_period: Duration) -> Self {
        Self {
            primary,
            replica,
            fallback_period,
            down_until: Mutex::new(None),
            counts: Counts::default(),
        }
    }

    /// The primary handle.
    pub fn primary(&self) -> &D {
        &self.primary
    }

    /// The replica handle, if configured.
    pub fn replica(&self) -> Option<&D> {
        self.replica.as_ref()
    }

    /// How reads were routed so far.
    pub fn routing_stats(&self) -> RoutingStats {
        RoutingStats {
            configured: self.replica.is_some(),
            replica_skipped: self.skipping(Instant::now()),
            replica_reads: self.counts.replica.load(Relaxed),
            primary_reads: self.counts.fallback.load(Relaxed),
            replica_failures: self.counts.replica_errors.load(Relaxed),
        }
    }

    fn skipping(&self, now: Instant) -> bool {
        let guard = self
            .down_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.is_some_and(|until| now < until)
    }

    fn mark_down(&self) {
        let mut guard = self
            .down_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = Some(Instant::now() + self.fallback_period);
    }

    /// The replica when it should be tried now.
    fn usable_replica(&self) -> Option<&D> {
        let replica = self.replica.as_ref()?;
        (!self.skipping(Instant::now())).then_some(replica)
    }
}

/// Whether a replica error means "ask the primary" (and whether the replica
/// should be skipped for a while).
fn fallback_for(error: &DbError) -> Option<bool> {
    if error.trips_breaker()
        || matches!(
            error.kind(),
            ErrorKind::PoolClosed | ErrorKind::CircuitOpen { .. }
        )
    {
        return Some(true);
    }
    // A recovery conflict cancels a standby's query with 40001: repeat it on
    // the primary, but the standby itself is fine.
    error.is_serialization_failure().then_some(false)
}

impl<D: Database> Database for Routed<D> {
    fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Vec<Row>, DbError>> + Send {
        self.primary.query(sql, params)
    }

    fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<u64, DbError>> + Send {
        self.primary.execute(sql, params)
    }

    fn batch_execute(&self, sql: &str) -> impl Future<Output = Result<(), DbError>> + Send {
        self.primary.batch_execute(sql)
    }

    fn transaction<T, E, F>(&self, f: F) -> impl Future<Output = Result<T, E>> + Send
    where
        T: Send,
        E: TransactionError,
        F: for<'s> Fn(&'s mut dyn Session) -> BoxFuture<'s, Result<T, E>> + Send + Sync,
    {
        self.primary.transaction(f)
    }

    fn transaction_with<T, E, F>(
        &self,
        layer: Option<std::sync::Arc<dyn crate::SessionLayer>>,
        f: F,
    ) -> impl Future<Output = Result<T, E>> + Send
    where
        T: Send,
        E: TransactionError,
        F: for<'s> Fn(&'s mut dyn Session) -> BoxFuture<'s, Result<T, E>> + Send + Sync,
    {
        self.primary.transaction_with(layer, f)
    }

    fn stats(&self) -> PoolStats {
        self.primary.stats()
    }

    fn health(&self, timeout: Duration) -> impl Future<Output = HealthReport> + Send {
        self.primary.health(timeout)
    }

    async fn close(&self, timeout: Duration) -> CloseReport {
        if let Some(replica) = &self.replica {
            replica.close(timeout).await;
        }
        self.primary.close(timeout).await
    }

    fn backend(&self) -> &'static str {
        self.primary.backend()
    }

    async fn query_replica(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, DbError> {
        if let Some(replica) = self.usable_replica() {
            match replica.query(sql, params).await {
                Ok(rows) => {
                    self.counts.replica.fetch_add(1, Relaxed);
                    return Ok(rows);
                }
                Err(error) => match fallback_for(&error) {
                    Some(skip) => {
                        self.counts.replica_errors.fetch_add(1, Relaxed);
                        if skip {
                            self.mark_down();
                        }
                    }
                    None => return Err(error),
                },
            }
        }
        self.counts.fallback.fetch_add(1, Relaxed);
        self.primary.query(sql, params).await
    }
}

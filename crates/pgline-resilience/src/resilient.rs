//! `Resilient<D>`: breaker and retry around any `Database`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgline_core::{
    BoxFuture, CloseReport, Database, DbError, HealthReport, PoolStats, Session, SessionLayer,
    TransactionError,
};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::breaker::{Breaker, BreakerOptions, BreakerState, StateListener};
use crate::retry::{RetryOptions, is_retryable};

/// Settings of the resilience layer.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ResilienceOptions {
    /// The circuit breaker.
    pub breaker: BreakerOptions,
    /// Retry of what is safe to repeat.
    pub retry: RetryOptions,
}

impl ResilienceOptions {
    /// Options from their parts.
    pub fn new(breaker: BreakerOptions, retry: RetryOptions) -> Self {
        Self { breaker, retry }
    }
}

/// A [`Database`] with a circuit breaker and retry in front of `D`.
///
/// Every call goes through the breaker; infrastructure failures
/// ([`DbError::trips_breaker`]) count against it, errors of the request never
/// do. What is safe to repeat ([`is_retryable`]) is retried with exponential
/// backoff and full jitter, within the attempt limit and the deadline; an
/// open breaker stops retrying at once.
pub struct Resilient<D> {
    inner: D,
    breaker: Breaker,
    retry: RetryOptions,
}

impl<D: std::fmt::Debug> std::fmt::Debug for Resilient<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resilient")
            .field("inner", &self.inner)
            .field("breaker", &self.breaker)
            .field("retry", &self.retry)
            .finish()
    }
}

impl<D: Database> Resilient<D> {
    /// Wraps `inner`.
    pub fn new(inner: D, options: ResilienceOptions) -> Self {
        Self::with_listener(inner, options, None)
    }

    /// Wraps `inner`; breaker state changes also go to `listener`.
    pub fn with_listener(
        inner: D,
        options: ResilienceOptions,
        listener: Option<StateListener>,
    ) -> Self {
        Self {
            inner,
            breaker: Breaker::with_listener(options.breaker, listener),
            retry: options.retry,
        }
    }

    /// The wrapped handle.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// The breaker (state, counters), for `/status` and metrics.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// False while the breaker is open: the signal for degraded mode.
    pub fn is_available(&self) -> bool {
        self.breaker.state() != BreakerState::Open
    }

    async fn run<T, E, Fut>(
        &self,
        whole_transaction: bool,
        attempt: impl Fn() -> Fut,
    ) -> Result<T, E>
    where
        Fut: Future<Output = Result<T, E>>,
        E: TransactionError,
    {
        let started = Instant::now();
        let mut rng = fastrand::Rng::new();
        let mut tries = 0u32;
        loop {
            tries += 1;
            let result = self
                .breaker
                .call(
                    |e: &E| e.as_db_error().is_some_and(DbError::trips_breaker),
                    attempt(),
                )
                .await;
            let error = match result {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let retry = error
                .as_db_error()
                .is_some_and(|e| is_retryable(e, whole_transaction));
            if !retry || tries >= self.retry.max_attempts {
                return Err(error);
            }
            let pause = self.retry.backoff(tries, &mut rng);
            if started.elapsed() + pause >= self.retry.deadline {
                return Err(error);
            }
            if let Some(e) = error.as_db_error() {
                tracing::debug!(attempt = tries, pause_ms = pause.as_millis() as u64, error = %e, "retrying");
            }
            tokio::time::sleep(pause).await;
        }
    }
}

impl<D: Database> Database for Resilient<D> {
    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, DbError> {
        self.run(false, || self.inner.query(sql, params)).await
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, DbError> {
        self.run(false, || self.inner.execute(sql, params)).await
    }

    async fn batch_execute(&self, sql: &str) -> Result<(), DbError> {
        self.run(false, || self.inner.batch_execute(sql)).await
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
        let f = &f;
        self.run(true, || self.inner.transaction_with(layer.clone(), f))
            .await
    }

    fn stats(&self) -> PoolStats {
        self.inner.stats()
    }

    async fn health(&self, timeout: Duration) -> HealthReport {
        // Health checks bypass the breaker: they are how operators see the truth.
        self.inner.health(timeout).await
    }

    async fn close(&self, timeout: Duration) -> CloseReport {
        self.inner.close(timeout).await
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

    use pgline_core::ErrorKind;

    use super::*;
    use crate::BreakerOptions;

    /// A database whose calls fail with scripted errors, then succeed.
    struct Scripted {
        errors: Mutex<Vec<ErrorKind>>,
        calls: AtomicU32,
    }

    impl Scripted {
        fn new(mut errors: Vec<ErrorKind>) -> Self {
            errors.reverse();
            Self {
                errors: Mutex::new(errors),
                calls: AtomicU32::new(0),
            }
        }

        fn next(&self) -> Result<(), DbError> {
            self.calls.fetch_add(1, SeqCst);
            match self.errors.lock().unwrap().pop() {
                Some(kind) => Err(DbError::new(kind)),
                None => Ok(()),
            }
        }
    }

    impl Database for Scripted {
        async fn query(&self, _: &str, _: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, DbError> {
            self.next().map(|()| Vec::new())
        }
        async fn execute(&self, _: &str, _: &[&(dyn ToSql + Sync)]) -> Result<u64, DbError> {
            self.next().map(|()| 1)
        }
        async fn batch_execute(&self, _: &str) -> Result<(), DbError> {
            self.next()
        }
        async fn transaction<T, E, F>(&self, _f: F) -> Result<T, E>
        where
            T: Send,
            E: TransactionError,
            F: for<'s> Fn(&'s mut dyn Session) -> BoxFuture<'s, Result<T, E>> + Send + Sync,
        {
            match self.next() {
                Err(e) => Err(e.into()),
                Ok(()) => Err(DbError::new(ErrorKind::Rejected).into()),
            }
        }
        fn stats(&self) -> PoolStats {
            PoolStats::default()
        }
        async fn health(&self, _: Duration) -> HealthReport {
            HealthReport::new(true, Duration::ZERO, PoolStats::default(), "fake", None)
        }
        async fn close(&self, _: Duration) -> CloseReport {
            CloseReport::default()
        }
        fn backend(&self) -> &'static str {
            "fake"
        }
    }

    fn resilient(errors: Vec<ErrorKind>, attempts: u32, threshold: u32) -> Resilient<Scripted> {
        Resilient::new(
            Scripted::new(errors),
            ResilienceOptions::new(
                BreakerOptions::new(threshold, Duration::from_secs(30)),
                RetryOptions::new(attempts)
                    .with_backoff(Duration::from_millis(1), Duration::from_millis(4)),
            ),
        )
    }

    #[tokio::test]
    async fn connection_errors_are_retried_then_succeed() {
        let db = resilient(vec![ErrorKind::Connect, ErrorKind::Connect], 3, 10);
        assert_eq!(db.execute("x", &[]).await.unwrap(), 1);
        assert_eq!(db.inner().calls.load(SeqCst), 3);
    }

    #[tokio::test]
    async fn attempts_are_bounded() {
        let db = resilient(vec![ErrorKind::Connect; 5], 3, 10);
        let err = db.execute("x", &[]).await.unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Connect));
        assert_eq!(db.inner().calls.load(SeqCst), 3);
    }

    #[tokio::test]
    async fn request_errors_and_unknown_commits_are_not_retried() {
        let db = resilient(vec![ErrorKind::Rejected], 5, 10);
        assert!(db.execute("x", &[]).await.is_err());
        assert_eq!(db.inner().calls.load(SeqCst), 1);
        let db = resilient(vec![ErrorKind::CommitOutcomeUnknown], 5, 10);
        let err: DbError = db
            .transaction(|_tx| Box::pin(async { Ok::<(), DbError>(()) }))
            .await
            .unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::CommitOutcomeUnknown));
        assert_eq!(
            db.inner().calls.load(SeqCst),
            1,
            "an unknown commit must never be retried"
        );
    }

    #[tokio::test]
    async fn an_open_breaker_stops_retrying_and_fails_fast() {
        let db = resilient(vec![ErrorKind::Connect; 10], 5, 2);
        let err = db.execute("x", &[]).await.unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::CircuitOpen { .. }), "{err}");
        assert_eq!(db.inner().calls.load(SeqCst), 2);
        assert!(!db.is_available());
        let started = Instant::now();
        let err = db.execute("x", &[]).await.unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::CircuitOpen { .. }));
        assert!(started.elapsed() < Duration::from_millis(5));
        assert_eq!(
            db.inner().calls.load(SeqCst),
            2,
            "no call reached the database"
        );
    }

    #[tokio::test]
    async fn the_deadline_bounds_retries() {
        let db = Resilient::new(
            Scripted::new(vec![ErrorKind::Connect; 100]),
            ResilienceOptions::new(
                BreakerOptions::new(1000, Duration::from_secs(30)),
                RetryOptions::new(100)
                    .with_backoff(Duration::from_millis(20), Duration::from_millis(20))
                    .with_deadline(Duration::from_millis(60)),
            ),
        );
        let started = Instant::now();
        assert!(db.execute("x", &[]).await.is_err());
        assert!(started.elapsed() < Duration::from_millis(200));
        assert!(db.inner().calls.load(SeqCst) < 100);
    }
}

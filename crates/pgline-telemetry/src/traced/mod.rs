//! [`Traced`]: a [`Database`] decorator that gives every statement and
//! transaction a span, a duration measurement and a log line.

pub(crate) mod encode;
mod op;
pub(crate) mod queue;
mod session;
pub(crate) mod spans;

use std::sync::Arc;
use std::time::Duration;

use crate::Metrics;
use op::{Outcome, Shared};
use pgline_core::{
    BoxFuture, CloseReport, Database, DbError, HealthReport, LayerChain, PoolStats, Row, Session,
    SessionLayer, ToSql, TransactionError,
};
pub use session::TracedSession;
use spans::InScope;

/// A [`Database`] that traces what passes through it.
///
/// Every `query`, `execute` and `batch_execute` gets a span (kind `CLIENT`)
/// that is a child of the caller's current `tracing` span (or of the
/// transaction it runs in), named after OpenTelemetry's database conventions
/// (`SELECT plant`) and carrying `db.system.name=postgresql`, `db.namespace`,
/// `db.operation.name` (the statement's first keyword), `db.query.text`,
/// `server.address`, and `server.port` when it is not 5432; on failure also
/// `db.response.status_code` (the SQLSTATE) and `error.type` (the SQLSTATE,
/// or the error's kind when the server sent none). A `transaction` gets one
/// span around `BEGIN` … `COMMIT` with `db.operation.name=TRANSACTION`. The
/// pool's `acquire` span (from its [`PoolObserver`](crate::PoolObserver), for
/// a long wait) is a child of the statement or transaction that waited.
///
/// Spans exist when the [`Metrics`] given to [`with_metrics`](Traced::with_metrics)
/// belong to a [`Telemetry`](crate::Telemetry) that traces. They are
/// recorded directly and encoded for OTLP on an export thread, not made
/// through `tracing` (which costs several times more per statement), and
/// sampled like the service's other spans (`OTEL_TRACES_SAMPLER`).
///
/// `db.query.text` never holds parameter values: text that came with
/// parameters is shown as written (`… WHERE barcode = $1`), text without
/// parameters has its literals replaced by `?`.
///
/// With [`with_metrics`](Traced::with_metrics), each operation's duration is
/// recorded in `db.client.operation.duration`. Each operation's duration is
/// logged at debug (target `pgline_telemetry::query`), and operations slower
/// than the threshold (1 s unless [`with_slow_query`](Traced::with_slow_query)
/// says otherwise) at warn — with the operation, duration and redacted text,
/// never parameters.
///
/// # Statements inside a transaction
///
/// Each statement inside [`Database::transaction`] gets its own span, a child
/// of the transaction's: `Traced` passes a [`SessionLayer`] down with
/// [`Database::transaction_with`], and the backend wraps the session it hands
/// the closure in a [`TracedSession`]. Decorators between `Traced` and the
/// backend (`Resilient`, `Routed`) pass the layer on.
///
/// # Example
///
/// ```no_run
/// use pgline_core::Database;
/// use pgline_telemetry::{Metrics, Traced};
/// use tracing::Instrument as _;
///
/// # async fn demo(pool: pgline_async::PgPool, config: pgline_config::Config, metrics: Metrics)
/// # -> Result<(), pgline_core::DbError> {
/// let db = Traced::from_config(pool, &config).with_metrics(&metrics);
/// // The statement's span is a child of the request's.
/// let request = tracing::info_span!("station request", station = "ST-01");
/// db.execute("UPDATE panels SET status = 'IN_PROGRESS' WHERE barcode = $1", &[&"P-1"])
///     .instrument(request)
///     .await?;
/// # Ok(()) }
/// ```
pub struct Traced<D> {
    inner: D,
    shared: Arc<Shared>,
}

impl<D: Database> Traced<D> {
    /// Wraps `inner`, describing it as database `namespace` on
    /// `server_address:server_port`.
    pub fn new(inner: D, namespace: &str, server_address: &str, server_port: u16) -> Self {
        Self {
            inner,
            shared: Arc::new(Shared::new(namespace, server_address, server_port)),
        }
    }

    /// Wraps `inner` with the database name, first host and slow-statement
    /// threshold of the service configuration.
    pub fn from_config(inner: D, config: &pgline_config::Config) -> Self {
        let (host, port) = config
            .database
            .hosts
            .first()
            .map_or(("localhost", 5432), |e| (e.host.as_str(), e.port));
        Self::new(inner, &config.database.name, host, port).with_slow_query(config.log.slow_query)
    }

    /// Records each operation's duration in `metrics`
    /// (`db.client.operation.duration`) and, when the [`Telemetry`](crate::Telemetry)
    /// these metrics belong to traces, gives each operation its span.
    #[must_use]
    pub fn with_metrics(mut self, metrics: &Metrics) -> Self {
        let shared = self.shared_mut();
        shared.set_duration(metrics);
        shared.tracer = metrics.tracer().cloned();
        self
    }

    /// Operations at least this slow are logged at warn (default 1 s).
    #[must_use]
    pub fn with_slow_query(mut self, threshold: Duration) -> Self {
        self.shared_mut().slow_query = threshold;
        self
    }

    /// The wrapped handle.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// Unwraps the handle.
    pub fn into_inner(self) -> D {
        self.inner
    }

    fn shared_mut(&mut self) -> &mut Shared {
        Arc::make_mut(&mut self.shared)
    }

    /// Runs the statement `make` starts, traced. `make` is called here so
    /// that the backend's future (kilobytes) is made in place and never
    /// copied.
    async fn statement<'a, T, F>(
        &'a self,
        sql: &'a str,
        parameterized: bool,
        make: impl FnOnce() -> F,
    ) -> Result<T, DbError>
    where
        F: Future<Output = Result<T, DbError>> + 'a,
    {
        let operation = self.shared.statement(sql, parameterized, None);
        let run = std::pin::pin!(make());
        // Polled as the current operation: an `acquire` span of a long wait
        // becomes the statement's child.
        let result = InScope::new(run, operation.parent()).await;
        operation.finish(match &result {
            Ok(_) => Outcome::Ok,
            Err(e) => Outcome::Db(e),
        });
        result
    }
}

impl<D: Clone> Clone for Traced<D> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<D: std::fmt::Debug> std::fmt::Debug for Traced<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traced")
            .field("inner", &self.inner)
            .field("namespace", &self.shared.namespace)
            .field("server_address", &self.shared.server_address)
            .field("server_port", &self.shared.server_port)
            .field("slow_query", &self.shared.slow_query)
            .field("metrics", &self.shared.duration.is_some())
            .finish()
    }
}

impl<D: Database> Database for Traced<D> {
    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, DbError> {
        self.statement(sql, !params.is_empty(), || self.inner.query(sql, params))
            .await
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, DbError> {
        self.statement(sql, !params.is_empty(), || self.inner.execute(sql, params))
            .await
    }

    async fn batch_execute(&self, sql: &str) -> Result<(), DbError> {
        self.statement(sql, false, || self.inner.batch_execute(sql))
            .await
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
        let operation = self.shared.transaction();
        // Every statement of the transaction gets its span (a child of the
        // transaction's) from a traced session around the backend's.
        let parent = operation.parent();
        let own: Arc<dyn SessionLayer> = Arc::new(TraceLayer(Arc::clone(&self.shared), parent));
        let run = std::pin::pin!(
            self.inner
                .transaction_with(Some(LayerChain::stack(own, layer)), f)
        );
        let result = InScope::new(run, parent).await;
        operation.finish(match &result {
            Ok(_) => Outcome::Ok,
            Err(e) => e.as_db_error().map_or(Outcome::Other, Outcome::Db),
        });
        result
    }

    fn stats(&self) -> PoolStats {
        self.inner.stats()
    }

    async fn health(&self, timeout: Duration) -> HealthReport {
        self.inner.health(timeout).await
    }

    async fn close(&self, timeout: Duration) -> CloseReport {
        self.inner.close(timeout).await
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}

/// Wraps a transaction's session in a [`TracedSession`] whose statements
/// are children of the transaction's span.
struct TraceLayer(Arc<Shared>, Option<spans::Parent>);

impl SessionLayer for TraceLayer {
    fn wrap<'s>(&self, session: Box<dyn Session + 's>) -> Box<dyn Session + 's> {
        Box::new(TracedSession::new(session, Arc::clone(&self.0), self.1))
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll, Waker};

    use opentelemetry_sdk::trace::SpanProcessor as _;
    use pgline_core::{ErrorKind, PoolEvent, PoolListener as _};

    use super::*;
    use crate::traced::queue::tests::{Kept, attribute};
    use crate::traced::spans::{DbTracer, SamplerChoice};

    /// A database whose statements wait for the pool (an `acquire` event
    /// after the first poll) and then never finish.
    #[derive(Clone)]
    struct Stuck(Arc<crate::PoolObserver>);

    impl Database for Stuck {
        async fn query(&self, _: &str, _: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, DbError> {
            let mut polled = false;
            std::future::poll_fn(|_| {
                if polled {
                    self.0.on_event(&PoolEvent::Acquire {
                        connection_id: 3,
                        wait: Duration::from_millis(5),
                    });
                }
                polled = true;
                Poll::<()>::Pending
            })
            .await;
            Ok(Vec::new())
        }

        async fn execute(&self, _: &str, _: &[&(dyn ToSql + Sync)]) -> Result<u64, DbError> {
            Err(DbError::new(ErrorKind::Rejected))
        }

        async fn batch_execute(&self, _: &str) -> Result<(), DbError> {
            Ok(())
        }

        async fn transaction<T, E, F>(&self, _f: F) -> Result<T, E>
        where
            T: Send,
            E: TransactionError,
            F: for<'s> Fn(&'s mut dyn Session) -> BoxFuture<'s, Result<T, E>> + Send + Sync,
        {
            Err(DbError::new(ErrorKind::Rejected).into())
        }

        fn stats(&self) -> PoolStats {
            PoolStats::default()
        }

        async fn health(&self, _: Duration) -> HealthReport {
            HealthReport::new(true, Duration::ZERO, self.stats(), "stuck", None)
        }

        async fn close(&self, _: Duration) -> CloseReport {
            CloseReport::default()
        }

        fn backend(&self) -> &'static str {
            "stuck"
        }
    }

    #[test]
    fn a_statement_dropped_at_each_await_is_reported_cancelled_with_its_acquire_under_it() {
        let kept = Kept::default();
        let queue = kept.queue();
        let tracer = DbTracer::new(queue.clone(), SamplerChoice::default(), Duration::ZERO);
        let resource = crate::setup::resource("test");
        let metrics =
            Metrics::build(resource, None, Some(tracer)).unwrap_or_else(|e| panic!("{e}"));
        let db = Traced::new(Stuck(metrics.pool_listener("p")), "plant", "db", 5432)
            .with_metrics(&metrics);
        let mut cx = Context::from_waker(Waker::noop());
        // Dropped before the first poll (nothing ran: no span), after one
        // poll, after two (the second delivers the acquire).
        for polls in 0..3 {
            let mut statement = std::pin::pin!(db.query("SELECT 1", &[]));
            for _ in 0..polls {
                assert!(statement.as_mut().poll(&mut cx).is_pending());
                assert_eq!(spans::current_parent(), None, "restored after each poll");
            }
        }
        queue.force_flush().unwrap_or_else(|e| panic!("{e}"));
        let spans = kept.spans();
        let statements: Vec<_> = spans.iter().filter(|s| s.name == "SELECT plant").collect();
        assert_eq!(statements.len(), 2);
        for statement in &statements {
            assert_eq!(
                attribute(statement, "error.type").as_deref(),
                Some("cancelled")
            );
        }
        let acquires: Vec<_> = spans.iter().filter(|s| s.name == "acquire").collect();
        assert_eq!(acquires.len(), 1);
        assert!(
            statements
                .iter()
                .any(|s| s.span_id == acquires[0].parent_span_id),
            "the acquire is a child of the statement that waited"
        );
        queue
            .shutdown_with_timeout(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

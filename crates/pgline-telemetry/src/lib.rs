//! Observability for pgline: OpenTelemetry traces and metrics (OTLP),
//! Prometheus text and structured logs.
//!
//! The only crate that knows OpenTelemetry; it sees pools through the
//! `pgline-core` traits, so everything here works for both backends.
//!
//! - [`init`] (composition root): the global `tracing` subscriber
//!   (`LOG_LEVEL`/`RUST_LOG`, `LOG_FORMAT=json`), and OTLP/gRPC export of
//!   traces and metrics when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Returns a
//!   [`TelemetryGuard`] that flushes on shutdown. [`Telemetry`] is the same
//!   without globals, for tests and benchmarks.
//! - [`Traced`]: a [`Database`](pgline_core::Database) decorator with a span
//!   per statement and transaction after OpenTelemetry's database
//!   conventions, `db.client.operation.duration`, and duration/slow-statement
//!   logs — never parameter values.
//! - [`Metrics`]: the `db.client.connection.*` pool metrics, the operation
//!   duration and the breaker state, rendered as Prometheus text for
//!   `/metrics` ([`Metrics::render_prometheus`]) and pushed over OTLP.
//!   [`PoolObserver`] feeds the pool's time histograms (and `acquire` spans)
//!   from pool events.
//! - [`UtilizationWatch`]: warns when a pool runs hot, at most once per interval.
//! - [`set_parent_from_headers`]: continues a caller's trace from a W3C
//!   `traceparent` header.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use pgline_core::Database;
//! use pgline_telemetry::{Traced, UtilizationWatch};
//!
//! # async fn main_() -> Result<(), Box<dyn std::error::Error>> {
//! let config = pgline_config::Config::from_env()?;
//! let telemetry = pgline_telemetry::init(&config)?;
//! let pool_name = pgline_telemetry::default_pool_name(&config);
//!
//! let options = pgline_async::PoolOptions::from_config(&config.pool)
//!     .with_listener(telemetry.telemetry().pool_listener(pool_name.clone()));
//! let pool = pgline_async::PgPool::connect_with(&config, options).await?;
//! let stats = pool.clone();
//! telemetry.metrics().register_pool(pool_name.clone(), move || stats.stats());
//! let watch = UtilizationWatch::from_config(pool_name, &config.log);
//! let stats = pool.clone();
//! let watching = watch.spawn(move || stats.stats(), Duration::from_secs(1));
//!
//! let db = Traced::from_config(pool, &config).with_metrics(telemetry.metrics());
//! db.execute("UPDATE panels SET status = 'PENDING' WHERE barcode = $1", &[&"P-1"]).await?;
//! let body = telemetry.metrics().render_prometheus(); // for GET /metrics
//!
//! watching.abort();
//! telemetry.shutdown().await?;
//! # let _ = (body, Arc::new(())); Ok(()) }
//! ```

mod error;
mod metrics;
mod per_thread;
mod propagation;
mod setup;
mod sql;
mod traced;
mod watch;

pub use error::TelemetryError;
pub use metrics::{Metrics, PoolObserver};
pub use propagation::{extract_trace_context, set_parent_from_headers};
pub use setup::{LogFormat, Telemetry, TelemetryBuilder, TelemetryGuard, init, init_with_writer};
pub use traced::{Traced, TracedSession};
pub use watch::UtilizationWatch;

/// The pool name the conventions suggest when a pool has none of its own:
/// `server.address:server.port/db.namespace` of the first configured host.
pub fn default_pool_name(config: &pgline_config::Config) -> String {
    match config.database.hosts.first() {
        Some(endpoint) => format!("{endpoint}/{}", config.database.name),
        None => config.database.name.clone(),
    }
}

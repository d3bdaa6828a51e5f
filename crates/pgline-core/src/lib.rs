//! Traits and plain data shared by every pgline layer.
//!
//! `pgline-core` does no IO: it names tokio-postgres's data types (`Row`,
//! `ToSql`, `Error`, `SqlState`) in its signatures, but it opens no connection,
//! spawns no task and depends on no runtime, HTTP, figment or OpenTelemetry.
//!
//! - [`Database`]: the handle the domain layer uses — query, execute, and run a
//!   closure in a transaction (commit on `Ok`, rollback on `Err`, panic or
//!   cancellation). Both backends implement it; the resilience and telemetry
//!   layers wrap it as decorators with the same trait.
//! - [`Session`]: what a transaction closure gets — a dyn-compatible view of one
//!   exclusively held connection.
//! - [`PoolStats`], [`PoolEvent`] and [`PoolListener`]: the same statistics and
//!   events from every backend.
//! - [`Routed`]: a primary and an optional read replica as one handle; reads
//!   that tolerate lag ([`Database::query_replica`]) go to the replica and fall
//!   back to the primary when it is unavailable.
//! - [`DbError`] with [`ErrorClass`]: one opaque error type with predicates, and
//!   the classification that retry and the circuit breaker rely on.
//!
//! # Example
//!
//! Domain code is written once against the trait:
//!
//! ```
//! use pgline_core::{Database, DbError};
//!
//! /// Counts panels in a status, on any backend.
//! async fn count_panels<D: Database>(db: &D, status: &str) -> Result<i64, DbError> {
//!     let row = db
//!         .query_one("SELECT count(*) FROM panels WHERE status = $1", &[&status])
//!         .await?;
//!     Ok(row.get(0))
//! }
//!
//! /// Moves a panel and records the event atomically.
//! async fn complete<D: Database>(db: &D, barcode: String) -> Result<u64, DbError> {
//!     db.transaction(|tx| {
//!         let barcode = barcode.clone();
//!         Box::pin(async move {
//!             let n = tx
//!                 .execute("UPDATE panels SET status = 'COMPLETED' WHERE barcode = $1", &[&barcode])
//!                 .await?;
//!             tx.execute(
//!                 "INSERT INTO barcode_events (barcode, event_type) VALUES ($1, 'COMPLETED')",
//!                 &[&barcode],
//!             )
//!             .await?;
//!             Ok(n)
//!         })
//!     })
//!     .await
//! }
//! ```

mod error;
mod event;
mod handle;
mod health;
mod param_types;
mod routed;
mod scan;
mod stats;

pub use error::{DbError, ErrorClass, ErrorKind, TransactionError};
pub use event::{NoopListener, PoolEvent, PoolListener, RemoveReason};
pub use handle::{
    BoxFuture, Database, LayerChain, Params, Session, SessionLayer, at_most_one, exactly_one,
};
pub use health::{CloseReport, HealthReport};
pub use param_types::ParamTypes;
pub use routed::{Routed, RoutingStats};
pub use scan::may_open_transaction;
pub use stats::{ClosedCounts, PoolStats, utilization};

/// Re-exports of the tokio-postgres data types that appear in the traits.
pub use tokio_postgres::{Row, error::SqlState, types::ToSql};

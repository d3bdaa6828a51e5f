//! The async connection pool of pgline, written on tokio and tokio-postgres.
//!
//! This crate owns connections. [`PgPool`] implements the
//! [`Database`](pgline_core::Database) trait of `pgline-core`, so the domain
//! layer, the resilience layer and telemetry use it without knowing it; it can
//! also be used directly through [`Pool::acquire`].
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use pgline_async::{PgManager, PgPool, PoolOptions};
//! use pgline_core::{Database, DbError};
//!
//! # async fn demo() -> Result<(), DbError> {
//! // From the service configuration (DB_* variables, pgline.toml):
//! let config = pgline_config::Config::from_env().expect("valid configuration");
//! let pool = PgPool::connect(&config).await?;
//!
//! // Or by hand:
//! let pg: tokio_postgres::Config = "host=127.0.0.1 user=postgres dbname=plant".parse().unwrap();
//! let pool = PgPool::new(
//!     PgManager::new(pg, None, 100),
//!     PoolOptions::new(2, 20).with_acquire_timeout(Duration::from_secs(5)),
//! )?;
//! pool.initialize().await?;
//!
//! // Through the core trait: one statement, or a transaction.
//! let pending: i64 = pool
//!     .query_one("SELECT count(*) FROM panels WHERE status = $1", &[&"PENDING"])
//!     .await?
//!     .get(0);
//! pool.transaction(|tx| {
//!     Box::pin(async move {
//!         tx.execute("UPDATE panels SET status = 'IN_PROGRESS' WHERE barcode = $1", &[&"P-1"]).await
//!     })
//! })
//! .await?;
//!
//! // Or holding one connection.
//! let conn = pool.acquire().await?;
//! let tx = conn.transaction().await?;
//! tx.execute("INSERT INTO barcode_events (barcode, event_type) VALUES ($1, 'SCANNED')", &[&"P-1"]).await?;
//! tx.commit().await?;
//! drop(conn);
//!
//! let report = pool.close(Duration::from_secs(10)).await;
//! println!("{pending} pending; closed {} idle connections", report.closed_idle);
//! # Ok(()) }
//! ```
//!
//! # Design
//!
//! **One lock, no IO under it.** The pool's bookkeeping (idle list, waiter
//! queue, counts) sits behind one `std::sync::Mutex` and is only touched by
//! short, synchronous sections; connecting, validating, resetting and closing
//! happen after the lock is released (bb8's internals/inner split). Statistics
//! are mirrored into atomics, so [`Pool::stats`] never takes the lock.
//!
//! **The queue.** An acquire takes an idle connection only when nobody is
//! waiting; otherwise it joins a FIFO queue of one-shot channels. A returned
//! connection goes straight to the oldest live waiter (direct hand-off): a
//! newcomer can never overtake a waiter, and exactly one task is woken per
//! returned connection. A waiter whose connection fails its check before
//! hand-out keeps its turn (it rejoins at the front). One deadline
//! (`acquire_timeout`) covers queueing, connecting and validation; a single
//! expiry task per pool keeps the deadlines of the queue (every waiter has the
//! same timeout, so the front's deadline is the earliest) instead of a timer
//! per waiter. On expiry the error says how many were waiting
//! and how many connections were in use, and carries the last connection
//! error when none are. A waiter dropped at any point leaves the queue and
//! returns a connection it was handed but never received.
//!
//! **Connecting off the caller's path.** Waiters never connect themselves.
//! When demand (waiters plus the idle deficit below `min_idle`) exceeds the
//! connections being opened and there is room below `max_size`, the pool
//! spawns connection tasks; each new connection goes to the oldest waiter or
//! to the idle list. Failed attempts retry with backoff (10 ms doubling to
//! 500 ms) while demand remains, so the pool recovers within half a second of
//! the database's return. A cancelled acquire never loses a half-open
//! connection.
//!
//! **Maintenance.** A background task (every second by default) closes idle
//! connections above `min_idle` after `idle_timeout`, closes idle connections
//! past their lifetime, refills to `min_idle`, and warns about connections
//! held longer than the leak-detection threshold (naming the `#[track_caller]`
//! location of the acquire). Lifetimes are shortened by a random spread (2.5 %
//! of `max_lifetime` by default) so connections opened together don't expire
//! together. A connection in use is never closed under its caller: it is
//! retired when it comes back. The task holds only a weak reference and stops
//! when the pool is closed or dropped.
//!
//! **Validity.** Every hand-out checks `is_closed()` (no IO); a connection idle
//! longer than `validation_threshold` (500 ms) also gets an empty simple query
//! round trip. Broken or expired connections are closed and the acquire
//! continues with the next one.
//!
//! # Clean state
//!
//! A connection is never handed out inside a transaction, with an unfinished
//! statement, or closed. tokio-postgres throws away the transaction-status
//! byte of the server's ReadyForQuery message, so the pool cannot ask the
//! protocol; instead [`PgConnection`] keeps three flags, and a connection with
//! any flag set is reset in the background when it is returned:
//!
//! - **in transaction**: set before `BEGIN` is sent by
//!   [`PgConnection::transaction`] or [`Database::transaction`](pgline_core::Database::transaction),
//!   cleared by a successful `COMMIT`/`ROLLBACK`. A guard dropped without commit
//!   (error, panic, cancellation) leaves it set.
//! - **suspect**: every SQL text that passes through the connection is scanned
//!   for the words `BEGIN` and `START` (the only statements that open a
//!   transaction block; functions cannot, and procedures or `DO` blocks cannot
//!   leave one open). The verdict is cached with the prepared statement, so the
//!   scan costs nothing on the hot path. Using the raw client
//!   ([`PgConnection::client_unchecked`]) also sets it. False positives only
//!   cost a `ROLLBACK` round trip in the background.
//! - **cancelled**: a statement future dropped before it completed.
//!
//! What happens on return depends on the flags:
//!
//! - **cancelled** → the pool sends a cancel request (tokio-postgres
//!   `CancelToken`) so the server stops the statement, then *discards* the
//!   connection. It is not reused because tokio-postgres's `cancel_query`
//!   returns once the request is written, not once the server has acted on
//!   it: a late cancel would otherwise hit the next caller's statement on the
//!   same backend. The chaos suite caught exactly that (a `57014` on an
//!   innocent query); with the backend gone, a late cancel harms no one.
//! - **in transaction** or **suspect** → `ROLLBACK`, which leaves the session
//!   outside any transaction block, aborted or not, and the connection is
//!   reused.
//!
//! Resets run on a background task; a reset that fails or exceeds
//! `reset_timeout` closes the connection. The client-side query timeout
//! ([`PgManager::with_query_timeout`]) drops a statement that runs too long,
//! which marks it cancelled: the server-side statement is cancelled too. The
//! integration tests and `cargo xtask chaos` check every hand-out after
//! thousands of randomly cancelled operations.
//!
//! # TLS
//!
//! `DB_SSL` works as libpq's `sslmode` through tokio-postgres-rustls with the
//! ring provider; see [`make_connector`].

mod manager;
mod options;
mod pg;
mod pool;
mod pooled;
pub mod shared;
mod stats;
mod tls;

pub use manager::Manager;
pub use options::PoolOptions;
pub use pg::{PgConnection, PgManager, PgPool, PgTransaction};
pub use pool::Pool;
pub use pooled::Pooled;
pub use shared::{SharedLane, SharedOptions, check_shared_statement};
pub use tls::make_connector;

#[cfg(test)]
mod tests;

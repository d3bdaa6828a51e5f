//! The blocking pgline backend, on r2d2 and r2d2_postgres.
//!
//! For thread-based programs (station controllers, batch jobs): [`SyncPool`]
//! hands out connections to plain threads, and it implements the same
//! [`Database`](pgline_core::Database) trait as the async pool, so the domain
//! layer, the resilience layer and telemetry run on it unchanged.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use pgline_core::DbError;
//! use pgline_sync::{PoolOptions, SyncManager, SyncPool};
//!
//! # fn demo() -> Result<(), DbError> {
//! // From the service configuration (DB_* variables, pgline.toml). With
//! // DB_SSL set, pass `pgline_async::make_connector(..)`'s connector.
//! let config = pgline_config::Config::from_env().expect("valid configuration");
//! let pool = SyncPool::connect(&config, None)?;
//!
//! // Or by hand:
//! let pg: tokio_postgres::Config = "host=127.0.0.1 user=postgres dbname=plant".parse().unwrap();
//! let pool = SyncPool::new(
//!     SyncManager::new(pg, None, 100),
//!     PoolOptions::new(2, 20).with_acquire_timeout(Duration::from_secs(5)),
//! )?;
//! pool.initialize()?;
//!
//! // From any thread: one statement, or a transaction.
//! let pending: i64 = pool
//!     .query_one("SELECT count(*) FROM panels WHERE status = $1", &[&"PENDING"])?
//!     .get(0);
//! pool.transaction(|tx| {
//!     tx.execute("UPDATE panels SET status = 'IN_PROGRESS' WHERE barcode = $1", &[&"P-1"])?;
//!     tx.execute("INSERT INTO barcode_events (barcode, event_type) VALUES ($1, 'SCANNED')", &[&"P-1"])
//! })?;
//!
//! // Or holding one connection.
//! let mut conn = pool.get()?;
//! let mut tx = conn.transaction()?;
//! tx.execute("INSERT INTO barcode_events (barcode, event_type) VALUES ($1, 'PASSED')", &[&"P-1"])?;
//! tx.commit()?;
//! drop(conn);
//!
//! let report = pool.close(Duration::from_secs(10));
//! println!("{pending} pending; closed {} idle connections", report.closed_idle);
//! # Ok(()) }
//! ```
//!
//! # Design
//!
//! **r2d2 underneath, configured explicitly.** `min` becomes `min_idle`
//! (r2d2 would default it to `max`), `max` `max_size`, the acquire timeout
//! `connection_timeout`, plus idle timeout and maximum lifetime. The pool is
//! built with `build_unchecked`, so creating it never blocks or fails on a
//! database that is down; [`SyncPool::initialize`] waits (bounded) for the
//! minimum. r2d2_postgres opens the connections, plain or with the same
//! rustls connector as the async pool.
//!
//! **Validation with an age threshold.** r2d2 only calls
//! `ManageConnection::is_valid` when `test_on_check_out` is on, and then on
//! every checkout. It is on, and `is_valid` skips the round trip for a
//! connection returned less than `validation_threshold` (500 ms) ago; older
//! connections answer an empty query (bounded by `validation_timeout`) first.
//! Pinging on every checkout costs a round trip per checkout, which for the
//! usual one-statement checkout is about as much as the statement itself.
//!
//! **Events and errors.** r2d2's `HandleEvent` becomes the core
//! [`PoolEvent`](pgline_core::PoolEvent)s and `HandleError` the `Error`
//! event (see `events.rs` for the table and the gaps: `Remove` is sent when a
//! connection is dropped, because r2d2's release event carries no reason).
//! [`PoolStats`](pgline_core::PoolStats) has the async pool's fields: r2d2's
//! `State` for open and idle connections, atomics for the rest.
//!
//! **Waiting and closing.** A caller waits for r2d2 in 100 ms slices, so
//! that [`SyncPool::close`] can refuse waiters (r2d2 cannot wake them with an
//! error); its deadline and its wait time are measured across slices. `close`
//! takes idle connections out and closes them, waits for those in use and
//! closes them when they come back. r2d2's waiters are not served in FIFO
//! order, and its reaper runs every 30 s and does not spare `min_idle`.
//!
//! # Clean state
//!
//! As in the async pool, a connection is never handed out inside a
//! transaction. [`SyncClient`] keeps flags: **in transaction** (set before
//! `BEGIN`, cleared by `COMMIT`/`ROLLBACK`), **suspect** (a statement contained
//! the word `BEGIN` or `START`, or the raw client was used; the verdict is
//! cached with the prepared statement) and **interrupted** (a panic unwound
//! out of a statement: the protocol state is unknown).
//!
//! r2d2 has no reset hook, so the reset happens in [`SyncConnection`]'s
//! `drop`, before the connection goes back to r2d2: `ROLLBACK`, which leaves
//! any transaction block, aborted or not. On a plain thread it runs right
//! there. Dropped inside a tokio runtime (a cancelled or panicking async
//! transaction), where the blocking client must not run, the connection moves
//! to a short-lived thread that rolls it back and returns it. A connection
//! whose reset fails, or that was interrupted, is marked and r2d2's
//! `has_broken` discards it. [`SyncTransaction`] dropped without commit rolls
//! back at once on a plain thread, and otherwise before the connection runs
//! its next statement.
//!
//! # Async callers
//!
//! `postgres::Client` runs its own current-thread runtime and panics on a
//! thread inside another runtime ("Cannot start a runtime from within a
//! runtime"), and dropping it panics there too. Every blocking call of this
//! crate therefore runs through one adapter: on tokio's multi-thread runtime
//! in `tokio::task::block_in_place`, on a current-thread runtime on a scoped
//! helper thread that is joined at once, elsewhere directly. Connections are
//! only ever closed where blocking is allowed (else on a thread of their
//! own). The [`Database`](pgline_core::Database) implementation's
//! transaction closure is an ordinary future polled by the caller; each of
//! its statements blocks through the adapter when polled, and a statement
//! that has started cannot be cancelled (the future is cancelled between
//! statements, and the transaction is rolled back as above).
//!
//! # TLS
//!
//! This crate does not depend on the async one; the connector is passed in
//! (`pgline_async::make_connector(mode, root_cert)` builds it, as the server
//! does), and [`SyncManager::from_config`] refuses a TLS mode that requires
//! one when none is given.

mod blocking;
mod client;
mod connection;
mod database;
mod events;
mod manager;
mod options;
mod pool;
mod shared;
mod transaction;
mod unnamed;

pub use client::SyncClient;
pub use connection::SyncConnection;
pub use manager::SyncManager;
pub use options::PoolOptions;
pub use pool::{SyncPool, ValidationStats};
pub use transaction::SyncTransaction;

/// The blocking client's crate, for [`SyncClient::client_unchecked`] users.
pub use r2d2_postgres::postgres;

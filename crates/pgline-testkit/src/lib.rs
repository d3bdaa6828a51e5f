//! Test support for pgline: throwaway PostgreSQL servers started from the binaries on
//! this machine.
//!
//! Tests never assume a running server. [`PgServer`] finds `initdb` and `postgres`
//! (`$PGLINE_TESTKIT_PG_BIN`, then `PATH`, then the highest version under
//! `/usr/lib/postgresql/*/bin`), copies a cached `initdb` template into a folder of its
//! own, and starts `postgres` on a free port of 127.0.0.1 with durability off. A server
//! starts in about 0.15 s once the template exists; the first start on a machine (or
//! after a reboot) runs `initdb` once, about a second more.
//!
//! - [`PgServer::shared`]: one server per test process, for tests that only need a
//!   database; isolate them with [`PgServer::fresh_database`].
//! - [`PgServer::start`] / [`PgServer::builder`]: a server of the test's own, for tests
//!   that stop, kill, restart or reconfigure it.
//! - [`PgServer::start_standby`]: a hot standby of a server (streaming replication).
//! - [`PgBouncer::start`]: a throwaway PgBouncer in transaction pooling mode in front
//!   of a server (Debian's `pgbouncer` package; a missing binary is an error that says
//!   how to install it).
//! - `otlp::Receiver` (cargo feature `otlp`): an in-process OTLP/gRPC collector that
//!   keeps the spans and metrics a test's service exports.
//!
//! When PostgreSQL is missing, starting fails (and [`PgServer::shared`] panics) with a
//! message saying to install it with `apt-get install postgresql`: a test that needs a
//! database never passes silently without one.
//!
//! ```no_run
//! use pgline_testkit::{PgServer, TestkitError};
//!
//! // Most tests: the per-process shared server and a database of their own.
//! async fn counts_rows() -> Result<(), Box<dyn std::error::Error>> {
//!     let server = PgServer::shared();
//!     let db = server.fresh_database().await?;
//!     let client = server.connect(&db).await?;
//!     client.batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)").await?;
//!     let row = client.query_one("SELECT count(*) FROM t", &[]).await?;
//!     assert_eq!(row.get::<_, i64>(0), 2);
//!     Ok(())
//! }
//!
//! // Destructive tests: a server of their own, removed when `server` is dropped.
//! async fn survives_a_crash() -> Result<(), TestkitError> {
//!     let server = PgServer::start().await?;
//!     server.kill9().await?;
//!     server.restart().await?;
//!     assert_eq!(server.query_scalar_i64("SELECT 1").await?, 1);
//!     Ok(())
//! }
//!
//! // Synchronous tests (plain threads, no runtime).
//! fn from_plain_threads() -> Result<(), TestkitError> {
//!     let server = PgServer::shared();
//!     let url = server.url("postgres"); // for the synchronous `postgres` crate
//!     assert!(url.starts_with("postgres://postgres@127.0.0.1:"));
//!     assert_eq!(server.query_scalar_i64_blocking("SELECT 40 + 2")?, 42);
//!     Ok(())
//! }
//! ```
//!
//! # Environment
//!
//! - `PGLINE_TESTKIT_PG_BIN`: the folder holding `initdb` and `postgres` (skips the
//!   search).
//! - `PGLINE_TESTKIT_TMPDIR`: where templates and server folders go. By default
//!   `/dev/shm` when it is a writable tmpfs with 2 GiB free (copying the template to
//!   disk takes about five times as long), else the system temporary folder.
//! - `PGLINE_TESTKIT_TRACE`: when set, each start prints its phase timings to stderr.
//!
//! # Root
//!
//! PostgreSQL refuses to run as root, and CI runs as root. When the effective user is
//! root, `initdb` and `postgres` run as the `postgres` OS user (set on the spawned
//! process, like `setpriv --reuid`), and the server folder belongs to that user.
//!
//! # Cleanup
//!
//! Dropping a [`PgServer`] stops it and removes its folder, also during a panic. Each
//! server also has a watchdog process (`sh`) that is the postmaster's parent and holds
//! the read end of a pipe whose write end only the test process has: when the test
//! process goes away for any reason (a `static` server, `std::process::exit`, SIGKILL)
//! the pipe closes and the watchdog stops PostgreSQL and removes the folder. Servers run
//! in their own session, so a terminal's Ctrl-C reaches the test process only.
//!
//! Starting a server makes the test process a child subreaper (`PR_SET_CHILD_SUBREAPER`)
//! so that the backends of a killed postmaster are reaped rather than left as zombies on
//! machines whose PID 1 does not reap orphans.

mod bins;
mod bouncer;
mod error;
#[cfg(feature = "otlp")]
pub mod otlp;
mod procs;
mod proxy;
mod rt;
mod server;
mod template;
mod watchdog;

pub use bins::BIN_DIR_ENV;
pub use bouncer::{PGBOUNCER_BIN_ENV, PgBouncer, PgBouncerBuilder};
pub use error::TestkitError;
pub use proxy::{FaultProxy, ProxyMode};
pub use server::{PgServer, PgServerBuilder};
pub use template::TMPDIR_ENV;

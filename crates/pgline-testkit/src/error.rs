//! The error type of the crate.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while starting, using or stopping a throwaway server.
///
/// Messages are lowercase and self-contained, so `panic!("{e}")` in a test is enough to
/// tell a developer what to do (for example how to install PostgreSQL).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestkitError {
    /// No folder holding both `initdb` and `postgres` was found.
    #[error(
        "postgresql server binaries (initdb and postgres) not found; looked in {searched}; \
         install postgresql with `apt-get install postgresql` (or set PGLINE_TESTKIT_PG_BIN \
         to the folder that holds initdb and postgres)"
    )]
    BinariesNotFound {
        /// Where the search looked, in order.
        searched: String,
    },

    /// No `pgbouncer` binary was found.
    #[error(
        "pgbouncer not found; looked in {searched}; install it with \
         `apt-get update && apt-get install -y pgbouncer` (or set PGLINE_TESTKIT_PGBOUNCER \
         to the binary)"
    )]
    PgBouncerNotFound {
        /// Where the search looked, in order.
        searched: String,
    },

    /// We run as root, PostgreSQL refuses root, and there is no `postgres` user to run as.
    #[error(
        "postgresql refuses to run as root and there is no `postgres` os user to run it as; \
         install postgresql with `apt-get install postgresql` (it creates that user) or run \
         the tests as an ordinary user"
    )]
    NoPostgresUser,

    /// A file-system or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What the crate was doing.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A helper program (`postgres --version`, `initdb`, `cp`) failed.
    #[error("{program} failed ({status}): {output}")]
    Command {
        /// The program and its main arguments.
        program: String,
        /// Its exit status.
        status: String,
        /// What it printed (stderr, then stdout), trimmed.
        output: String,
    },

    /// The postmaster exited while starting.
    #[error("postgresql exited during startup ({data_dir}); server log tail:\n{log_tail}")]
    StartFailed {
        /// The server's data folder.
        data_dir: PathBuf,
        /// The last lines of the server log.
        log_tail: String,
    },

    /// The server did not accept connections in time.
    #[error(
        "postgresql did not accept connections within {timeout:?} ({data_dir}); server log tail:\n{log_tail}"
    )]
    StartTimeout {
        /// The startup bound that passed.
        timeout: Duration,
        /// The server's data folder.
        data_dir: PathBuf,
        /// The last lines of the server log.
        log_tail: String,
    },

    /// A query or connection failed; `detail` holds the whole error chain.
    #[error("{context}: {detail}")]
    Database {
        /// What the crate was doing.
        context: String,
        /// The error and its causes, joined with `: `.
        detail: String,
        /// The underlying error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// The operation needs a running server, and it is stopped.
    #[error("the server is not running (stopped or killed); call restart first")]
    NotRunning,

    /// A query returned something the helper could not use.
    #[error("unexpected query result: {0}")]
    UnexpectedResult(String),

    /// The crate's own machinery failed (background runtime, watchdog process).
    #[error("pgline-testkit internal error: {0}")]
    Internal(String),
}

impl TestkitError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn db(context: impl Into<String>, source: tokio_postgres::Error) -> Self {
        let mut detail = source.to_string();
        let mut cause = std::error::Error::source(&source);
        while let Some(c) = cause {
            detail.push_str(": ");
            detail.push_str(&c.to_string());
            cause = c.source();
        }
        Self::Database {
            context: context.into(),
            detail,
            source,
        }
    }
}

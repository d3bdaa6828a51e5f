//! One opaque error type for every layer, with the classification that retry
//! and the circuit breaker rely on.

use std::fmt;
use std::time::Duration;

use tokio_postgres::error::SqlState;

/// What went wrong, in the terms a caller can act on.
///
/// Ask [`DbError`]'s predicates ([`DbError::class`], [`DbError::trips_breaker`],
/// [`DbError::code`]) rather than matching variants where you can.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No connection could be handed out before the acquire deadline.
    AcquireTimeout {
        /// How long the caller waited.
        waited: Duration,
        /// Callers waiting when the deadline passed (this one included).
        waiting: u32,
        /// Connections in use when the deadline passed.
        in_use: u32,
        /// The pool's maximum size.
        max: u32,
    },
    /// The pool is closed or closing and hands out no more connections.
    PoolClosed,
    /// A new connection could not be opened (refused, reset, authentication, TLS).
    Connect,
    /// A statement failed, on the server or on the way to it.
    Query,
    /// The connection was lost while `COMMIT` was in flight: the transaction may
    /// or may not have committed. Never retried; check before repeating.
    CommitOutcomeUnknown,
    /// The circuit breaker is open: the database is considered down.
    CircuitOpen {
        /// Time until the breaker lets the next probe through.
        retry_in: Duration,
    },
    /// A client-side time limit (query or health check) expired.
    Timeout,
    /// A query expected a different number of rows.
    UnexpectedRowCount {
        /// What the caller asked for, e.g. `"exactly one"`.
        expected: &'static str,
        /// How many rows came back.
        got: usize,
    },
    /// The operation was refused before it reached the database (bad input to
    /// the pool, a statement the chosen path does not allow, setup errors).
    Rejected,
}

/// Whether an error is worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The same request may succeed later: infrastructure trouble, overload,
    /// serialization failures and deadlocks.
    Transient,
    /// The request itself is wrong (constraint, syntax, data) or the outcome is
    /// unknown; repeating it does not help.
    Permanent,
}

/// The error of every pgline handle.
///
/// Its `Display` never contains parameter values: for server errors it shows the
/// SQLSTATE and the server's primary message, not the `DETAIL` (which can quote
/// row values), and for data exceptions (class 22, whose messages quote the bad
/// input) only the SQLSTATE and the constraint or column when known.
pub struct DbError {
    kind: ErrorKind,
    context: Option<String>,
    source: Option<Source>,
}

enum Source {
    Postgres(tokio_postgres::Error),
    Other(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl DbError {
    /// An error of the given kind with no underlying cause.
    pub fn new(kind: ErrorKind) -> Self {
        Self {
            kind,
            context: None,
            source: None,
        }
    }

    /// An error of the given kind caused by a tokio-postgres error.
    pub fn postgres(kind: ErrorKind, source: tokio_postgres::Error) -> Self {
        Self {
            kind,
            context: None,
            source: Some(Source::Postgres(source)),
        }
    }

    /// A failed statement (the most common case).
    pub fn query(source: tokio_postgres::Error) -> Self {
        Self::postgres(ErrorKind::Query, source)
    }

    /// An error of the given kind caused by any other error.
    pub fn other(
        kind: ErrorKind,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self {
            kind,
            context: None,
            source: Some(Source::Other(source.into())),
        }
    }

    /// Adds a short, value-free description of what was being done.
    #[must_use]
    pub fn with_context(mut self, context: impl Into<String>) -> Self {
        self.context = Some(context.into());
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The SQLSTATE the server sent, if the server sent one.
    pub fn code(&self) -> Option<&SqlState> {
        self.postgres_error().and_then(tokio_postgres::Error::code)
    }

    /// The underlying tokio-postgres error, if any. Its `Display` may quote
    /// row values in `DETAIL`: do not log it.
    pub fn postgres_error(&self) -> Option<&tokio_postgres::Error> {
        match &self.source {
            Some(Source::Postgres(e)) => Some(e),
            _ => None,
        }
    }

    /// The server's error (severity, code, message, constraint...), if any.
    pub fn server_error(&self) -> Option<&tokio_postgres::error::DbError> {
        self.postgres_error()
            .and_then(tokio_postgres::Error::as_db_error)
    }

    /// The constraint a server error names (`23505` and friends), if any.
    pub fn constraint(&self) -> Option<&str> {
        self.server_error().and_then(|e| e.constraint())
    }

    /// True when the connection underneath is gone (closed, reset, terminated).
    pub fn is_connection_lost(&self) -> bool {
        if matches!(self.kind, ErrorKind::CommitOutcomeUnknown) {
            return true;
        }
        match &self.source {
            Some(Source::Postgres(e)) => {
                if e.is_closed() {
                    return true;
                }
                match e.code() {
                    Some(code) => is_connection_code(code),
                    // No SQLSTATE and the cause is IO: the socket failed.
                    None => has_io_cause(e),
                }
            }
            _ => false,
        }
    }

    /// True for `40001` (serialization failure) and `40P01` (deadlock): the
    /// whole transaction may be run again.
    pub fn is_serialization_failure(&self) -> bool {
        matches!(
            self.code(),
            Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
        )
    }

    /// True for a unique-constraint violation (`23505`).
    pub fn is_unique_violation(&self) -> bool {
        self.code() == Some(&SqlState::UNIQUE_VIOLATION)
    }

    /// True for the acquire deadline or another client-side time limit.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::AcquireTimeout { .. } | ErrorKind::Timeout
        )
    }

    /// Whether retrying the same request may help.
    pub fn class(&self) -> ErrorClass {
        match &self.kind {
            ErrorKind::AcquireTimeout { .. }
            | ErrorKind::Timeout
            | ErrorKind::CircuitOpen { .. } => ErrorClass::Transient,
            ErrorKind::PoolClosed
            | ErrorKind::CommitOutcomeUnknown
            | ErrorKind::UnexpectedRowCount { .. }
            | ErrorKind::Rejected => ErrorClass::Permanent,
            ErrorKind::Connect => match self.code() {
                // Wrong password or role: retrying cannot fix it.
                Some(c) if c.code().starts_with("28") => ErrorClass::Permanent,
                Some(c) if *c == SqlState::INVALID_CATALOG_NAME => ErrorClass::Permanent,
                _ => ErrorClass::Transient,
            },
            ErrorKind::Query => {
                if self.is_connection_lost() || self.is_serialization_failure() {
                    return ErrorClass::Transient;
                }
                match self.code() {
                    Some(c) if is_overload_code(c) || *c == SqlState::LOCK_NOT_AVAILABLE => {
                        ErrorClass::Transient
                    }
                    _ => ErrorClass::Permanent,
                }
            }
        }
    }

    /// True when the error is transient.
    pub fn is_transient(&self) -> bool {
        self.class() == ErrorClass::Transient
    }

    /// True when the error is permanent.
    pub fn is_permanent(&self) -> bool {
        self.class() == ErrorClass::Permanent
    }

    /// Whether the error says the database (not the request) is failing, so it
    /// counts against the circuit breaker: connections refused, reset or
    /// closed, class 08, `57P01`–`57P03`, `53300` and other resource
    /// exhaustion, acquire and network timeouts, an unknown commit outcome.
    /// Errors of the request itself (23xxx, 42xxx, 22xxx, 40001...) never do.
    pub fn trips_breaker(&self) -> bool {
        match &self.kind {
            ErrorKind::AcquireTimeout { .. }
            | ErrorKind::Timeout
            | ErrorKind::Connect
            | ErrorKind::CommitOutcomeUnknown => true,
            ErrorKind::PoolClosed
            | ErrorKind::CircuitOpen { .. }
            | ErrorKind::UnexpectedRowCount { .. }
            | ErrorKind::Rejected => false,
            ErrorKind::Query => {
                self.is_connection_lost() || self.code().is_some_and(is_overload_code)
            }
        }
    }
}

/// Class 08 (connection exception) and 57P01–57P03 (admin or crash shutdown,
/// cannot connect now).
fn is_connection_code(code: &SqlState) -> bool {
    code.code().starts_with("08")
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
}

/// Class 53 (insufficient resources: too many connections, out of memory, disk full).
fn is_overload_code(code: &SqlState) -> bool {
    code.code().starts_with("53") || is_connection_code(code)
}

fn has_io_cause(e: &tokio_postgres::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.is::<std::io::Error>() {
            return true;
        }
        cause = c.source();
    }
    false
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::AcquireTimeout {
                waited,
                waiting,
                in_use,
                max,
            } => write!(
                f,
                "timed out after {waited:?} waiting for a connection ({waiting} waiting, {in_use} of {max} in use)"
            ),
            ErrorKind::PoolClosed => f.write_str("the pool is closed"),
            ErrorKind::Connect => f.write_str("could not connect to the database"),
            ErrorKind::Query => f.write_str("statement failed"),
            ErrorKind::CommitOutcomeUnknown => f.write_str(
                "connection lost while COMMIT was in flight: the outcome is unknown, check before retrying",
            ),
            ErrorKind::CircuitOpen { retry_in } => write!(
                f,
                "database unavailable (circuit open); next probe in {retry_in:?}"
            ),
            ErrorKind::Timeout => f.write_str("operation timed out"),
            ErrorKind::UnexpectedRowCount { expected, got } => {
                write!(f, "query returned {got} rows, expected {expected}")
            }
            ErrorKind::Rejected => f.write_str("operation rejected"),
        }
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(context) = &self.context {
            write!(f, " ({context})")?;
        }
        match &self.source {
            Some(Source::Postgres(e)) => match e.as_db_error() {
                Some(db) => {
                    let code = db.code().code();
                    if code.starts_with("22") {
                        // Data exceptions quote the offending input: keep it out.
                        write!(f, ": {} [{code}]", db.severity())?;
                        if let Some(column) = db.column() {
                            write!(f, " column {column}")?;
                        }
                    } else {
                        write!(f, ": {}: {} [{code}]", db.severity(), db.message())?;
                    }
                }
                None => write!(f, ": {e}")?,
            },
            Some(Source::Other(e)) => write!(f, ": {e}")?,
            None => {}
        }
        Ok(())
    }
}

impl fmt::Debug for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Same redaction as Display: Debug output ends up in logs too.
        f.debug_struct("DbError")
            .field("kind", &self.kind)
            .field("code", &self.code().map(SqlState::code))
            .field("message", &self.to_string())
            .finish()
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.source {
            // Server errors are reachable through `server_error()` only: their
            // Display includes DETAIL, which may quote row values.
            Some(Source::Postgres(e)) if e.as_db_error().is_some() => None,
            Some(Source::Postgres(e)) => Some(e),
            Some(Source::Other(e)) => Some(e.as_ref()),
            None => None,
        }
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        DbError::query(e)
    }
}

/// The error type of a transaction closure: any error that can carry a
/// [`DbError`], so domain errors pass through transactions unchanged while the
/// retry layer can still see the database error inside.
pub trait TransactionError: From<DbError> + Send + 'static {
    /// The database error inside, if this error is one.
    fn as_db_error(&self) -> Option<&DbError>;
}

impl TransactionError for DbError {
    fn as_db_error(&self) -> Option<&DbError> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acquire_timeout_names_waiters_and_in_use() {
        let e = DbError::new(ErrorKind::AcquireTimeout {
            waited: Duration::from_millis(250),
            waiting: 7,
            in_use: 20,
            max: 20,
        });
        let text = e.to_string();
        assert!(text.contains("7 waiting"), "{text}");
        assert!(text.contains("20 of 20 in use"), "{text}");
        assert!(e.is_timeout());
        assert!(e.is_transient());
        assert!(e.trips_breaker());
    }

    #[test]
    fn classification_of_client_side_kinds() {
        let closed = DbError::new(ErrorKind::PoolClosed);
        assert!(closed.is_permanent());
        assert!(!closed.trips_breaker());
        let unknown = DbError::new(ErrorKind::CommitOutcomeUnknown);
        assert!(unknown.is_permanent(), "never retry an unknown commit");
        assert!(unknown.trips_breaker());
        assert!(unknown.is_connection_lost());
        let open = DbError::new(ErrorKind::CircuitOpen {
            retry_in: Duration::from_secs(1),
        });
        assert!(open.is_transient());
        assert!(
            !open.trips_breaker(),
            "rejections must not feed the breaker"
        );
        let rows = DbError::new(ErrorKind::UnexpectedRowCount {
            expected: "exactly one",
            got: 0,
        });
        assert!(rows.is_permanent());
        assert!(!rows.trips_breaker());
    }

    #[test]
    fn codes_are_classified() {
        for (code, breaker) in [
            (SqlState::CONNECTION_FAILURE, true),
            (SqlState::ADMIN_SHUTDOWN, true),
            (SqlState::CANNOT_CONNECT_NOW, true),
            (SqlState::TOO_MANY_CONNECTIONS, true),
            (SqlState::UNIQUE_VIOLATION, false),
            (SqlState::SYNTAX_ERROR, false),
            (SqlState::T_R_SERIALIZATION_FAILURE, false),
        ] {
            assert_eq!(
                is_overload_code(&code),
                breaker,
                "{} breaker classification",
                code.code()
            );
        }
    }

    #[test]
    fn transaction_error_for_db_error_is_identity() {
        let e = DbError::new(ErrorKind::Timeout);
        assert!(matches!(
            e.as_db_error().map(DbError::kind),
            Some(ErrorKind::Timeout)
        ));
    }
}

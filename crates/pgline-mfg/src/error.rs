//! The one error type of the domain.

use pgline_core::{DbError, ErrorKind, SqlState, TransactionError};

use crate::model::{EventType, PanelStatus};

/// Why a domain operation failed.
///
/// The first four variants are the caller's fault (HTTP 4xx): their `Display`
/// is safe to show to the caller. The last two carry a [`DbError`] as their
/// [`source`](std::error::Error::source) and display only a generic phrase, so
/// that nothing about the database reaches a response body by accident; log
/// the source chain instead.
///
/// | variant | HTTP |
/// |---|---|
/// | `Validation` | 422 (or 400) |
/// | `NotFound` | 404 |
/// | `Conflict`, `InvalidTransition` | 409 |
/// | `Unavailable` | 503 with `Retry-After` |
/// | `Database` | 500, without details |
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DomainError {
    /// The input breaks a rule; nothing was written.
    #[error("invalid {field}: {message}")]
    Validation {
        /// The offending field, e.g. `barcode` or `panels[3].barcode`.
        field: String,
        /// What is wrong and what is accepted.
        message: String,
    },
    /// The thing asked for does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, e.g. `panel P-0001`.
        what: String,
    },
    /// Something with the same unique key exists already; nothing was written.
    #[error("{what} already exists")]
    Conflict {
        /// What collided, e.g. `order MO-1` or `panel P-0001`.
        what: String,
    },
    /// The panel's status does not allow the event; nothing was written.
    #[error("a {event} event is not allowed for a panel that is {from}")]
    InvalidTransition {
        /// The panel's status.
        from: PanelStatus,
        /// The event refused.
        event: EventType,
    },
    /// The database is unreachable, overloaded, or the request may succeed
    /// if repeated (connection lost, timeout, pool closing, serialization
    /// failure or deadlock).
    #[error("database unavailable")]
    Unavailable(#[source] DbError),
    /// Any other database failure: a bug or a schema out of date.
    #[error("database error")]
    Database(#[source] DbError),
}

impl DomainError {
    /// A [`DomainError::Validation`].
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        DomainError::Validation {
            field: field.into(),
            message: message.into(),
        }
    }

    /// True for the caller's mistakes (validation, not found, conflict,
    /// invalid transition): repeating the same request cannot succeed.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            DomainError::Validation { .. }
                | DomainError::NotFound { .. }
                | DomainError::Conflict { .. }
                | DomainError::InvalidTransition { .. }
        )
    }

    /// True for [`DomainError::Unavailable`].
    pub fn is_unavailable(&self) -> bool {
        matches!(self, DomainError::Unavailable(_))
    }

    /// A corrupt or unexpected value read back from the database.
    pub(crate) fn unexpected(what: &'static str) -> Self {
        DomainError::Database(DbError::other(
            ErrorKind::Query,
            format!("unexpected value in {what}"),
        ))
    }
}

/// What a unique constraint of the schema protects, for conflict messages the
/// store could not make more precise.
fn conflict_subject(constraint: &str) -> Option<&'static str> {
    match constraint {
        "manufacturing_orders_order_number_key" => Some("order number"),
        "panels_barcode_key" => Some("panel barcode"),
        "stations_pkey" => Some("station"),
        _ => None,
    }
}

impl From<DbError> for DomainError {
    /// Classifies a database error: unique violations of the schema's keys
    /// become [`Conflict`](DomainError::Conflict), an unknown station becomes
    /// [`Validation`](DomainError::Validation), infrastructure trouble
    /// ([`DbError::is_transient`], [`DbError::trips_breaker`], a closing pool)
    /// becomes [`Unavailable`](DomainError::Unavailable), anything else
    /// [`Database`](DomainError::Database).
    fn from(e: DbError) -> Self {
        if e.is_unique_violation()
            && let Some(what) = e.constraint().and_then(conflict_subject)
        {
            return DomainError::Conflict {
                what: what.to_string(),
            };
        }
        if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION)
            && e.constraint() == Some("barcode_events_station_fkey")
        {
            return DomainError::validation("station", "unknown station");
        }
        if e.is_transient() || e.trips_breaker() || matches!(e.kind(), ErrorKind::PoolClosed) {
            DomainError::Unavailable(e)
        } else {
            DomainError::Database(e)
        }
    }
}

impl TransactionError for DomainError {
    fn as_db_error(&self) -> Option<&DbError> {
        match self {
            DomainError::Unavailable(e) | DomainError::Database(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn infrastructure_errors_are_unavailable() {
        for kind in [
            ErrorKind::AcquireTimeout {
                waited: Duration::from_secs(1),
                waiting: 1,
                in_use: 2,
                max: 2,
            },
            ErrorKind::Connect,
            ErrorKind::Timeout,
            ErrorKind::PoolClosed,
            ErrorKind::CircuitOpen {
                retry_in: Duration::from_secs(1),
            },
            ErrorKind::CommitOutcomeUnknown,
        ] {
            let e = DomainError::from(DbError::new(kind.clone()));
            assert!(e.is_unavailable(), "{kind:?} -> {e:?}");
            assert!(e.as_db_error().is_some());
        }
    }

    #[test]
    fn request_errors_are_database_errors() {
        let e = DomainError::from(DbError::new(ErrorKind::UnexpectedRowCount {
            expected: "exactly one",
            got: 2,
        }));
        assert!(matches!(e, DomainError::Database(_)), "{e:?}");
        assert_eq!(e.to_string(), "database error", "no internals in Display");
        assert!(std::error::Error::source(&e).is_some(), "the cause is kept");
    }

    #[test]
    fn client_errors_carry_no_database_error() {
        let e = DomainError::validation("barcode", "too long");
        assert!(e.is_client_error());
        assert!(e.as_db_error().is_none());
        assert_eq!(e.to_string(), "invalid barcode: too long");
        let e = DomainError::InvalidTransition {
            from: PanelStatus::Completed,
            event: EventType::Scanned,
        };
        assert_eq!(
            e.to_string(),
            "a SCANNED event is not allowed for a panel that is COMPLETED"
        );
    }

    #[test]
    fn known_constraints_name_the_conflict() {
        assert_eq!(
            conflict_subject("panels_barcode_key"),
            Some("panel barcode")
        );
        assert_eq!(
            conflict_subject("manufacturing_orders_order_number_key"),
            Some("order number")
        );
        assert_eq!(conflict_subject("something_else"), None);
    }
}

//! Health and close reports.

use std::time::Duration;

use serde::Serialize;

use crate::stats::PoolStats;

/// The answer to "is the database usable?" (the seed's `getHealthStatus`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct HealthReport {
    /// A connection was borrowed and answered a trivial query.
    pub healthy: bool,
    /// How long borrowing and the query took, in milliseconds.
    pub response_time_ms: f64,
    /// The pool at the time of the check.
    pub stats: PoolStats,
    /// The backend: `async` or `sync`.
    pub backend: &'static str,
    /// Why the check failed, without secrets or values.
    pub error: Option<String>,
}

impl HealthReport {
    /// A report from its parts.
    pub fn new(
        healthy: bool,
        response_time: Duration,
        stats: PoolStats,
        backend: &'static str,
        error: Option<String>,
    ) -> Self {
        Self {
            healthy,
            response_time_ms: response_time.as_secs_f64() * 1000.0,
            stats,
            backend,
            error,
        }
    }
}

/// What `close()` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CloseReport {
    /// Idle connections closed at once.
    pub closed_idle: u32,
    /// Connections in use that were returned before the deadline and closed.
    pub closed_after_return: u32,
    /// Connections still in use at the deadline (closed when they come back).
    pub still_in_use: u32,
    /// Waiters that were refused because the pool closed.
    pub refused_waiters: u32,
    /// How long closing took, in milliseconds.
    pub elapsed_ms: u64,
}

impl CloseReport {
    /// A report from its parts.
    pub fn new(
        closed_idle: u32,
        closed_after_return: u32,
        still_in_use: u32,
        refused_waiters: u32,
        elapsed: Duration,
    ) -> Self {
        Self {
            closed_idle,
            closed_after_return,
            still_in_use,
            refused_waiters,
            elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

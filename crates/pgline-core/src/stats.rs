//! Pool statistics: plain data, the same fields from every backend.

use serde::Serialize;

/// Connections closed, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ClosedCounts {
    /// Closed after the idle timeout.
    pub idle: u64,
    /// Closed at the end of their lifetime.
    pub lifetime: u64,
    /// Closed because they were broken or could not be cleaned.
    pub broken: u64,
    /// Closed because the pool closed.
    pub closed: u64,
}

impl ClosedCounts {
    /// All closed connections.
    pub fn total(&self) -> u64 {
        self.idle + self.lifetime + self.broken + self.closed
    }

    /// Counts of each reason, for backends that keep them elsewhere.
    pub fn new(idle: u64, lifetime: u64, broken: u64, closed: u64) -> Self {
        Self {
            idle,
            lifetime,
            broken,
            closed,
        }
    }
}

/// A snapshot of a pool. Gauges describe the moment it was taken; counters
/// (`*_total`) only grow over the pool's life.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PoolStats {
    /// Open connections: idle, in use, or being reset after use.
    pub total: u32,
    /// Open connections waiting in the pool.
    pub idle: u32,
    /// Connections held by callers.
    pub in_use: u32,
    /// Callers waiting for a connection.
    pub waiting: u32,
    /// Maximum size.
    pub max: u32,
    /// Minimum idle connections the pool keeps when load allows.
    pub min: u32,
    /// `in_use / max` in percent.
    pub utilization_percent: f64,
    /// Connections handed out.
    pub acquired_total: u64,
    /// Connections opened.
    pub created_total: u64,
    /// Connections closed, by reason.
    pub closed_total: ClosedCounts,
    /// Acquires that hit the deadline.
    pub acquire_timeouts_total: u64,
    /// Errors seen by the pool (failed connects, validations, resets, timeouts).
    pub errors_total: u64,
    /// Sum of all acquire waits, in microseconds.
    pub wait_time_total_us: u64,
    /// Longest acquire wait, in microseconds.
    pub wait_time_max_us: u64,
}

impl PoolStats {
    /// Builds the gauges and derives utilization; counters start at zero.
    pub fn new(total: u32, idle: u32, in_use: u32, waiting: u32, min: u32, max: u32) -> Self {
        Self {
            total,
            idle,
            in_use,
            waiting,
            min,
            max,
            utilization_percent: utilization(in_use, max),
            ..Self::default()
        }
    }

    /// Mean acquire wait in microseconds (0 before the first acquire).
    pub fn wait_time_mean_us(&self) -> u64 {
        self.wait_time_total_us
            .checked_div(self.acquired_total + self.acquire_timeouts_total)
            .unwrap_or(0)
    }
}

/// `in_use / max` in percent, 0 for an empty pool.
pub fn utilization(in_use: u32, max: u32) -> f64 {
    if max == 0 {
        0.0
    } else {
        f64::from(in_use) * 100.0 / f64::from(max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utilization_is_in_use_over_max() {
        let s = PoolStats::new(10, 2, 8, 0, 2, 10);
        assert!((s.utilization_percent - 80.0).abs() < f64::EPSILON);
        assert_eq!(PoolStats::new(0, 0, 0, 0, 0, 0).utilization_percent, 0.0);
    }

    #[test]
    fn mean_wait_handles_zero() {
        let mut s = PoolStats::default();
        assert_eq!(s.wait_time_mean_us(), 0);
        s.acquired_total = 4;
        s.wait_time_total_us = 100;
        assert_eq!(s.wait_time_mean_us(), 25);
    }
}

//! Lock-free counters and gauges behind [`Pool::stats`](crate::Pool::stats).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use pgline_core::{ClosedCounts, PoolStats, RemoveReason};

/// Counters bumped on the hot paths and gauges mirrored from the locked state,
/// so reading statistics never takes the pool's lock.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) acquired: AtomicU64,
    pub(crate) created: AtomicU64,
    pub(crate) closed_idle: AtomicU64,
    pub(crate) closed_lifetime: AtomicU64,
    pub(crate) closed_broken: AtomicU64,
    pub(crate) closed_closed: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) wait_total_us: AtomicU64,
    pub(crate) wait_max_us: AtomicU64,
    pub(crate) total: AtomicU32,
    pub(crate) idle: AtomicU32,
    pub(crate) in_use: AtomicU32,
    pub(crate) waiting: AtomicU32,
}

impl Counters {
    pub(crate) fn record_wait(&self, wait: Duration) {
        let us = u64::try_from(wait.as_micros()).unwrap_or(u64::MAX);
        if us > 0 {
            self.wait_total_us.fetch_add(us, Relaxed);
            self.wait_max_us.fetch_max(us, Relaxed);
        }
    }

    pub(crate) fn record_closed(&self, reason: RemoveReason) {
        let counter = match reason {
            RemoveReason::Idle => &self.closed_idle,
            RemoveReason::Lifetime => &self.closed_lifetime,
            RemoveReason::Closed => &self.closed_closed,
            _ => &self.closed_broken,
        };
        counter.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self, min: u32, max: u32) -> PoolStats {
        let mut stats = PoolStats::new(
            self.total.load(Relaxed),
            self.idle.load(Relaxed),
            self.in_use.load(Relaxed),
            self.waiting.load(Relaxed),
            min,
            max,
        );
        stats.acquired_total = self.acquired.load(Relaxed);
        stats.created_total = self.created.load(Relaxed);
        stats.closed_total = ClosedCounts::new(
            self.closed_idle.load(Relaxed),
            self.closed_lifetime.load(Relaxed),
            self.closed_broken.load(Relaxed),
            self.closed_closed.load(Relaxed),
        );
        stats.acquire_timeouts_total = self.timeouts.load(Relaxed);
        stats.errors_total = self.errors.load(Relaxed);
        stats.wait_time_total_us = self.wait_total_us.load(Relaxed);
        stats.wait_time_max_us = self.wait_max_us.load(Relaxed);
        stats
    }
}

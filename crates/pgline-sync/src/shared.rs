//! What the pool, its r2d2 handlers and every connection share: the listener,
//! counters, the closed flag and a wake-up for callers that wait on the pool.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use pgline_core::{ClosedCounts, PoolEvent, PoolListener, PoolStats, RemoveReason};

use crate::options::PoolOptions;

/// Counters bumped on the hot paths; gauges come from r2d2's `State` and
/// [`Shared::waiting`].
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
    /// Checkouts that skipped the validation round trip (recently used).
    pub(crate) validations_skipped: AtomicU64,
    /// Checkouts that paid for it.
    pub(crate) validations_run: AtomicU64,
}

impl Counters {
    pub(crate) fn record_wait(&self, wait: Duration) {
        let us = u64::try_from(wait.as_micros()).unwrap_or(u64::MAX);
        if us > 0 {
            self.wait_total_us.fetch_add(us, Relaxed);
            // Read first: the maximum rarely moves, and a write per checkout
            // would bounce the cache line between threads.
            if us > self.wait_max_us.load(Relaxed) {
                self.wait_max_us.fetch_max(us, Relaxed);
            }
        }
    }

    fn record_closed(&self, reason: RemoveReason) {
        let counter = match reason {
            RemoveReason::Idle => &self.closed_idle,
            RemoveReason::Lifetime => &self.closed_lifetime,
            RemoveReason::Closed => &self.closed_closed,
            _ => &self.closed_broken,
        };
        counter.fetch_add(1, Relaxed);
    }

    /// A snapshot with the gauges given (r2d2's `State` and the waiters).
    pub(crate) fn snapshot(
        &self,
        total: u32,
        idle: u32,
        waiting: u32,
        min: u32,
        max: u32,
    ) -> PoolStats {
        let mut stats = PoolStats::new(total, idle, total.saturating_sub(idle), waiting, min, max);
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

/// State shared by the pool, its r2d2 handlers and its connections. It never
/// refers to the r2d2 pool itself, so there is no reference cycle.
pub(crate) struct Shared {
    listener: Option<Arc<dyn PoolListener>>,
    pub(crate) counters: Counters,
    closed: AtomicBool,
    /// Callers inside `get` (waiting for r2d2 or about to get a connection).
    pub(crate) waiting: AtomicU32,
    /// The last connection or validation error, for acquire-timeout messages.
    last_error: Mutex<Option<String>>,
    pub(crate) validation_threshold: Duration,
    pub(crate) validation_timeout: Duration,
    pub(crate) max_lifetime: Option<Duration>,
    /// Callers blocked in `initialize` or `close`; returns and new
    /// connections only notify when there is one.
    watchers: AtomicU32,
    changed_lock: Mutex<()>,
    changed: Condvar,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("closed", &self.is_closed())
            .field("listener", &self.listener.is_some())
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn new(options: &PoolOptions) -> Self {
        Self {
            listener: options.listener.clone(),
            counters: Counters::default(),
            closed: AtomicBool::new(false),
            waiting: AtomicU32::new(0),
            last_error: Mutex::new(None),
            validation_threshold: options.validation_threshold,
            validation_timeout: options.validation_timeout,
            max_lifetime: options.max_lifetime,
            watchers: AtomicU32::new(0),
            changed_lock: Mutex::new(()),
            changed: Condvar::new(),
        }
    }

    #[inline]
    pub(crate) fn emit(&self, event: impl FnOnce() -> PoolEvent) {
        if let Some(listener) = &self.listener {
            listener.on_event(&event());
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    /// Marks the pool closed; true for the first caller.
    pub(crate) fn close(&self) -> bool {
        !self.closed.swap(true, Relaxed)
    }

    /// Accounts for a connection that left the pool.
    pub(crate) fn removed(&self, connection_id: u64, reason: RemoveReason) {
        self.counters.record_closed(reason);
        self.emit(|| PoolEvent::Remove {
            connection_id,
            reason,
        });
    }

    /// Why a connection is being closed when nothing marked it: the pool
    /// closed, it outlived its lifetime, or (r2d2's reaper) it idled too long.
    pub(crate) fn inferred_reason(&self, created_at: Instant) -> RemoveReason {
        if self.is_closed() {
            RemoveReason::Closed
        } else if self
            .max_lifetime
            .is_some_and(|life| created_at.elapsed() >= life)
        {
            RemoveReason::Lifetime
        } else {
            RemoveReason::Idle
        }
    }

    pub(crate) fn set_last_error(&self, message: String) {
        *lock(&self.last_error) = Some(message);
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }

    pub(crate) fn clear_last_error(&self) {
        let mut last = lock(&self.last_error);
        if last.is_some() {
            *last = None;
        }
    }

    /// True while a caller waits for changes.
    pub(crate) fn is_watched(&self) -> bool {
        self.watchers.load(Relaxed) > 0
    }

    /// Wakes callers blocked in [`Watch::wait`], if there are any.
    pub(crate) fn notify_changed(&self) {
        if self.is_watched() {
            let _guard = lock(&self.changed_lock);
            self.changed.notify_all();
        }
    }

    /// Registers interest in changes for the guard's lifetime.
    pub(crate) fn watch(&self) -> Watch<'_> {
        self.watchers.fetch_add(1, Relaxed);
        Watch(self)
    }
}

/// Interest in pool changes (see [`Shared::watch`]).
pub(crate) struct Watch<'a>(&'a Shared);

impl Watch<'_> {
    /// Blocks until something changed or `timeout` passed. A change that
    /// happens just before the wait is seen at the next call: callers wait in
    /// short slices and re-check.
    pub(crate) fn wait(&self, timeout: Duration) {
        let guard = lock(&self.0.changed_lock);
        let _ = self.0.changed.wait_timeout(guard, timeout);
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Relaxed);
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No user code runs under these locks: a poisoned one is still consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

//! The pool: one lock around IO-free bookkeeping, a FIFO queue of waiters with
//! direct hand-off, background connection creation and maintenance.
//!
//! Every state change happens under `Inner::state` and never awaits; IO
//! (connect, validate, reset, close) happens after the lock is released, on
//! the caller's task or on a spawned one.
//!
//! Acquire deadlines are kept by one expiry task per pool, not by a timer per
//! waiter: every waiter has the same timeout and joins at the back, so the
//! queue is ordered by deadline and the task only ever sleeps until the
//! front's. A waiter costs a queue entry and a oneshot channel; registering and
//! cancelling a tokio timer per acquire was the largest cost of a contended
//! hand-off (see docs/benchmarks.md).

use std::collections::{HashMap, VecDeque};
use std::panic::Location;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use pgline_core::{CloseReport, DbError, ErrorKind, PoolEvent, PoolStats, RemoveReason};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::manager::Manager;
use crate::options::PoolOptions;
use crate::pooled::Pooled;
use crate::stats::Counters;

/// A connection with the pool's bookkeeping.
pub(crate) struct Slot<C> {
    pub(crate) conn: C,
    pub(crate) id: u64,
    pub(crate) expires: Option<Instant>,
    pub(crate) last_used: Instant,
}

struct Waiter<C> {
    id: u64,
    /// When this waiter's acquire timeout ends; non-decreasing along the queue
    /// (up to the clock skew between tasks that enqueue at the same moment).
    deadline: Instant,
    tx: oneshot::Sender<Handoff<C>>,
}

/// What a waiter receives: a connection, or word that its deadline passed.
/// A dropped sender means the pool closed.
enum Handoff<C> {
    Slot(Slot<C>),
    Expired,
}

/// Where a connection comes from when it is put (back) into the pool.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Returned by a caller.
    Use,
    /// Returned by the reset task.
    Reset,
    /// Freshly opened.
    New,
}

struct State<C> {
    /// Idle connections; pushed and popped at the back (LIFO keeps few
    /// connections hot so the idle timeout can reap the rest), reaped from the front.
    idle: VecDeque<Slot<C>>,
    /// Callers waiting, oldest first.
    waiters: VecDeque<Waiter<C>>,
    /// Established connections: idle + in use + resetting.
    open: u32,
    /// Connections being opened.
    pending: u32,
    in_use: u32,
    resetting: u32,
    closed: bool,
    next_waiter: u64,
    last_error: Option<String>,
}

pub(crate) struct LeakEntry {
    location: &'static Location<'static>,
    acquired_at: Instant,
    warned: bool,
}

pub(crate) struct Inner<M: Manager> {
    pub(crate) manager: M,
    pub(crate) options: PoolOptions,
    state: Mutex<State<M::Connection>>,
    pub(crate) counters: Counters,
    runtime: tokio::runtime::Handle,
    next_id: AtomicU64,
    /// Woken when connections come back or open, for `initialize` and `close`.
    released: Notify,
    /// How many `initialize`/`close` calls listen on `released` (the hot path
    /// skips the notification when nobody does).
    watchers: AtomicU32,
    /// The maintenance and waiter-expiry tasks, aborted on close and drop.
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Wakes the expiry task when the queue goes from empty to non-empty.
    queue_started: Arc<Notify>,
    pub(crate) leaks: Option<Mutex<HashMap<u64, LeakEntry>>>,
    initialized: AtomicBool,
}

/// An async connection pool over any [`Manager`]; `PgPool` is the PostgreSQL one.
///
/// Cloning is cheap (an `Arc`); all clones share one pool. See the crate docs
/// for the design.
pub struct Pool<M: Manager> {
    pub(crate) inner: Arc<Inner<M>>,
}

impl<M: Manager> Clone for Pool<M> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<M: Manager> std::fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("options", &self.inner.options)
            .field("stats", &self.stats())
            .finish()
    }
}

impl<M: Manager> Pool<M> {
    /// Creates a pool and starts its maintenance task; opens no connection yet
    /// (call [`initialize`](Self::initialize) to open `min_idle` of them first).
    ///
    /// Must be called inside a tokio runtime; the pool spawns its background
    /// work on that runtime.
    pub fn new(manager: M, options: PoolOptions) -> Result<Self, DbError> {
        options.validate().map_err(|message| {
            DbError::new(ErrorKind::Rejected)
                .with_context(format!("invalid pool options: {message}"))
        })?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            DbError::new(ErrorKind::Rejected)
                .with_context("the pool must be created inside a tokio runtime")
        })?;
        let leaks = options.leak_detection.map(|_| Mutex::new(HashMap::new()));
        let inner = Arc::new(Inner {
            manager,
            options,
            state: Mutex::new(State {
                idle: VecDeque::new(),
                waiters: VecDeque::new(),
                open: 0,
                pending: 0,
                in_use: 0,
                resetting: 0,
                closed: false,
                next_waiter: 0,
                last_error: None,
            }),
            counters: Counters::default(),
            runtime,
            next_id: AtomicU64::new(1),
            released: Notify::new(),
            watchers: AtomicU32::new(0),
            tasks: Mutex::new(Vec::new()),
            queue_started: Arc::new(Notify::new()),
            leaks,
            initialized: AtomicBool::new(false),
        });
        let task = inner.runtime.spawn(maintenance_loop(
            Arc::downgrade(&inner),
            inner.options.maintenance_interval,
        ));
        let expiry = inner.runtime.spawn(expiry_loop(
            Arc::downgrade(&inner),
            Arc::clone(&inner.queue_started),
        ));
        *lock(&inner.tasks) = vec![task, expiry];
        Ok(Self { inner })
    }

    /// Opens `min_idle` connections and returns when they are idle in the
    /// pool. Fails with the last connection error when they cannot be opened
    /// within the acquire timeout; the pool keeps trying in the background.
    pub async fn initialize(&self) -> Result<(), DbError> {
        self.initialize_within(self.inner.options.acquire_timeout)
            .await
    }

    /// Like [`initialize`](Self::initialize) with its own bound on the wait
    /// (a service in development may give up sooner and run degraded while
    /// the pool keeps connecting in the background).
    pub async fn initialize_within(&self, limit: Duration) -> Result<(), DbError> {
        let deadline = Instant::now() + limit;
        let min = self.inner.options.min_idle;
        let _watch = Watch::new(&self.inner.watchers);
        {
            let mut st = self.inner.lock_state();
            self.inner.refill(&mut st);
            self.inner.publish(&st);
        }
        loop {
            let notified = self.inner.released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let st = self.inner.lock_state();
                if st.closed {
                    return Err(DbError::new(ErrorKind::PoolClosed));
                }
                if st.idle.len() as u32 + st.in_use >= min {
                    self.inner.initialized.store(true, Relaxed);
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    let last = st.last_error.clone().unwrap_or_else(|| "no answer".into());
                    return Err(DbError::new(ErrorKind::Connect).with_context(format!(
                        "could not open {min} connections within {limit:?}: {last}"
                    )));
                }
            }
            // Woken by each new connection; the sleep bounds the wait.
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    /// Borrows a connection, waiting in FIFO order up to the acquire timeout.
    ///
    /// The returned guard gives the connection back when dropped. A
    /// connection idle longer than the validation threshold is checked first;
    /// broken or expired ones are never handed out.
    #[track_caller]
    pub fn acquire(&self) -> impl Future<Output = Result<Pooled<M>, DbError>> + Send + '_ {
        let location = Location::caller();
        self.inner.acquire(location)
    }

    /// A snapshot of the statistics; reads atomics only, never the lock.
    pub fn stats(&self) -> PoolStats {
        self.inner
            .counters
            .snapshot(self.inner.options.min_idle, self.inner.options.max_size)
    }

    /// The options the pool runs with.
    pub fn options(&self) -> &PoolOptions {
        &self.inner.options
    }

    /// The manager (backend) of this pool.
    pub fn manager(&self) -> &M {
        &self.inner.manager
    }

    /// True once [`close`](Self::close) has been called.
    pub fn is_closed(&self) -> bool {
        self.inner.lock_state().closed
    }

    /// Closes the pool: new acquires fail with `PoolClosed`, waiters are
    /// refused, idle connections close at once, connections in use are waited
    /// for up to `timeout` (and closed whenever they come back), and the
    /// maintenance task stops.
    pub async fn close(&self, timeout: Duration) -> CloseReport {
        let started = Instant::now();
        let deadline = started + timeout;
        let (idle, waiters, busy_at_start) = {
            let mut st = self.inner.lock_state();
            st.closed = true;
            let idle: Vec<_> = st.idle.drain(..).collect();
            let waiters: Vec<_> = st.waiters.drain(..).collect();
            st.open -= idle.len() as u32;
            let busy = st.in_use + st.resetting;
            self.inner.publish(&st);
            (idle, waiters, busy)
        };
        for task in lock(&self.inner.tasks).drain(..) {
            task.abort();
        }
        let _watch = Watch::new(&self.inner.watchers);
        let refused = waiters.len() as u32;
        drop(waiters); // each waiter's receiver fails: it reports PoolClosed
        let closed_idle = idle.len() as u32;
        for slot in idle {
            self.inner.removed(slot.id, RemoveReason::Closed);
        }
        let still = loop {
            let notified = self.inner.released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let busy = {
                let st = self.inner.lock_state();
                st.in_use + st.resetting + st.pending
            };
            if busy == 0 || Instant::now() >= deadline {
                break busy;
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        };
        let report = CloseReport::new(
            closed_idle,
            busy_at_start.saturating_sub(still),
            still,
            refused,
            started.elapsed(),
        );
        tracing::info!(
            closed_idle = report.closed_idle,
            closed_after_return = report.closed_after_return,
            still_in_use = report.still_in_use,
            refused_waiters = report.refused_waiters,
            "pool closed"
        );
        report
    }
}

impl<M: Manager> Drop for Inner<M> {
    fn drop(&mut self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

/// Registers interest in `Inner::released` for its lifetime.
struct Watch<'a>(&'a AtomicU32);

impl<'a> Watch<'a> {
    fn new(counter: &'a AtomicU32) -> Self {
        counter.fetch_add(1, Relaxed);
        Self(counter)
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the bookkeeping half-done
    // (no user code runs under it), so a poisoned lock is still consistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

enum Candidate<C> {
    /// Popped from the idle list; may need validation.
    Idle(Slot<C>),
    /// Handed over by a returning caller or a fresh connect: just used or new.
    HandedOff(Slot<C>),
}

impl<M: Manager> Inner<M> {
    fn lock_state(&self) -> MutexGuard<'_, State<M::Connection>> {
        lock(&self.state)
    }

    fn wake_watchers(&self) {
        if self.watchers.load(Relaxed) > 0 {
            self.released.notify_waiters();
        }
    }

    fn publish(&self, st: &State<M::Connection>) {
        let c = &self.counters;
        c.total.store(st.open, Relaxed);
        c.idle.store(st.idle.len() as u32, Relaxed);
        c.in_use.store(st.in_use, Relaxed);
        c.waiting.store(st.waiters.len() as u32, Relaxed);
    }

    #[inline]
    pub(crate) fn emit(&self, event: impl FnOnce() -> PoolEvent) {
        if let Some(listener) = &self.options.listener {
            listener.on_event(&event());
        }
    }

    async fn acquire(
        self: &Arc<Self>,
        location: &'static Location<'static>,
    ) -> Result<Pooled<M>, DbError> {
        let start = Instant::now();
        let deadline = start + self.options.acquire_timeout;
        // Clock reads are a measurable share of an uncontended acquire (see
        // docs/benchmarks.md): the fast path reads the clock once and reuses
        // that reading; anything that may have waited reads it again.
        let mut fresh = true;
        loop {
            // After a connection failed its check, this caller keeps its turn:
            // it is served before the queue (`!fresh`).
            let candidate = match self.take_or_enqueue(deadline, !fresh)? {
                Ok(slot) => Candidate::Idle(slot),
                Err((id, rx)) => {
                    // Cancellation: the guard removes the waiter and returns a
                    // connection that was handed over but not yet received.
                    let mut guard = WaitGuard {
                        inner: self,
                        id,
                        rx: Some(rx),
                    };
                    match guard.wait().await {
                        WaitOutcome::Slot(slot) => Candidate::HandedOff(slot),
                        WaitOutcome::Closed => return Err(DbError::new(ErrorKind::PoolClosed)),
                        WaitOutcome::TimedOut => {
                            drop(guard);
                            return Err(self.timeout_error(start));
                        }
                    }
                }
            };
            // From here the connection counts as in use; the vetting guard
            // discards it if this future is dropped mid-validation.
            let from_idle_at_once = fresh && matches!(candidate, Candidate::Idle(_));
            fresh = false;
            let mut vetting = Vetting {
                inner: self,
                slot: None,
            };
            let slot = match candidate {
                Candidate::Idle(slot) | Candidate::HandedOff(slot) => vetting.slot.insert(slot),
            };
            let mut now = if from_idle_at_once {
                start
            } else {
                Instant::now()
            };
            if self.manager.has_broken(&slot.conn) {
                vetting.discard(RemoveReason::Broken);
                continue;
            }
            if slot.expires.is_some_and(|e| e <= now) {
                vetting.discard(RemoveReason::Lifetime);
                continue;
            }
            if now.saturating_duration_since(slot.last_used) > self.options.validation_threshold {
                // Cancellation: dropping here drops `vetting`, which discards
                // the connection (it may have a check in flight).
                match tokio::time::timeout_at(deadline, self.manager.validate(&slot.conn)).await {
                    Ok(Ok(())) => now = Instant::now(),
                    Ok(Err(e)) => {
                        self.counters.errors.fetch_add(1, Relaxed);
                        self.emit(|| PoolEvent::Error {
                            kind: e.kind().clone(),
                            message: format!("validation failed: {e}"),
                        });
                        vetting.discard(RemoveReason::Broken);
                        continue;
                    }
                    Err(_) => {
                        vetting.discard(RemoveReason::Broken);
                        return Err(self.timeout_error(start));
                    }
                }
            }
            let slot = vetting
                .slot
                .take()
                .ok_or_else(|| DbError::new(ErrorKind::Rejected))?;
            let wait = now.saturating_duration_since(start);
            self.counters.acquired.fetch_add(1, Relaxed);
            self.counters.record_wait(wait);
            let id = slot.id;
            self.emit(|| PoolEvent::Acquire {
                connection_id: id,
                wait,
            });
            let acquired_at = now;
            if let Some(leaks) = &self.leaks {
                lock(leaks).insert(
                    id,
                    LeakEntry {
                        location,
                        acquired_at,
                        warned: false,
                    },
                );
            }
            return Ok(Pooled::new(Arc::clone(self), slot, acquired_at));
        }
    }

    /// Pops an idle connection when nobody is waiting (a newcomer never
    /// overtakes a waiter), else joins the queue. A caller whose handed-over
    /// connection failed its check (`retry`) was already at the head: it may
    /// take an idle connection at once and otherwise rejoins at the front,
    /// which also keeps the queue ordered by deadline.
    #[allow(clippy::type_complexity)]
    fn take_or_enqueue(
        self: &Arc<Self>,
        deadline: Instant,
        retry: bool,
    ) -> Result<
        Result<Slot<M::Connection>, (u64, oneshot::Receiver<Handoff<M::Connection>>)>,
        DbError,
    > {
        let mut st = self.lock_state();
        if st.closed {
            return Err(DbError::new(ErrorKind::PoolClosed));
        }
        if (retry || st.waiters.is_empty())
            && let Some(slot) = st.idle.pop_back()
        {
            st.in_use += 1;
            if (st.idle.len() as u32) < self.options.min_idle {
                self.refill(&mut st);
            }
            self.publish(&st);
            return Ok(Ok(slot));
        }
        let (tx, rx) = oneshot::channel();
        let id = st.next_waiter;
        st.next_waiter += 1;
        let first = st.waiters.is_empty() || retry;
        let waiter = Waiter { id, deadline, tx };
        if retry {
            st.waiters.push_front(waiter);
        } else {
            st.waiters.push_back(waiter);
        }
        self.refill(&mut st);
        self.publish(&st);
        drop(st);
        if first {
            // Later waiters have later deadlines: only a new front of the
            // queue can need the expiry task to wake sooner.
            self.queue_started.notify_one();
        }
        Ok(Err((id, rx)))
    }

    fn timeout_error(&self, start: Instant) -> DbError {
        self.counters.timeouts.fetch_add(1, Relaxed);
        self.counters.errors.fetch_add(1, Relaxed);
        let (waiting, in_use, last_error) = {
            let st = self.lock_state();
            (
                st.waiters.len() as u32 + 1,
                st.in_use,
                st.last_error.clone(),
            )
        };
        let waited = start.elapsed();
        self.counters.record_wait(waited);
        let mut error = DbError::new(ErrorKind::AcquireTimeout {
            waited,
            waiting,
            in_use,
            max: self.options.max_size,
        });
        if in_use == 0
            && let Some(last) = last_error
        {
            error = error.with_context(format!("last connection error: {last}"));
        }
        let kind = error.kind().clone();
        let message = error.to_string();
        self.emit(|| PoolEvent::Error { kind, message });
        error
    }

    /// Spawns connection attempts for the demand that capacity allows: one
    /// per waiter plus the idle deficit below `min_idle`, minus attempts
    /// already running.
    fn refill(self: &Arc<Self>, st: &mut State<M::Connection>) {
        if st.closed {
            return;
        }
        let demand =
            st.waiters.len() as u32 + self.options.min_idle.saturating_sub(st.idle.len() as u32);
        let want = demand.saturating_sub(st.pending);
        let room = self.options.max_size.saturating_sub(st.open + st.pending);
        let n = want.min(room);
        st.pending += n;
        for _ in 0..n {
            self.runtime.spawn(create_loop(Arc::downgrade(self)));
        }
    }

    /// Puts a connection into the pool: to the oldest live waiter, else idle.
    /// Broken or expired connections, and all of them once the pool is closed,
    /// are closed instead.
    pub(crate) fn put(self: &Arc<Self>, slot: Slot<M::Connection>, origin: Origin) {
        self.put_at(slot, origin, Instant::now());
    }

    /// [`put`](Self::put) with the clock already read at `now` (a release
    /// that read it for its event).
    pub(crate) fn put_at(
        self: &Arc<Self>,
        mut slot: Slot<M::Connection>,
        origin: Origin,
        now: Instant,
    ) {
        let retire = if self.manager.has_broken(&slot.conn) {
            Some(RemoveReason::Broken)
        } else if slot.expires.is_some_and(|e| e <= now) {
            Some(RemoveReason::Lifetime)
        } else {
            None
        };
        let mut st = self.lock_state();
        match origin {
            Origin::Use => st.in_use -= 1,
            Origin::Reset => st.resetting -= 1,
            Origin::New => {
                st.pending -= 1;
                st.open += 1;
            }
        }
        let retire = if st.closed {
            Some(RemoveReason::Closed)
        } else {
            retire
        };
        if let Some(reason) = retire {
            st.open -= 1;
            self.refill(&mut st);
            self.publish(&st);
            drop(st);
            self.wake_watchers();
            self.removed(slot.id, reason);
            return;
        }
        if origin == Origin::Use {
            slot.last_used = now;
        }
        while let Some(waiter) = st.waiters.pop_front() {
            match waiter.tx.send(Handoff::Slot(slot)) {
                Ok(()) => {
                    st.in_use += 1;
                    self.publish(&st);
                    drop(st);
                    self.wake_watchers();
                    return;
                }
                // That waiter gave up between its last check and now.
                Err(Handoff::Slot(back)) => slot = back,
                Err(Handoff::Expired) => unreachable!("only a slot was sent"),
            }
        }
        st.idle.push_back(slot);
        self.publish(&st);
        drop(st);
        self.wake_watchers();
    }

    /// Tells every waiter whose deadline has passed that it timed out and
    /// removes it from the queue; returns the front's deadline, if any.
    fn expire_waiters(&self, now: Instant) -> Option<Instant> {
        let mut st = self.lock_state();
        let mut expired = false;
        while st.waiters.front().is_some_and(|w| w.deadline <= now) {
            if let Some(w) = st.waiters.pop_front() {
                // A waiter that already left has dropped its receiver.
                let _ = w.tx.send(Handoff::Expired);
                expired = true;
            }
        }
        if expired {
            self.publish(&st);
        }
        st.waiters.front().map(|w| w.deadline)
    }

    /// Removes a connection that was counted in use (or vetting) without
    /// putting it back.
    fn discard_in_use(self: &Arc<Self>, slot: Slot<M::Connection>, reason: RemoveReason) {
        {
            let mut st = self.lock_state();
            st.in_use -= 1;
            st.open -= 1;
            self.refill(&mut st);
            self.publish(&st);
        }
        self.wake_watchers();
        self.removed(slot.id, reason);
        drop(slot);
    }

    /// Accounts for a removed connection (its slot is dropped by the caller).
    fn removed(&self, id: u64, reason: RemoveReason) {
        self.counters.record_closed(reason);
        self.emit(|| PoolEvent::Remove {
            connection_id: id,
            reason,
        });
    }

    /// Hands a returned connection that needs cleaning to a background reset.
    pub(crate) fn reset_then_put(self: &Arc<Self>, slot: Slot<M::Connection>) {
        {
            let mut st = self.lock_state();
            st.in_use -= 1;
            st.resetting += 1;
            self.publish(&st);
        }
        let inner = Arc::clone(self);
        self.runtime.spawn(async move {
            let outcome =
                tokio::time::timeout(inner.options.reset_timeout, inner.manager.reset(&slot.conn))
                    .await;
            match outcome {
                Ok(Ok(())) => inner.put(slot, Origin::Reset),
                Ok(Err(e)) => {
                    tracing::debug!(connection_id = slot.id, error = %e, "reset failed; closing connection");
                    inner.drop_resetting(slot);
                }
                Err(_) => {
                    tracing::debug!(connection_id = slot.id, "reset timed out; closing connection");
                    inner.drop_resetting(slot);
                }
            }
        });
    }

    fn drop_resetting(self: &Arc<Self>, slot: Slot<M::Connection>) {
        {
            let mut st = self.lock_state();
            st.resetting -= 1;
            st.open -= 1;
            self.refill(&mut st);
            self.publish(&st);
        }
        self.counters.errors.fetch_add(1, Relaxed);
        self.wake_watchers();
        self.removed(slot.id, RemoveReason::Broken);
    }

    fn new_slot(&self, mut conn: M::Connection) -> Slot<M::Connection> {
        let id = self.next_id.fetch_add(1, Relaxed);
        self.manager.set_id(&mut conn, id);
        let now = Instant::now();
        let expires = self.options.max_lifetime.map(|life| {
            let jitter = self.options.effective_jitter();
            let spread = if jitter.is_zero() {
                Duration::ZERO
            } else {
                jitter.mul_f64(fastrand::f64())
            };
            now + life.saturating_sub(spread)
        });
        Slot {
            conn,
            id,
            expires,
            last_used: now,
        }
    }

    /// Maintenance: close idle connections past the idle timeout (above
    /// `min_idle`) or their lifetime, refill to `min_idle`, warn about leaks.
    fn maintain(self: &Arc<Self>) {
        let now = Instant::now();
        let mut removed = Vec::new();
        {
            let mut st = self.lock_state();
            if st.closed {
                return;
            }
            let min = self.options.min_idle as usize;
            let mut i = 0;
            while i < st.idle.len() {
                let slot = &st.idle[i];
                let expired = slot.expires.is_some_and(|e| e <= now);
                let idle_too_long = self
                    .options
                    .idle_timeout
                    .is_some_and(|t| now.saturating_duration_since(slot.last_used) >= t);
                if expired || (idle_too_long && st.idle.len() > min) {
                    if let Some(slot) = st.idle.remove(i) {
                        let reason = if expired {
                            RemoveReason::Lifetime
                        } else {
                            RemoveReason::Idle
                        };
                        removed.push((slot, reason));
                    }
                    st.open -= 1;
                } else {
                    i += 1;
                }
            }
            self.refill(&mut st);
            self.publish(&st);
        }
        for (slot, reason) in removed {
            self.removed(slot.id, reason);
        }
        if let (Some(leaks), Some(threshold)) = (&self.leaks, self.options.leak_detection) {
            for (id, entry) in lock(leaks).iter_mut() {
                let held = now.saturating_duration_since(entry.acquired_at);
                if !entry.warned && held >= threshold {
                    entry.warned = true;
                    tracing::warn!(
                        connection_id = id,
                        held_ms = held.as_millis() as u64,
                        acquired_at = %entry.location,
                        "possible connection leak: connection held longer than the leak-detection threshold"
                    );
                }
            }
        }
    }
}

/// Runs maintenance every `interval` until the pool is dropped or closed.
async fn maintenance_loop<M: Manager>(pool: Weak<Inner<M>>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(inner) = pool.upgrade() else { return };
        inner.maintain();
    }
}

/// Ends the acquire of every waiter whose deadline passed, sleeping until
/// the front waiter's deadline or until a queue starts. Holds the pool only
/// weakly, so a dropped pool ends it.
async fn expiry_loop<M: Manager>(pool: Weak<Inner<M>>, queue_started: Arc<Notify>) {
    loop {
        let next = {
            let Some(inner) = pool.upgrade() else { return };
            inner.expire_waiters(Instant::now())
        };
        match next {
            // Woken early by a waiter that rejoins at the front (it may have
            // an earlier deadline than the one slept for).
            Some(deadline) => {
                let _ = tokio::time::timeout_at(deadline, queue_started.notified()).await;
            }
            // A permit stored by a waiter that enqueued after the check above
            // makes this return at once, so no first waiter is missed.
            None => queue_started.notified().await,
        }
    }
}

/// Opens one connection for the pool, retrying with backoff while there is
/// still demand for it. Runs on its own task, so a caller that gives up never
/// loses a half-opened connection.
async fn create_loop<M: Manager>(pool: Weak<Inner<M>>) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let Some(inner) = pool.upgrade() else { return };
        let started = Instant::now();
        let attempt =
            tokio::time::timeout(inner.options.connect_timeout, inner.manager.connect()).await;
        let error = match attempt {
            Ok(Ok(conn)) => {
                let slot = inner.new_slot(conn);
                inner.counters.created.fetch_add(1, Relaxed);
                let (id, duration) = (slot.id, started.elapsed());
                inner.emit(|| PoolEvent::Connect {
                    connection_id: id,
                    duration,
                });
                lock(&inner.state).last_error = None;
                inner.put(slot, Origin::New);
                return;
            }
            Ok(Err(e)) => e,
            Err(_) => DbError::new(ErrorKind::Connect).with_context(format!(
                "no connection within the connect timeout of {:?}",
                inner.options.connect_timeout
            )),
        };
        inner.counters.errors.fetch_add(1, Relaxed);
        let message = error.to_string();
        tracing::warn!(error = %message, "could not open a database connection");
        inner.emit(|| PoolEvent::Error {
            kind: error.kind().clone(),
            message: message.clone(),
        });
        {
            let mut st = inner.lock_state();
            st.last_error = Some(message);
            let demand = st.waiters.len() as u32
                + inner.options.min_idle.saturating_sub(st.idle.len() as u32);
            if st.closed || demand < st.pending {
                st.pending -= 1;
                inner.publish(&st);
                drop(st);
                inner.wake_watchers();
                return;
            }
        }
        drop(inner);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

enum WaitOutcome<C> {
    Slot(Slot<C>),
    Closed,
    TimedOut,
}

/// A place in the queue. Dropping it leaves the queue and returns any
/// connection that was handed over but not received.
struct WaitGuard<'a, M: Manager> {
    inner: &'a Arc<Inner<M>>,
    id: u64,
    rx: Option<oneshot::Receiver<Handoff<M::Connection>>>,
}

impl<M: Manager> WaitGuard<'_, M> {
    /// Waits for a hand-off; the expiry task ends the wait at the deadline.
    async fn wait(&mut self) -> WaitOutcome<M::Connection> {
        let Some(rx) = self.rx.as_mut() else {
            return WaitOutcome::Closed;
        };
        let outcome = match rx.await {
            Ok(Handoff::Slot(slot)) => WaitOutcome::Slot(slot),
            Ok(Handoff::Expired) => WaitOutcome::TimedOut,
            Err(_) => WaitOutcome::Closed,
        };
        // The sender has been taken out of the queue in every case.
        self.rx = None;
        outcome
    }

    fn leave_queue(&self) {
        let mut st = self.inner.lock_state();
        if let Some(pos) = st.waiters.iter().position(|w| w.id == self.id) {
            st.waiters.remove(pos);
            self.inner.publish(&st);
        }
    }
}

impl<M: Manager> Drop for WaitGuard<'_, M> {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            self.leave_queue();
            rx.close();
            if let Ok(Handoff::Slot(slot)) = rx.try_recv() {
                // Handed over (and counted in use) just before we gave up.
                self.inner.put(slot, Origin::Use);
            }
        }
    }
}

/// Holds a connection while it is checked before hand-out.
struct Vetting<'a, M: Manager> {
    inner: &'a Arc<Inner<M>>,
    slot: Option<Slot<M::Connection>>,
}

impl<M: Manager> Vetting<'_, M> {
    fn discard(&mut self, reason: RemoveReason) {
        if let Some(slot) = self.slot.take() {
            self.inner.discard_in_use(slot, reason);
        }
    }
}

impl<M: Manager> Drop for Vetting<'_, M> {
    fn drop(&mut self) {
        // Only reached with a slot when the acquire was cancelled mid-check:
        // the check may still be in flight, so the connection is not reused.
        self.discard(RemoveReason::Broken);
    }
}

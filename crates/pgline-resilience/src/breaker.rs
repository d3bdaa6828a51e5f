//! The circuit breaker: failsafe's state machine, with its gaps filled.
//!
//! - failsafe's half-open state admits every caller; a recovering database
//!   would get the whole load at once. [`Breaker`] lets one probe through at
//!   a time and rejects the rest as if open.
//! - failsafe's state is private; an [`Instrument`](failsafe::Instrument)
//!   mirrors it into an atomic that [`Breaker::state`] reads, and logs each
//!   change.
//! - failsafe's jittered backoffs panic below one second; the open period
//!   here is a constant backoff, which takes any duration (tests use
//!   milliseconds) and makes "next probe in" exact.
//!
//! failsafe reads `std::time::Instant`, not tokio's clock, so the mirror does
//! too; tests that need time to pass use real, short sleeps.

use std::future::Future;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use failsafe::backoff::{self, Constant};
use failsafe::failure_policy::{self, ConsecutiveFailures};
use failsafe::futures::CircuitBreaker as _;
use failsafe::{Config, StateMachine};
use pgline_core::{DbError, ErrorKind};
use serde::Serialize;

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls pass; failures are counted.
    Closed,
    /// Calls fail fast until the open period ends.
    Open,
    /// One probe call is let through; its outcome closes or reopens the breaker.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// 0 closed, 1 open, 2 half-open (the metric encoding).
    pub fn as_gauge(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }
}

/// Breaker settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BreakerOptions {
    /// Consecutive infrastructure failures that open the breaker. Default 5.
    pub failure_threshold: u32,
    /// How long the breaker stays open before a probe. Default 2 s.
    pub open_for: Duration,
}

impl Default for BreakerOptions {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(2),
        }
    }
}

impl BreakerOptions {
    /// Options with the given threshold and open period.
    pub fn new(failure_threshold: u32, open_for: Duration) -> Self {
        Self {
            failure_threshold: failure_threshold.max(1),
            open_for,
        }
    }
}

/// Receives breaker state changes.
pub type StateListener = Arc<dyn Fn(BreakerState) + Send + Sync>;

/// Counters of the breaker, for `/status` and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BreakerStats {
    /// Times the breaker opened.
    pub opened_total: u64,
    /// Calls rejected without reaching the database.
    pub rejected_total: u64,
}

struct Mirror {
    state: AtomicU8,
    opened_at: Mutex<Option<Instant>>,
    opened_total: AtomicU64,
    rejected_total: AtomicU64,
    listener: Option<StateListener>,
    name: &'static str,
}

impl Mirror {
    fn set(&self, state: BreakerState) {
        let previous = BreakerState::from_u8(self.state.swap(state.as_gauge(), AcqRel));
        if previous == state {
            return;
        }
        match state {
            BreakerState::Open => {
                tracing::warn!(
                    breaker = self.name,
                    "circuit breaker open: database calls fail fast"
                );
            }
            BreakerState::HalfOpen => {
                tracing::info!(
                    breaker = self.name,
                    "circuit breaker half-open: probing the database"
                );
            }
            BreakerState::Closed => {
                tracing::info!(
                    breaker = self.name,
                    "circuit breaker closed: database reachable"
                );
            }
        }
        if let Some(listener) = &self.listener {
            listener(state);
        }
    }
}

/// failsafe's hook, mirroring the state.
#[derive(Clone)]
struct Instrument(Arc<Mirror>);

impl failsafe::Instrument for Instrument {
    fn on_call_rejected(&self) {}

    fn on_open(&self) {
        *self
            .0
            .opened_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        self.0.opened_total.fetch_add(1, Relaxed);
        self.0.set(BreakerState::Open);
    }

    fn on_half_open(&self) {
        self.0.set(BreakerState::HalfOpen);
    }

    fn on_closed(&self) {
        self.0.set(BreakerState::Closed);
    }
}

type Machine = StateMachine<ConsecutiveFailures<Constant>, Instrument>;

/// A circuit breaker for database calls. Cloning shares the state.
#[derive(Clone)]
pub struct Breaker {
    machine: Machine,
    mirror: Arc<Mirror>,
    probe: Arc<AtomicBool>,
    options: BreakerOptions,
}

impl std::fmt::Debug for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker")
            .field("state", &self.state())
            .field("options", &self.options)
            .finish()
    }
}

impl Breaker {
    /// A closed breaker.
    pub fn new(options: BreakerOptions) -> Self {
        Self::with_listener(options, None)
    }

    /// A closed breaker whose state changes are also sent to `listener`.
    pub fn with_listener(options: BreakerOptions, listener: Option<StateListener>) -> Self {
        let mirror = Arc::new(Mirror {
            state: AtomicU8::new(BreakerState::Closed.as_gauge()),
            opened_at: Mutex::new(None),
            opened_total: AtomicU64::new(0),
            rejected_total: AtomicU64::new(0),
            listener,
            name: "database",
        });
        let policy = failure_policy::consecutive_failures(
            options.failure_threshold.max(1),
            backoff::constant(options.open_for),
        );
        let machine = Config::new()
            .failure_policy(policy)
            .instrument(Instrument(mirror.clone()))
            .build();
        Self {
            machine,
            mirror,
            probe: Arc::new(AtomicBool::new(false)),
            options,
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        BreakerState::from_u8(self.mirror.state.load(Acquire))
    }

    /// Counters.
    pub fn stats(&self) -> BreakerStats {
        BreakerStats {
            opened_total: self.mirror.opened_total.load(Relaxed),
            rejected_total: self.mirror.rejected_total.load(Relaxed),
        }
    }

    /// The settings.
    pub fn options(&self) -> &BreakerOptions {
        &self.options
    }

    /// Time until the next probe may go through (zero when closed or due).
    pub fn retry_in(&self) -> Duration {
        let opened_at = *self
            .mirror
            .opened_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match (self.state(), opened_at) {
            (BreakerState::Open, Some(at)) => self.options.open_for.saturating_sub(at.elapsed()),
            _ => Duration::ZERO,
        }
    }

    fn rejected(&self) -> DbError {
        self.mirror.rejected_total.fetch_add(1, Relaxed);
        let retry_in = match self.state() {
            // A probe is in flight: its answer is due within one open period.
            BreakerState::HalfOpen => self.options.open_for.min(Duration::from_millis(100)),
            _ => self.retry_in(),
        };
        DbError::new(ErrorKind::CircuitOpen { retry_in })
    }

    /// Runs `call` through the breaker. `trips` says which errors count as
    /// infrastructure failures; others count as successes (the database
    /// answered). Open: fails at once with `CircuitOpen`. Half-open: one
    /// caller probes, the others fail at once.
    pub async fn call<T, E, Fut>(&self, trips: impl Fn(&E) -> bool, call: Fut) -> Result<T, E>
    where
        Fut: Future<Output = Result<T, E>>,
        E: From<DbError>,
    {
        let probing = match self.state() {
            BreakerState::Closed => false,
            BreakerState::Open if self.retry_in() > Duration::ZERO => {
                return Err(self.rejected().into());
            }
            // Open and due, or half-open: one probe at a time.
            BreakerState::Open | BreakerState::HalfOpen => {
                if self
                    .probe
                    .compare_exchange(false, true, AcqRel, Acquire)
                    .is_err()
                {
                    return Err(self.rejected().into());
                }
                true
            }
        };
        // Cancellation: the guard frees the probe slot; failsafe records
        // nothing for a dropped call, so the next caller probes instead.
        let _slot = probing.then(|| ProbeSlot(&self.probe));
        match self.machine.call_with(trips, call).await {
            Ok(value) => Ok(value),
            Err(failsafe::Error::Inner(e)) => Err(e),
            Err(failsafe::Error::Rejected) => Err(self.rejected().into()),
        }
    }
}

struct ProbeSlot<'a>(&'a AtomicBool);

impl Drop for ProbeSlot<'_> {
    fn drop(&mut self) {
        self.0.store(false, Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    fn infra() -> DbError {
        DbError::new(ErrorKind::Connect)
    }

    async fn fail(b: &Breaker) -> Result<(), DbError> {
        b.call(DbError::trips_breaker, async { Err::<(), _>(infra()) })
            .await
    }

    async fn succeed(b: &Breaker) -> Result<(), DbError> {
        b.call(DbError::trips_breaker, async { Ok::<(), DbError>(()) })
            .await
    }

    #[tokio::test]
    async fn opens_after_consecutive_infrastructure_failures_and_fails_fast() {
        let b = Breaker::new(BreakerOptions::new(3, Duration::from_secs(30)));
        for _ in 0..3 {
            assert!(matches!(
                fail(&b).await.unwrap_err().kind(),
                ErrorKind::Connect
            ));
        }
        assert_eq!(b.state(), BreakerState::Open);
        let started = Instant::now();
        let err = succeed(&b).await.unwrap_err();
        let took = started.elapsed();
        match err.kind() {
            ErrorKind::CircuitOpen { retry_in } => {
                assert!(
                    *retry_in > Duration::from_secs(25) && *retry_in <= Duration::from_secs(30)
                );
            }
            other => panic!("expected CircuitOpen, got {other:?}"),
        }
        assert!(err.to_string().contains("next probe in"), "{err}");
        println!("rejected in {took:?}");
        assert_eq!(b.stats().opened_total, 1);
        assert_eq!(b.stats().rejected_total, 1);
    }

    #[tokio::test]
    async fn request_errors_never_trip_it() {
        let b = Breaker::new(BreakerOptions::new(2, Duration::from_secs(30)));
        for _ in 0..10 {
            let r: Result<(), DbError> = b
                .call(DbError::trips_breaker, async {
                    Err(DbError::new(ErrorKind::UnexpectedRowCount {
                        expected: "exactly one",
                        got: 0,
                    }))
                })
                .await;
            assert!(r.is_err());
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test]
    async fn a_success_resets_the_count() {
        let b = Breaker::new(BreakerOptions::new(3, Duration::from_secs(30)));
        for _ in 0..5 {
            let _ = fail(&b).await;
            let _ = fail(&b).await;
            succeed(&b).await.unwrap();
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn half_open_lets_exactly_one_probe_through_then_closes() {
        let changes = Arc::new(Mutex::new(Vec::new()));
        let sink = changes.clone();
        let b = Breaker::with_listener(
            BreakerOptions::new(1, Duration::from_millis(50)),
            Some(Arc::new(move |s| sink.lock().unwrap().push(s))),
        );
        let _ = fail(&b).await;
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::sleep(Duration::from_millis(60)).await; // real time: failsafe's clock
        let entered = Arc::new(AtomicU32::new(0));
        let release = Arc::new(tokio::sync::Notify::new());
        let mut calls = Vec::new();
        for _ in 0..10 {
            let (b, entered, release) = (b.clone(), entered.clone(), release.clone());
            calls.push(tokio::spawn(async move {
                b.call(DbError::trips_breaker, async {
                    entered.fetch_add(1, Relaxed);
                    release.notified().await;
                    Ok::<(), DbError>(())
                })
                .await
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            entered.load(Relaxed),
            1,
            "half-open admitted more than one probe"
        );
        release.notify_waiters();
        let mut ok = 0;
        let mut rejected = 0;
        for c in calls {
            match c.await.unwrap() {
                Ok(()) => ok += 1,
                Err(e) if matches!(e.kind(), ErrorKind::CircuitOpen { .. }) => rejected += 1,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!((ok, rejected), (1, 9));
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(
            *changes.lock().unwrap(),
            [
                BreakerState::Open,
                BreakerState::HalfOpen,
                BreakerState::Closed
            ]
        );
    }

    #[tokio::test]
    async fn a_failed_probe_reopens() {
        let b = Breaker::new(BreakerOptions::new(1, Duration::from_millis(20)));
        let _ = fail(&b).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        let _ = fail(&b).await; // the probe
        assert_eq!(b.state(), BreakerState::Open);
        assert!(matches!(
            succeed(&b).await.unwrap_err().kind(),
            ErrorKind::CircuitOpen { .. }
        ));
    }

    #[tokio::test]
    async fn a_cancelled_probe_frees_the_slot() {
        let b = Breaker::new(BreakerOptions::new(1, Duration::from_millis(20)));
        let _ = fail(&b).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        let hung = b.call(
            DbError::trips_breaker,
            std::future::pending::<Result<(), DbError>>(),
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(10), hung)
                .await
                .is_err()
        );
        succeed(&b).await.unwrap();
        assert_eq!(b.state(), BreakerState::Closed);
    }
}

//! State-machine tests of the pool with a fake manager and tokio's paused clock.

use std::collections::HashSet;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgline_core::{DbError, ErrorKind, PoolEvent, RemoveReason};

use crate::{Manager, Pool, PoolOptions};

#[derive(Default)]
struct FakeState {
    connects: AtomicU64,
    validations: AtomicU64,
    resets: AtomicU64,
    fail_connect: AtomicBool,
    fail_reset: AtomicBool,
    broken: Mutex<HashSet<u64>>,
    /// Serials that break after this many more `has_broken` checks.
    break_after: Mutex<std::collections::HashMap<u64, u32>>,
    live: AtomicU32,
}

#[derive(Clone, Default)]
struct Fake {
    state: Arc<FakeState>,
    connect_delay: Duration,
}

struct FakeConn {
    id: u64,
    serial: u64,
    dirty: AtomicBool,
    state: Arc<FakeState>,
}

impl Drop for FakeConn {
    fn drop(&mut self) {
        self.state.live.fetch_sub(1, SeqCst);
    }
}

impl Manager for Fake {
    type Connection = FakeConn;

    async fn connect(&self) -> Result<FakeConn, DbError> {
        if !self.connect_delay.is_zero() {
            tokio::time::sleep(self.connect_delay).await;
        }
        if self.state.fail_connect.load(SeqCst) {
            return Err(DbError::new(ErrorKind::Connect).with_context("fake: connection refused"));
        }
        let serial = self.state.connects.fetch_add(1, SeqCst);
        self.state.live.fetch_add(1, SeqCst);
        Ok(FakeConn {
            id: 0,
            serial,
            dirty: AtomicBool::new(false),
            state: self.state.clone(),
        })
    }

    fn has_broken(&self, conn: &FakeConn) -> bool {
        if let Some(n) = self.state.break_after.lock().unwrap().get_mut(&conn.serial) {
            if *n == 0 {
                return true;
            }
            *n -= 1;
        }
        self.state.broken.lock().unwrap().contains(&conn.serial)
    }

    async fn validate(&self, conn: &FakeConn) -> Result<(), DbError> {
        self.state.validations.fetch_add(1, SeqCst);
        tokio::time::sleep(Duration::from_millis(1)).await;
        if self.has_broken(conn) {
            Err(DbError::new(ErrorKind::Query))
        } else {
            Ok(())
        }
    }

    fn needs_reset(&self, conn: &FakeConn) -> bool {
        conn.dirty.load(SeqCst)
    }

    async fn reset(&self, conn: &FakeConn) -> Result<(), DbError> {
        self.state.resets.fetch_add(1, SeqCst);
        tokio::time::sleep(Duration::from_millis(2)).await;
        if self.state.fail_reset.load(SeqCst) {
            return Err(DbError::new(ErrorKind::Query));
        }
        conn.dirty.store(false, SeqCst);
        Ok(())
    }

    fn set_id(&self, conn: &mut FakeConn, id: u64) {
        conn.id = id;
    }
}

fn opts(min: u32, max: u32) -> PoolOptions {
    PoolOptions::new(min, max)
        .with_acquire_timeout(Duration::from_secs(5))
        .with_idle_timeout(Some(Duration::from_secs(10)))
        .with_max_lifetime(None)
}

fn pool(min: u32, max: u32) -> (Pool<Fake>, Arc<FakeState>) {
    let fake = Fake::default();
    let state = fake.state.clone();
    (Pool::new(fake, opts(min, max)).unwrap(), state)
}

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[tokio::test(start_paused = true)]
async fn initialize_opens_min_idle() {
    let (pool, state) = pool(3, 5);
    pool.initialize().await.unwrap();
    let s = pool.stats();
    assert_eq!((s.total, s.idle, s.in_use), (3, 3, 0));
    assert_eq!(state.connects.load(SeqCst), 3);
    assert_eq!(s.created_total, 3);
}

#[tokio::test(start_paused = true)]
async fn initialize_fails_after_a_bounded_wait_when_unreachable() {
    let fake = Fake::default();
    fake.state.fail_connect.store(true, SeqCst);
    let pool = Pool::new(
        fake,
        opts(2, 5).with_acquire_timeout(Duration::from_secs(2)),
    )
    .unwrap();
    let started = tokio::time::Instant::now();
    let err = pool.initialize().await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Connect), "{err}");
    assert!(err.to_string().contains("connection refused"), "{err}");
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn never_exceeds_max_with_many_more_tasks_than_connections() {
    let (pool, state) = pool(0, 4);
    let holders = Arc::new(AtomicU32::new(0));
    let peak = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..500 {
        let (pool, holders, peak) = (pool.clone(), holders.clone(), peak.clone());
        tasks.push(tokio::spawn(async move {
            let conn = pool.acquire().await.unwrap();
            let now = holders.fetch_add(1, SeqCst) + 1;
            peak.fetch_max(now, SeqCst);
            tokio::time::sleep(Duration::from_millis(1)).await;
            holders.fetch_sub(1, SeqCst);
            drop(conn);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(peak.load(SeqCst) <= 4);
    assert!(state.connects.load(SeqCst) <= 4);
    let s = pool.stats();
    assert_eq!(s.in_use, 0);
    assert_eq!(s.waiting, 0);
    assert_eq!(s.acquired_total, 500);
    assert!(s.total <= 4);
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_first_come_first_served() {
    let (pool, _) = pool(0, 1);
    let held = pool.acquire().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (pool, order) = (pool.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let conn = pool.acquire().await.unwrap();
            order.lock().unwrap().push(i);
            tokio::time::sleep(Duration::from_millis(1)).await;
            drop(conn);
        }));
        // Let task i enqueue before task i+1 starts.
        settle().await;
    }
    assert_eq!(pool.stats().waiting, 8);
    drop(held);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..8).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn a_waiter_whose_connection_fails_its_check_keeps_its_turn() {
    let (pool, state) = pool(0, 1);
    let held = pool.acquire().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..3 {
        let (pool, order) = (pool.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let conn = pool.acquire().await.unwrap();
            order.lock().unwrap().push((i, conn.serial));
            tokio::time::sleep(Duration::from_millis(1)).await;
            drop(conn);
        }));
        settle().await;
    }
    // The held connection passes the check on return, then fails the one
    // its receiver (waiter 0) makes: waiter 0 must get the replacement
    // before waiters 1 and 2, not go to the back of the queue.
    state.break_after.lock().unwrap().insert(held.serial, 1);
    drop(held);
    for t in tasks {
        t.await.unwrap();
    }
    let order = order.lock().unwrap().clone();
    assert_eq!(order.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(order[0].1, 1, "waiter 0 got the replacement connection");
    assert_eq!(pool.stats().closed_total.broken, 1);
}

#[tokio::test(start_paused = true)]
async fn a_newcomer_never_overtakes_a_waiter() {
    let (pool, _) = pool(0, 1);
    let held = pool.acquire().await.unwrap();
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let c = pool.acquire().await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
            drop(c);
            "waiter"
        })
    };
    settle().await;
    drop(held);
    // The connection went straight to the waiter: a newcomer must queue.
    let newcomer = tokio::time::timeout(Duration::from_millis(5), pool.acquire()).await;
    assert!(newcomer.is_err(), "newcomer overtook the waiter");
    assert_eq!(waiter.await.unwrap(), "waiter");
    assert!(pool.acquire().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn acquire_times_out_with_a_distinct_error() {
    let fake = Fake::default();
    let pool = Pool::new(
        fake,
        opts(0, 2).with_acquire_timeout(Duration::from_millis(300)),
    )
    .unwrap();
    let _a = pool.acquire().await.unwrap();
    let _b = pool.acquire().await.unwrap();
    let started = tokio::time::Instant::now();
    let err = pool.acquire().await.unwrap_err();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_millis(400));
    match err.kind() {
        ErrorKind::AcquireTimeout {
            waiting,
            in_use,
            max,
            ..
        } => {
            assert_eq!((*waiting, *in_use, *max), (1, 2, 2));
        }
        other => panic!("expected AcquireTimeout, got {other:?}"),
    }
    assert!(err.to_string().contains("2 of 2 in use"), "{err}");
    let s = pool.stats();
    assert_eq!(s.acquire_timeouts_total, 1);
    assert_eq!(s.waiting, 0);
}

#[tokio::test(start_paused = true)]
async fn connection_errors_surface_in_the_timeout_and_recover() {
    let fake = Fake::default();
    let state = fake.state.clone();
    state.fail_connect.store(true, SeqCst);
    let pool = Pool::new(
        fake,
        opts(0, 2).with_acquire_timeout(Duration::from_millis(200)),
    )
    .unwrap();
    let err = pool.acquire().await.unwrap_err();
    assert!(err.is_timeout());
    assert!(err.to_string().contains("connection refused"), "{err}");
    state.fail_connect.store(false, SeqCst);
    let conn = pool.acquire().await.unwrap();
    assert_eq!(conn.serial, 0);
}

#[tokio::test(start_paused = true)]
async fn idle_connections_above_min_are_reaped_and_min_is_kept() {
    let (pool, _) = pool(1, 4);
    pool.initialize().await.unwrap();
    let conns: Vec<_> = futures_join(&pool, 4).await;
    drop(conns);
    assert_eq!(pool.stats().idle, 4);
    tokio::time::sleep(Duration::from_secs(12)).await;
    let s = pool.stats();
    assert_eq!(s.idle, 1, "{s:?}");
    assert_eq!(s.total, 1);
    assert_eq!(s.closed_total.idle, 3);
}

async fn futures_join(pool: &Pool<Fake>, n: usize) -> Vec<crate::Pooled<Fake>> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(pool.acquire().await.unwrap());
    }
    out
}

#[tokio::test(start_paused = true)]
async fn min_idle_is_refilled_in_the_background() {
    let (pool, state) = pool(2, 4);
    pool.initialize().await.unwrap();
    let a = pool.acquire().await.unwrap();
    settle().await;
    // Taking one dropped idle below min: a new one was opened off the caller's path.
    assert_eq!(pool.stats().idle, 2);
    state.broken.lock().unwrap().insert(a.serial);
    drop(a);
    settle().await;
    let s = pool.stats();
    assert_eq!(s.closed_total.broken, 1);
    assert_eq!(s.idle, 2);
}

#[tokio::test(start_paused = true)]
async fn lifetimes_retire_connections_but_never_under_a_caller() {
    let fake = Fake::default();
    let pool = Pool::new(
        fake,
        opts(0, 2)
            .with_idle_timeout(None)
            .with_max_lifetime(Some(Duration::from_secs(60)))
            .with_lifetime_jitter(Duration::from_secs(10)),
    )
    .unwrap();
    let held = pool.acquire().await.unwrap();
    let idle = pool.acquire().await.unwrap();
    drop(idle);
    tokio::time::sleep(Duration::from_secs(61)).await;
    let s = pool.stats();
    assert_eq!(
        s.closed_total.lifetime, 1,
        "idle one retired by maintenance"
    );
    assert_eq!(s.in_use, 1, "the held one is not closed under the caller");
    drop(held);
    let s = pool.stats();
    assert_eq!(s.closed_total.lifetime, 2, "retired when returned");
    assert_eq!(s.total, 0);
}

#[tokio::test(start_paused = true)]
async fn lifetime_jitter_spreads_expiry() {
    let fake = Fake::default();
    let pool = Pool::new(
        fake,
        opts(0, 20)
            .with_idle_timeout(None)
            .with_max_lifetime(Some(Duration::from_secs(100)))
            .with_lifetime_jitter(Duration::from_secs(50)),
    )
    .unwrap();
    let conns = futures_join_n(&pool, 20).await;
    drop(conns);
    tokio::time::sleep(Duration::from_secs(75)).await;
    let closed = pool.stats().closed_total.lifetime;
    assert!(
        closed > 0 && closed < 20,
        "expiry should be spread, {closed} of 20 expired at 75 s"
    );
}

async fn futures_join_n(pool: &Pool<Fake>, n: usize) -> Vec<crate::Pooled<Fake>> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(pool.acquire().await.unwrap());
    }
    out
}

#[tokio::test(start_paused = true)]
async fn idle_connections_are_validated_and_broken_ones_skipped() {
    let (pool, state) = pool(0, 2);
    let a = pool.acquire().await.unwrap();
    let b = pool.acquire().await.unwrap();
    let (sa, sb) = (a.serial, b.serial);
    drop(a);
    drop(b);
    // Recently used: no validation.
    drop(pool.acquire().await.unwrap());
    assert_eq!(state.validations.load(SeqCst), 0);
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Both idle past the threshold; break both so validation must reject them.
    state.broken.lock().unwrap().extend([sa, sb]);
    let c = pool.acquire().await.unwrap();
    assert!(
        c.serial != sa && c.serial != sb,
        "a broken connection was handed out"
    );
    assert_eq!(pool.stats().closed_total.broken, 2);
}

#[tokio::test(start_paused = true)]
async fn dirty_connections_are_reset_or_discarded() {
    let (pool, state) = pool(0, 1);
    let a = pool.acquire().await.unwrap();
    let serial = a.serial;
    a.dirty.store(true, SeqCst);
    drop(a);
    let b = pool.acquire().await.unwrap();
    assert_eq!(b.serial, serial, "reset connection is reused");
    assert!(!b.dirty.load(SeqCst));
    assert_eq!(state.resets.load(SeqCst), 1);
    state.fail_reset.store(true, SeqCst);
    b.dirty.store(true, SeqCst);
    drop(b);
    let c = pool.acquire().await.unwrap();
    assert_ne!(
        c.serial, serial,
        "a connection that failed its reset was reused"
    );
    assert_eq!(pool.stats().closed_total.broken, 1);
}

#[tokio::test(start_paused = true)]
async fn close_refuses_waits_and_reports() {
    let (pool, state) = pool(2, 3);
    pool.initialize().await.unwrap();
    let held = pool.acquire().await.unwrap();
    let held2 = pool.acquire().await.unwrap();
    let held3 = pool.acquire().await.unwrap();
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.acquire().await.map(|_| ()) })
    };
    settle().await;
    let returner = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(held);
        drop(held2);
    });
    let report = pool.close(Duration::from_secs(1)).await;
    returner.await.unwrap();
    let err = waiter.await.unwrap().unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::PoolClosed), "{err}");
    assert_eq!(report.refused_waiters, 1);
    assert_eq!(report.closed_after_return, 2);
    assert_eq!(report.still_in_use, 1);
    let err = pool.acquire().await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::PoolClosed));
    drop(held3);
    assert_eq!(pool.stats().total, 0);
    assert_eq!(state.live.load(SeqCst), 0, "every connection closed");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_pool_closes_idle_connections_and_stops_tasks() {
    let (pool, state) = pool(3, 3);
    pool.initialize().await.unwrap();
    assert_eq!(state.live.load(SeqCst), 3);
    let weak = std::sync::Arc::downgrade(&pool.inner);
    drop(pool);
    settle().await;
    assert!(
        weak.upgrade().is_none(),
        "maintenance task keeps the pool alive"
    );
    assert_eq!(state.live.load(SeqCst), 0);
}

/// Acquire futures dropped at every await point (queueing, connecting,
/// validation) must not leak or double-count connections.
#[tokio::test(start_paused = true)]
async fn cancellation_at_every_await_keeps_the_books_straight() {
    let fake = Fake {
        connect_delay: Duration::from_millis(3),
        ..Fake::default()
    };
    let state = fake.state.clone();
    let pool = Pool::new(
        fake,
        opts(1, 3).with_validation_threshold(Duration::from_millis(2)),
    )
    .unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut tasks = Vec::new();
    for _ in 0..400 {
        let pool = pool.clone();
        let cancel_after = Duration::from_micros(rng.u64(0..6000));
        let hold = Duration::from_micros(rng.u64(0..3000));
        let dirty = rng.bool();
        tasks.push(tokio::spawn(async move {
            if let Ok(Ok(conn)) = tokio::time::timeout(cancel_after, pool.acquire()).await {
                conn.dirty.store(dirty, SeqCst);
                let _ = tokio::time::timeout(cancel_after, tokio::time::sleep(hold)).await;
            }
        }));
        if rng.u8(0..4) == 0 {
            tokio::time::sleep(Duration::from_micros(rng.u64(0..2000))).await;
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let s = pool.stats();
    assert_eq!(s.in_use, 0, "{s:?}");
    assert_eq!(s.waiting, 0, "{s:?}");
    assert!(s.total <= 3, "{s:?}");
    assert_eq!(s.total, s.idle, "every open connection is idle: {s:?}");
    assert_eq!(
        u64::from(s.total),
        s.created_total - s.closed_total.total(),
        "created - closed = open: {s:?}"
    );
    assert_eq!(
        state.live.load(SeqCst),
        s.total,
        "no connection leaked or lost"
    );
    // And the pool still works.
    let conns = futures_join(&pool, 3).await;
    assert_eq!(conns.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn events_arrive_in_order() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let fake = Fake::default();
    let state = fake.state.clone();
    let pool = Pool::new(
        fake,
        opts(0, 1).with_listener(Arc::new(move |e: &PoolEvent| {
            sink.lock().unwrap().push(e.clone());
        })),
    )
    .unwrap();
    let c = pool.acquire().await.unwrap();
    state.broken.lock().unwrap().insert(c.serial);
    drop(c);
    let names: Vec<_> = events.lock().unwrap().iter().map(PoolEvent::name).collect();
    assert_eq!(names, ["connect", "acquire", "release", "remove"]);
    let last = events.lock().unwrap().last().cloned();
    assert!(matches!(
        last,
        Some(PoolEvent::Remove {
            reason: RemoveReason::Broken,
            ..
        })
    ));
}

#[test]
fn public_types_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Pool<Fake>>();
    assert_send_sync::<crate::Pooled<Fake>>();
    assert_send_sync::<PoolOptions>();
    fn assert_send<T: Send>(_: &T) {}
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = Pool::new(Fake::default(), opts(0, 1)).unwrap();
        assert_send(&pool.acquire());
    });
}

#[tokio::test]
async fn invalid_options_are_rejected() {
    let err = Pool::new(Fake::default(), PoolOptions::new(5, 2)).unwrap_err();
    assert!(err.to_string().contains("min_idle"), "{err}");
    let err = Pool::new(Fake::default(), PoolOptions::new(0, 0)).unwrap_err();
    assert!(err.to_string().contains("max_size"), "{err}");
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn leak_detection_names_where_the_connection_was_acquired() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let pool = Pool::new(
        Fake::default(),
        opts(0, 2).with_leak_detection(Some(Duration::from_secs(2))),
    )
    .unwrap();
    let short = pool.acquire().await.unwrap();
    drop(short);
    let held = pool.acquire().await.unwrap();
    let line = line!() - 1;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let out = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert_eq!(out.matches("possible connection leak").count(), 1, "{out}");
    assert!(
        out.contains(&format!("tests.rs:{line}")),
        "no acquire site in: {out}"
    );
    drop(held);

    // Off by default: nothing is tracked.
    let quiet = Pool::new(Fake::default(), opts(0, 1)).unwrap();
    assert!(quiet.inner.leaks.is_none());
}

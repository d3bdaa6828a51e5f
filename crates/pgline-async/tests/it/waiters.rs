//! 10,000 waiters on a small pool: served in FIFO order, and the acquire
//! timeout ends the wait of every waiter still queued at its deadline. A fake
//! connection (no IO) and tokio's paused clock keep this about the queue;
//! there are no wall-clock timing assertions.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgline_async::{Manager, Pool, PoolOptions};
use pgline_core::{DbError, ErrorKind};
use tokio::time::Instant;

const WAITERS: usize = 10_000;

struct Fake;

impl Manager for Fake {
    type Connection = ();

    async fn connect(&self) -> Result<(), DbError> {
        Ok(())
    }

    fn has_broken(&self, _conn: &()) -> bool {
        false
    }

    async fn validate(&self, _conn: &()) -> Result<(), DbError> {
        Ok(())
    }

    fn needs_reset(&self, _conn: &()) -> bool {
        false
    }

    async fn reset(&self, _conn: &()) -> Result<(), DbError> {
        Ok(())
    }
}

async fn full_pool(size: u32, timeout: Duration) -> (Pool<Fake>, Vec<pgline_async::Pooled<Fake>>) {
    let pool = Pool::new(
        Fake,
        PoolOptions::new(size, size)
            .with_acquire_timeout(timeout)
            // No validation round trips and no reaping during the test.
            .with_validation_threshold(Duration::from_secs(3600))
            .with_idle_timeout(None)
            .with_max_lifetime(None),
    )
    .unwrap();
    pool.initialize().await.unwrap();
    let mut held = Vec::new();
    for _ in 0..size {
        held.push(pool.acquire().await.unwrap());
    }
    (pool, held)
}

/// Spawns `WAITERS` acquirers, each one queued before the next is spawned;
/// each reports `(index, outcome, when)`.
async fn queue_waiters(
    pool: &Pool<Fake>,
    hold: Duration,
) -> Vec<tokio::task::JoinHandle<(usize, Result<(), DbError>, Instant)>> {
    let mut tasks = Vec::with_capacity(WAITERS);
    for i in 0..WAITERS {
        let task_pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            match task_pool.acquire().await {
                Ok(conn) => {
                    let at = Instant::now();
                    if hold.is_zero() {
                        tokio::task::yield_now().await;
                    } else {
                        tokio::time::sleep(hold).await;
                    }
                    drop(conn);
                    (i, Ok(()), at)
                }
                Err(e) => (i, Err(e), Instant::now()),
            }
        }));
        while (pool.stats().waiting as usize) < i + 1 {
            tokio::task::yield_now().await;
        }
    }
    tasks
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_waiters_are_served_in_fifo_order() {
    // Each waiter records when its acquire completes; every hand-off goes to
    // the oldest waiter, so the record is the queue order.
    let (pool, held) = full_pool(2, Duration::from_secs(3600)).await;
    let order = Arc::new(Mutex::new(Vec::with_capacity(WAITERS)));
    let mut tasks = Vec::with_capacity(WAITERS);
    for i in 0..WAITERS {
        let (task_pool, order) = (pool.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let conn = task_pool.acquire().await.unwrap();
            order.lock().unwrap().push(i);
            tokio::time::sleep(Duration::from_millis(1)).await;
            drop(conn);
        }));
        while (pool.stats().waiting as usize) < i + 1 {
            tokio::task::yield_now().await;
        }
    }
    drop(held);
    for t in tasks {
        t.await.unwrap();
    }
    let order = order.lock().unwrap();
    assert_eq!(*order, (0..WAITERS).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn the_waiters_still_queued_at_the_deadline_all_time_out_on_time() {
    let timeout = Duration::from_secs(5);
    let (pool, held) = full_pool(2, timeout).await;
    let start = Instant::now();
    // Every waiter queues at the same (paused) instant, so all share one
    // deadline. Two connections, each held 10 ms: about 1,000 are served
    // before it, and every one still queued then times out.
    let tasks = queue_waiters(&pool, Duration::from_millis(10)).await;
    assert_eq!(
        Instant::now(),
        start,
        "the paused clock moved while queueing"
    );
    drop(held);
    let mut served = Vec::new();
    let mut timed_out = Vec::new();
    for t in tasks {
        let (i, outcome, at) = t.await.unwrap();
        match outcome {
            Ok(()) => {
                assert!(at <= start + timeout, "served after its deadline");
                served.push(i);
            }
            Err(e) => {
                let ErrorKind::AcquireTimeout { waited, .. } = e.kind() else {
                    panic!("waiter {i}: expected AcquireTimeout, got {e}");
                };
                // Paused clock: the expiry task wakes exactly at the deadline.
                assert_eq!(
                    at,
                    start + timeout,
                    "waiter {i} timed out at the wrong time"
                );
                assert_eq!(*waited, timeout, "waiter {i}");
                timed_out.push(i);
            }
        }
    }
    assert!(!served.is_empty() && !timed_out.is_empty());
    assert_eq!(served.len() + timed_out.len(), WAITERS);
    // FIFO: the served waiters are exactly the first ones in the queue.
    assert_eq!(served, (0..served.len()).collect::<Vec<_>>());
    assert_eq!(timed_out, (served.len()..WAITERS).collect::<Vec<_>>());
    let s = pool.stats();
    assert_eq!(s.acquire_timeouts_total as usize, timed_out.len(), "{s:?}");
    assert_eq!((s.waiting, s.in_use), (0, 0), "{s:?}");
    println!("served {}, timed out {}", served.len(), timed_out.len());
}

//! The pools' own mechanics with a fake connection that does no IO.
//!
//! - `acquire_release_noio`: one operation is acquire + release; with a
//!   connection free for every task, this is the uncontended fast path.
//! - `handoff_noio`: acquire, yield to the scheduler while holding the
//!   connection, release. With more tasks than connections every acquire
//!   queues and is served by a hand-off from a returning task: the slow path
//!   (queueing, wake-up, fairness) without a server's noise.

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use anyhow::Context;
use pgline_core::DbError;

use crate::measure::AsyncOp;

/// A connection that is nothing but a number.
#[derive(Debug)]
pub struct FakeConn(pub u64);

/// Hands out [`FakeConn`]s: the no-IO manager of every pool.
#[derive(Debug, Default)]
pub struct FakeManager {
    next: AtomicU64,
}

impl FakeManager {
    fn make(&self) -> FakeConn {
        FakeConn(self.next.fetch_add(1, Relaxed))
    }
}

impl pgline_async::Manager for FakeManager {
    type Connection = FakeConn;

    async fn connect(&self) -> Result<FakeConn, DbError> {
        Ok(self.make())
    }

    fn has_broken(&self, _conn: &FakeConn) -> bool {
        false
    }

    async fn validate(&self, _conn: &FakeConn) -> Result<(), DbError> {
        Ok(())
    }

    fn needs_reset(&self, _conn: &FakeConn) -> bool {
        false
    }

    async fn reset(&self, _conn: &FakeConn) -> Result<(), DbError> {
        Ok(())
    }
}

impl deadpool::managed::Manager for FakeManager {
    type Type = FakeConn;
    type Error = Infallible;

    async fn create(&self) -> Result<FakeConn, Infallible> {
        Ok(self.make())
    }

    async fn recycle(
        &self,
        _conn: &mut FakeConn,
        _metrics: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Infallible> {
        Ok(())
    }
}

impl bb8::ManageConnection for FakeManager {
    type Connection = FakeConn;
    type Error = Infallible;

    async fn connect(&self) -> Result<FakeConn, Infallible> {
        Ok(self.make())
    }

    async fn is_valid(&self, _conn: &mut FakeConn) -> Result<(), Infallible> {
        Ok(())
    }

    fn has_broken(&self, _conn: &mut FakeConn) -> bool {
        false
    }
}

/// What a no-IO operation does while it holds the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Nothing: acquire and release at once (`acquire_release_noio`).
    Nothing,
    /// Yield to the scheduler once (`handoff_noio`).
    Yield,
}

impl Hold {
    async fn run(self) {
        if self == Hold::Yield {
            tokio::task::yield_now().await;
        }
    }
}

/// pgline's pool over [`FakeManager`], `min_idle = max_size`, all connections opened.
pub struct PglineNoIo(pgline_async::Pool<FakeManager>, Hold);

impl PglineNoIo {
    /// Builds and fills the pool.
    pub async fn new(size: u32, hold: Hold) -> anyhow::Result<Self> {
        let pool = pgline_async::Pool::new(
            FakeManager::default(),
            pgline_async::PoolOptions::new(size, size),
        )?;
        pool.initialize().await?;
        Ok(Self(pool, hold))
    }
}

impl AsyncOp for PglineNoIo {
    async fn run(&self, _task: usize) -> anyhow::Result<()> {
        let conn = self.0.acquire().await?;
        black_box(&*conn);
        self.1.run().await;
        Ok(())
    }
}

/// deadpool's managed pool over [`FakeManager`] (it opens on demand; the warm-up fills it).
pub struct DeadpoolNoIo(deadpool::managed::Pool<FakeManager>, Hold);

impl DeadpoolNoIo {
    /// Builds the pool.
    pub fn new(size: u32, hold: Hold) -> anyhow::Result<Self> {
        let pool = deadpool::managed::Pool::builder(FakeManager::default())
            .max_size(size as usize)
            .build()
            .context("building deadpool's pool")?;
        Ok(Self(pool, hold))
    }
}

impl AsyncOp for DeadpoolNoIo {
    async fn run(&self, _task: usize) -> anyhow::Result<()> {
        let conn = self
            .0
            .get()
            .await
            .map_err(|e| anyhow::anyhow!("deadpool: {e}"))?;
        black_box(&*conn);
        self.1.run().await;
        Ok(())
    }
}

/// bb8's pool over [`FakeManager`], `min_idle = max_size`, `test_on_check_out(false)`.
pub struct Bb8NoIo(bb8::Pool<FakeManager>, Hold);

impl Bb8NoIo {
    /// Builds and fills the pool.
    pub async fn new(size: u32, hold: Hold) -> anyhow::Result<Self> {
        let pool = bb8::Pool::builder()
            .max_size(size)
            .min_idle(Some(size))
            .test_on_check_out(false)
            .build(FakeManager::default())
            .await
            .map_err(|e| anyhow::anyhow!("bb8: {e:?}"))?;
        Ok(Self(pool, hold))
    }
}

impl AsyncOp for Bb8NoIo {
    async fn run(&self, _task: usize) -> anyhow::Result<()> {
        let conn = self
            .0
            .get()
            .await
            .map_err(|e| anyhow::anyhow!("bb8: {e}"))?;
        black_box(&*conn);
        self.1.run().await;
        Ok(())
    }
}

// ---------------------------------------------------------------- memory

/// Resident memory of this process (`VmRSS`), in bytes.
fn rss_bytes() -> anyhow::Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .context("no VmRSS in /proc/self/status")?;
    Ok(kb * 1024)
}

/// Waits (at most 10 s) until `parked()` says all `n` waiters are queued;
/// without a way to ask (`None`), gives them half a second.
async fn until_parked(n: usize, parked: impl Fn() -> Option<usize>) {
    for _ in 0..1000 {
        match parked() {
            Some(k) if k >= n => return,
            None => {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                return;
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

/// The memory probe of `waiters_10k`, run in a fresh process so that no
/// earlier measurement left freed memory for the waiters to reuse: holds all
/// `size` connections of a no-IO pool, queues `n` tasks on it and returns
/// the growth of the resident set per waiter, in bytes. `which` is `pgline`,
/// `deadpool`, `bb8`, or `floor` (tasks parked on a `tokio::sync::Notify`:
/// the cost of a parked task without any pool).
pub fn waiter_memory(which: &str, n: usize, size: u32) -> anyhow::Result<f64> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    runtime.block_on(async {
        let grown = match which {
            "pgline" => {
                let pool = pgline_async::Pool::new(
                    FakeManager::default(),
                    pgline_async::PoolOptions::new(size, size),
                )?;
                pool.initialize().await?;
                let mut held = Vec::new();
                for _ in 0..size {
                    held.push(pool.acquire().await?);
                }
                let before = rss_bytes()?;
                let tasks: Vec<_> = (0..n)
                    .map(|_| {
                        let pool = pool.clone();
                        tokio::spawn(async move { drop(pool.acquire().await) })
                    })
                    .collect();
                until_parked(n, || Some(pool.stats().waiting as usize)).await;
                let after = rss_bytes()?;
                drop(held);
                for t in tasks {
                    t.await?;
                }
                after.saturating_sub(before)
            }
            "deadpool" => {
                let pool: deadpool::managed::Pool<FakeManager> =
                    deadpool::managed::Pool::builder(FakeManager::default())
                        .max_size(size as usize)
                        .build()
                        .context("building deadpool's pool")?;
                let mut held = Vec::new();
                for _ in 0..size {
                    held.push(
                        pool.get()
                            .await
                            .map_err(|e| anyhow::anyhow!("deadpool: {e}"))?,
                    );
                }
                let before = rss_bytes()?;
                let tasks: Vec<_> = (0..n)
                    .map(|_| {
                        let pool = pool.clone();
                        tokio::spawn(async move { drop(pool.get().await) })
                    })
                    .collect();
                until_parked(n, || Some(pool.status().waiting)).await;
                let after = rss_bytes()?;
                drop(held);
                for t in tasks {
                    t.await?;
                }
                after.saturating_sub(before)
            }
            "bb8" => {
                let pool: bb8::Pool<FakeManager> = bb8::Pool::builder()
                    .max_size(size)
                    .min_idle(Some(size))
                    .test_on_check_out(false)
                    .build(FakeManager::default())
                    .await
                    .map_err(|e| anyhow::anyhow!("bb8: {e:?}"))?;
                let mut held = Vec::new();
                for _ in 0..size {
                    held.push(
                        pool.get_owned()
                            .await
                            .map_err(|e| anyhow::anyhow!("bb8: {e}"))?,
                    );
                }
                let before = rss_bytes()?;
                let tasks: Vec<_> = (0..n)
                    .map(|_| {
                        let pool = pool.clone();
                        tokio::spawn(async move { drop(pool.get_owned().await) })
                    })
                    .collect();
                // bb8 does not say how many wait.
                until_parked(n, || None).await;
                let after = rss_bytes()?;
                drop(held);
                for t in tasks {
                    t.await?;
                }
                after.saturating_sub(before)
            }
            "floor" => {
                let notify = std::sync::Arc::new(tokio::sync::Notify::new());
                let parked = std::sync::Arc::new(AtomicU64::new(0));
                let before = rss_bytes()?;
                let tasks: Vec<_> = (0..n)
                    .map(|_| {
                        let (notify, parked) = (notify.clone(), parked.clone());
                        tokio::spawn(async move {
                            let wait = notify.notified();
                            parked.fetch_add(1, Relaxed);
                            wait.await;
                        })
                    })
                    .collect();
                until_parked(n, || Some(parked.load(Relaxed) as usize)).await;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                let after = rss_bytes()?;
                notify.notify_waiters();
                // Late registrations miss notify_waiters; a permit per task ends them.
                for _ in 0..n {
                    notify.notify_one();
                }
                for t in tasks {
                    t.await?;
                }
                after.saturating_sub(before)
            }
            other => anyhow::bail!("no memory probe for {other}"),
        };
        Ok(grown as f64 / n.max(1) as f64)
    })
}

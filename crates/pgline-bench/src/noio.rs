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

//! The contenders against PostgreSQL: how each pool is built and what one
//! operation of `checkout_select1` / `checkout_simple1` does with it.
//!
//! All pools get the same size, no check on checkout (deadpool
//! `RecyclingMethod::Fast`, bb8 and r2d2 `test_on_check_out(false)`; pgline
//! only checks connections idle longer than 500 ms, which a busy benchmark
//! never has) and plain TCP to 127.0.0.1 without TLS.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use pgline_async::{PgManager, PgPool, PoolOptions, SharedLane, SharedOptions};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage, Statement};

use crate::measure::{AsyncOp, ThreadOp};

/// The statement every IO scenario runs.
pub const SQL: &str = "SELECT 1";

/// Size of pgline's per-connection statement cache (the configuration default).
const STATEMENT_CACHE: usize = 100;

/// How `SELECT 1` is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Extended protocol with a prepared statement, the way each pool
    /// recommends for repeated statements: from the statement cache (pgline,
    /// deadpool), prepared once per connection (raw), or prepared on every
    /// checkout when the pool has no cache (bb8, r2d2).
    Prepared,
    /// `simple_query("SELECT 1")`: one round trip for every contender.
    Simple,
}

fn check_rows(rows: usize) -> anyhow::Result<()> {
    ensure!(rows == 1, "SELECT 1 returned {rows} rows");
    Ok(())
}

fn check_simple(messages: &[SimpleQueryMessage]) -> anyhow::Result<()> {
    let rows = messages
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
        .count();
    check_rows(rows)
}

/// Runs `SELECT 1` on a tokio-postgres client with `statement` or the simple protocol.
async fn select1(client: &Client, statement: &Statement, protocol: Protocol) -> anyhow::Result<()> {
    match protocol {
        Protocol::Prepared => check_rows(client.query(statement, &[]).await?.len()),
        Protocol::Simple => check_simple(&client.simple_query(SQL).await?),
    }
}

/// Runs `SELECT 1` on a tokio-postgres client that has no statement cache:
/// prepares it first (a second round trip) for the extended protocol.
async fn select1_unprepared(client: &Client, protocol: Protocol) -> anyhow::Result<()> {
    match protocol {
        Protocol::Prepared => {
            let statement = client.prepare(SQL).await?;
            check_rows(client.query(&statement, &[]).await?.len())
        }
        Protocol::Simple => check_simple(&client.simple_query(SQL).await?),
    }
}

// ---------------------------------------------------------------- pgline

/// pgline's async pool: `acquire` → `query` through the connection's
/// statement cache (or `simple_query`) → drop.
pub struct Pgline {
    pool: PgPool,
    protocol: Protocol,
}

impl Pgline {
    /// Builds the pool with `min_idle = max_size = size` and opens all connections.
    pub async fn new(
        config: &tokio_postgres::Config,
        size: u32,
        protocol: Protocol,
    ) -> anyhow::Result<Self> {
        let manager = PgManager::new(config.clone(), None, STATEMENT_CACHE);
        let pool = PgPool::new(manager, PoolOptions::new(size, size))?;
        pool.initialize().await.context("opening pgline's pool")?;
        Ok(Self { pool, protocol })
    }

    /// Closes the pool and its connections.
    pub async fn close(&self) {
        self.pool.close(Duration::from_secs(5)).await;
    }
}

impl AsyncOp for Pgline {
    async fn run(&self, _task: usize) -> anyhow::Result<()> {
        let conn = self.pool.acquire().await?;
        match self.protocol {
            Protocol::Prepared => check_rows(conn.query(SQL, &[]).await?.len()),
            Protocol::Simple => check_simple(&conn.simple_query(SQL).await?),
        }
    }
}

// ---------------------------------------------------------------- pipelined

/// pgline's shared path (`query_select1_pipelined`): a pool of `size`
/// connections and a [`SharedLane`] over all of them; every task sends
/// `SELECT 1` (prepared, from the lane's statement cache) through the lane,
/// so concurrent statements are pipelined on the shared connections.
pub struct PglinePipelined {
    pool: PgPool,
    lane: SharedLane,
}

impl PglinePipelined {
    /// Builds the pool, opens its connections and gives all of them to a lane.
    pub async fn new(config: &tokio_postgres::Config, size: u32) -> anyhow::Result<Self> {
        let manager = PgManager::new(config.clone(), None, STATEMENT_CACHE);
        let pool = PgPool::new(manager, PoolOptions::new(size, size))?;
        pool.initialize().await.context("opening pgline's pool")?;
        let lane = pool
            .shared(SharedOptions::new(size))
            .await
            .context("opening the shared lane")?;
        Ok(Self { pool, lane })
    }

    /// Gives the lane's connections back and closes the pool.
    pub async fn close(&self) {
        self.lane.close().await;
        self.pool.close(Duration::from_secs(5)).await;
    }
}

impl AsyncOp for PglinePipelined {
    async fn run(&self, _task: usize) -> anyhow::Result<()> {
        check_rows(self.lane.query(SQL, &[]).await?.len())
    }
}

/// The client library's ceiling for pipelining: `size` dedicated
/// tokio-postgres connections with `SELECT 1` prepared once each; task `i`
/// sends on connection `i % size` with no lock, so concurrent statements
/// are pipelined. No pool, no checks, no bookkeeping.
pub struct RawPipelined {
    conns: Vec<RawConn>,
}

impl RawPipelined {
    /// Opens `size` connections and prepares `SELECT 1` on each.
    pub async fn new(config: &tokio_postgres::Config, size: u32) -> anyhow::Result<Self> {
        let raw = Raw::new(config, size, Protocol::Prepared).await?;
        let conns = raw.conns.into_iter().map(|m| m.into_inner()).collect();
        Ok(Self { conns })
    }
}

impl AsyncOp for RawPipelined {
    async fn run(&self, task: usize) -> anyhow::Result<()> {
        let Some(conn) = self.conns.get(task % self.conns.len().max(1)) else {
            bail!("no raw connections");
        };
        check_rows(conn.client.query(&conn.statement, &[]).await?.len())
    }
}

// ---------------------------------------------------------------- deadpool

/// deadpool-postgres with `RecyclingMethod::Fast`: `get` →
/// `prepare_cached` + `query` (or `simple_query`) → drop.
pub struct Deadpool {
    pool: deadpool_postgres::Pool,
    protocol: Protocol,
}

impl Deadpool {
    /// Builds the pool (deadpool opens connections on demand; the warm-up fills it).
    pub fn new(
        config: &tokio_postgres::Config,
        size: u32,
        protocol: Protocol,
    ) -> anyhow::Result<Self> {
        let manager = deadpool_postgres::Manager::from_config(
            config.clone(),
            NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(size as usize)
            .build()
            .context("building deadpool's pool")?;
        Ok(Self { pool, protocol })
    }

    /// Closes the pool.
    pub fn close(&self) {
        self.pool.close();
    }
}

impl AsyncOp for Deadpool {
    async fn run(&self, _task: usize) -> anyhow::Result<()> {
        let client = self.pool.get().await?;
        match self.protocol {
            Protocol::Prepared => {
                let statement = client.prepare_cached(SQL).await?;
                check_rows(client.query(&statement, &[]).await?.len())
            }
            Protocol::Simple => check_simple(&client.simple_query(SQL).await?),
        }
    }
}

// ---------------------------------------------------------------- bb8

/// bb8-postgres with `test_on_check_out(false)`: `get` → `prepare` + `query`
/// (bb8 has no statement cache) or `simple_query` → drop.
pub struct Bb8 {
    pool: bb8::Pool<bb8_postgres::PostgresConnectionManager<NoTls>>,
    protocol: Protocol,
}

impl Bb8 {
    /// Builds the pool with `min_idle = max_size = size`.
    pub async fn new(
        config: &tokio_postgres::Config,
        size: u32,
        protocol: Protocol,
    ) -> anyhow::Result<Self> {
        let manager = bb8_postgres::PostgresConnectionManager::new(config.clone(), NoTls);
        let pool = bb8::Pool::builder()
            .max_size(size)
            .min_idle(Some(size))
            .test_on_check_out(false)
            .build(manager)
            .await
            .context("building bb8's pool")?;
        Ok(Self { pool, protocol })
    }
}

impl AsyncOp for Bb8 {
    async fn run(&self, _task: usize) -> anyhow::Result<()> {
        let conn = self.pool.get().await?;
        select1_unprepared(&conn, self.protocol).await
    }
}

// ---------------------------------------------------------------- raw

/// One dedicated connection of [`Raw`] with its statement prepared once.
struct RawConn {
    client: Client,
    statement: Statement,
}

/// The cost floor of the client library: `size` dedicated tokio-postgres
/// connections, no pool. Task `i` always uses connection `i % size`, taken
/// exclusively through a per-connection `tokio::sync::Mutex` (uncontended, one
/// atomic operation, while concurrency ≤ size; a FIFO queue per connection
/// above it), so no two statements are ever pipelined on one connection, as
/// with a pool.
pub struct Raw {
    conns: Vec<tokio::sync::Mutex<RawConn>>,
    protocol: Protocol,
}

impl Raw {
    /// Opens `size` connections and prepares `SELECT 1` on each.
    pub async fn new(
        config: &tokio_postgres::Config,
        size: u32,
        protocol: Protocol,
    ) -> anyhow::Result<Self> {
        let mut conns = Vec::with_capacity(size as usize);
        for _ in 0..size {
            let (client, connection) = config
                .connect(NoTls)
                .await
                .context("opening a raw connection")?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            let statement = client.prepare(SQL).await?;
            conns.push(tokio::sync::Mutex::new(RawConn { client, statement }));
        }
        Ok(Self { conns, protocol })
    }
}

impl AsyncOp for Raw {
    async fn run(&self, task: usize) -> anyhow::Result<()> {
        let Some(slot) = self.conns.get(task % self.conns.len().max(1)) else {
            bail!("no raw connections");
        };
        let conn = slot.lock().await;
        select1(&conn.client, &conn.statement, self.protocol).await
    }
}

// ---------------------------------------------------------------- r2d2

/// r2d2 + r2d2_postgres on OS threads with `test_on_check_out(false)`: `get`
/// → `prepare` + `query` (no statement cache) or `simple_query` → drop.
pub struct R2d2 {
    pool: r2d2::Pool<r2d2_postgres::PostgresConnectionManager<postgres::NoTls>>,
    protocol: Protocol,
}

impl R2d2 {
    /// Builds the pool (r2d2 opens `max_size` connections before returning).
    /// Blocks: call it outside any tokio runtime.
    pub fn new(url: &str, size: u32, protocol: Protocol) -> anyhow::Result<Self> {
        let config: postgres::Config = url.parse().context("parsing the server's URL")?;
        let manager = r2d2_postgres::PostgresConnectionManager::new(config, postgres::NoTls);
        let pool = r2d2::Pool::builder()
            .max_size(size)
            .test_on_check_out(false)
            .build(manager)
            .context("building r2d2's pool")?;
        Ok(Self { pool, protocol })
    }
}

impl ThreadOp for R2d2 {
    fn run(&self, _thread: usize) -> anyhow::Result<()> {
        let mut conn = self.pool.get()?;
        match self.protocol {
            Protocol::Prepared => {
                let statement = conn.prepare(SQL)?;
                check_rows(conn.query(&statement, &[])?.len())
            }
            Protocol::Simple => check_simple(&conn.simple_query(SQL)?),
        }
    }
}

// ---------------------------------------------------------------- pgline-sync

/// pgline's blocking backend (`pgline-sync`, on r2d2) on OS threads, with its
/// statement cache and its 500 ms validation threshold: `get` → `query` (or
/// `simple_query`) → drop (the clean-state check runs in the guard's drop).
pub struct PglineSync {
    pool: pgline_sync::SyncPool,
    protocol: Protocol,
}

impl PglineSync {
    /// Builds the pool and opens all `size` connections. Blocks: call it
    /// outside any tokio runtime.
    pub fn new(
        config: tokio_postgres::Config,
        size: u32,
        protocol: Protocol,
    ) -> anyhow::Result<Self> {
        let pool = pgline_sync::SyncPool::new(
            pgline_sync::SyncManager::new(config, None, 100),
            pgline_sync::PoolOptions::new(size, size),
        )?;
        pool.initialize()?;
        Ok(Self { pool, protocol })
    }
}

impl ThreadOp for PglineSync {
    fn run(&self, _thread: usize) -> anyhow::Result<()> {
        let mut conn = self.pool.get()?;
        match self.protocol {
            Protocol::Prepared => check_rows(conn.query(SQL, &[])?.len()),
            Protocol::Simple => check_simple(&conn.simple_query(SQL)?),
        }
    }
}

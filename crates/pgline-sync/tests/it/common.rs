use std::time::{Duration, Instant};

use pgline_sync::{PoolOptions, SyncClient, SyncManager, SyncPool};
use pgline_testkit::PgServer;

/// A pool on a fresh database of the shared server (blocking; no runtime needed).
pub fn pool(min: u32, max: u32) -> SyncPool {
    pool_with(PoolOptions::new(min, max))
}

pub fn pool_with(options: PoolOptions) -> SyncPool {
    let server = PgServer::shared();
    let db = server.fresh_database_blocking().expect("fresh database");
    pool_on(server, &db, options)
}

pub fn pool_on(server: &PgServer, db: &str, options: PoolOptions) -> SyncPool {
    let manager = SyncManager::new(server.config(db), None, 100);
    let pool = SyncPool::new(manager, options).expect("valid options");
    pool.initialize().expect("pool initializes");
    pool
}

/// True when the connection is outside any transaction block: in autocommit
/// a simple query's transaction starts with the statement, inside a block it
/// started earlier.
pub fn outside_transaction(conn: &mut SyncClient) -> bool {
    simple_bool(conn, "SELECT now() = statement_timestamp()")
}

pub fn simple_bool(conn: &mut SyncClient, sql: &str) -> bool {
    conn.simple_query(sql)
        .expect("check query")
        .into_iter()
        .find_map(|m| match m {
            pgline_sync::postgres::SimpleQueryMessage::Row(row) => Some(row.get(0) == Some("t")),
            _ => None,
        })
        .unwrap_or(false)
}

/// Polls `check` until it holds or `bound` passes; returns whether it held.
pub fn eventually(bound: Duration, mut check: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    loop {
        if check() {
            return true;
        }
        if started.elapsed() > bound {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Rows in table `t`.
pub fn count(pool: &SyncPool) -> i64 {
    pool.query_one("SELECT count(*) FROM t", &[])
        .unwrap()
        .get(0)
}

/// Sessions of this pool's database left idle inside a transaction.
pub fn idle_in_transaction(pool: &SyncPool) -> i64 {
    pool.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
        &[],
    )
    .unwrap()
    .get(0)
}

use std::time::Duration;

use pgline_async::{PgManager, PgPool, PoolOptions};
use pgline_testkit::PgServer;

/// A pool on a fresh database of the shared server.
pub async fn pool(min: u32, max: u32) -> PgPool {
    pool_with(PoolOptions::new(min, max)).await
}

pub async fn pool_with(options: PoolOptions) -> PgPool {
    let server = PgServer::shared();
    let db = server.fresh_database().await.expect("fresh database");
    pool_on(server, &db, options).await
}

pub async fn pool_on(server: &PgServer, db: &str, options: PoolOptions) -> PgPool {
    let options = options.with_acquire_timeout(Duration::from_secs(10));
    let manager = PgManager::new(server.config(db), None, 100);
    let pool = PgPool::new(manager, options).expect("valid options");
    pool.initialize().await.expect("pool initializes");
    pool
}

/// True when the connection is outside any transaction block: in autocommit
/// a simple query's transaction starts with the statement, inside a block it
/// started earlier. (The simple protocol matters: with the extended protocol
/// the statement timestamp moves between Bind and Execute.)
pub async fn outside_transaction(conn: &pgline_async::PgConnection) -> bool {
    simple_bool(conn, "SELECT now() = statement_timestamp()")
        .await
        .expect("check query")
}

pub async fn simple_bool(
    conn: &pgline_async::PgConnection,
    sql: &str,
) -> Result<bool, pgline_core::DbError> {
    let messages = conn.simple_query(sql).await?;
    for m in messages {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = m {
            return Ok(row.get(0) == Some("t"));
        }
    }
    Ok(false)
}

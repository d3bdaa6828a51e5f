//! A connection is never handed out inside a transaction, with an unfinished
//! query, or closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use pgline_async::PoolOptions;
use pgline_core::Database;

use crate::common::{outside_transaction, pool, pool_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_transaction_guard_is_rolled_back_before_reuse() {
    let pool = pool(1, 1).await;
    pool.batch_execute("CREATE TABLE t (v int)").await.unwrap();
    {
        let conn = pool.acquire().await.unwrap();
        let tx = conn.transaction().await.unwrap();
        tx.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap();
        // dropped without commit
    }
    let conn = pool.acquire().await.unwrap();
    assert!(outside_transaction(&conn).await);
    let n: i64 = conn
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_begin_is_detected_and_reset() {
    let pool = pool(1, 1).await;
    for sql in [
        "BEGIN",
        "begin isolation level serializable",
        "SELECT 1; START TRANSACTION",
    ] {
        {
            let conn = pool.acquire().await.unwrap();
            conn.batch_execute(sql).await.unwrap();
            assert!(
                !outside_transaction(&conn).await,
                "{sql} opened a transaction"
            );
        }
        let conn = pool.acquire().await.unwrap();
        assert!(
            outside_transaction(&conn).await,
            "handed out inside a transaction after {sql}"
        );
    }
    // Through the raw client too.
    {
        let conn = pool.acquire().await.unwrap();
        conn.client_unchecked()
            .batch_execute("BEGIN")
            .await
            .unwrap();
    }
    let conn = pool.acquire().await.unwrap();
    assert!(outside_transaction(&conn).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_transaction_is_reset() {
    let pool = pool(1, 1).await;
    {
        let conn = pool.acquire().await.unwrap();
        conn.batch_execute("BEGIN").await.unwrap();
        assert!(conn.batch_execute("SELECT 1/0").await.is_err());
    }
    let conn = pool.acquire().await.unwrap();
    assert!(outside_transaction(&conn).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_query_is_cancelled_on_the_server() {
    let pool = pool(1, 1).await;
    let db: String = pool
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    let pid: i32 = pool
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    {
        let conn = pool.acquire().await.unwrap();
        let slow = conn.query("SELECT pg_sleep(30)", &[]);
        assert!(
            tokio::time::timeout(Duration::from_millis(100), slow)
                .await
                .is_err()
        );
    }
    let started = std::time::Instant::now();
    let conn = pool.acquire().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "acquire waited for pg_sleep(30)"
    );
    assert!(outside_transaction(&conn).await);
    let other: i32 = conn
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(
        other, pid,
        "a connection with a cancelled statement must not be reused"
    );
    drop(conn);
    // The statement itself was stopped on the server, not left to run 30 s.
    let server = pgline_testkit::PgServer::shared();
    let mut gone = false;
    for _ in 0..100 {
        let running = server
            .query_scalar_i64(&format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND query = 'SELECT pg_sleep(30)' AND state = 'active'"
            ))
            .await
            .unwrap();
        if running == 0 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone, "pg_sleep(30) still runs on the server");
}

/// Thousands of operations cancelled at random points, including inside
/// transactions; every hand-out is checked to be outside any transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_cancellation_never_leaks_a_dirty_connection() {
    let pool = pool_with(PoolOptions::new(2, 8)).await;
    pool.batch_execute("CREATE TABLE t (v int)").await.unwrap();
    let dirty = Arc::new(AtomicU64::new(0));
    let checked = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..16u64 {
        let (pool, dirty, checked) = (pool.clone(), dirty.clone(), checked.clone());
        workers.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(w);
            for _ in 0..200 {
                let budget = Duration::from_micros(rng.u64(1_000..40_000));
                let op = rng.u8(0..6);
                let work = async {
                    let conn = pool.acquire().await?;
                    // The hand-out check itself.
                    let clean =
                        crate::common::simple_bool(&conn, "SELECT now() = statement_timestamp()")
                            .await?;
                    checked.fetch_add(1, SeqCst);
                    if !clean {
                        dirty.fetch_add(1, SeqCst);
                    }
                    match op {
                        0 => {
                            conn.query("SELECT pg_sleep(0.002)", &[]).await?;
                        }
                        1 => {
                            let tx = conn.transaction().await?;
                            tx.execute("INSERT INTO t VALUES (1)", &[]).await?;
                            tx.query("SELECT pg_sleep(0.001)", &[]).await?;
                            tx.commit().await?;
                        }
                        2 => {
                            let tx = conn.transaction().await?;
                            tx.execute("INSERT INTO t VALUES (2)", &[]).await?;
                            // dropped without commit
                        }
                        3 => {
                            conn.batch_execute("BEGIN; INSERT INTO t VALUES (3)")
                                .await?;
                        }
                        4 => {
                            let _ = conn.batch_execute("BEGIN; SELECT 1/0").await;
                        }
                        _ => {
                            conn.execute("INSERT INTO t VALUES (5)", &[]).await?;
                        }
                    }
                    Ok::<_, pgline_core::DbError>(())
                };
                let _ = tokio::time::timeout(budget, work).await;
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = pool.stats();
    assert_eq!(s.in_use, 0, "{s:?}");
    assert!(
        checked.load(SeqCst) > 50,
        "too few checks ran: {}",
        checked.load(SeqCst)
    );
    assert_eq!(
        dirty.load(SeqCst),
        0,
        "connections handed out inside a transaction"
    );
    // And from the server's side: no backend of ours is idle in transaction.
    let conn = pool.acquire().await.unwrap();
    let stuck: i64 = conn
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stuck, 0);
    // Only types 1 (committed) and 5 (autocommit) may have left rows.
    let bad: i64 = conn
        .query_one("SELECT count(*) FROM t WHERE v IN (2, 3)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(bad, 0, "rows of rolled-back transactions survived");
    println!("hand-out checks: {}, pool: {s:?}", checked.load(SeqCst));
}

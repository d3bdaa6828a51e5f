//! The pool through the core `Database` trait: queries, transactions, stats.

use std::time::Duration;

use pgline_core::{Database, DbError};

use crate::common::pool;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameterized_values_are_stored_verbatim() {
    let pool = pool(1, 4).await;
    pool.batch_execute("CREATE TABLE t (v text)").await.unwrap();
    let hostile = "x'); DROP TABLE t; --";
    let n = pool
        .execute("INSERT INTO t (v) VALUES ($1)", &[&hostile])
        .await
        .unwrap();
    assert_eq!(n, 1);
    let row = pool.query_one("SELECT v FROM t", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), hostile);
    assert_eq!(pool.stats().in_use, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_commit_and_roll_back() {
    let pool = pool(1, 4).await;
    pool.batch_execute("CREATE TABLE t (v int PRIMARY KEY)")
        .await
        .unwrap();
    let n: u64 = pool
        .transaction(|tx| {
            Box::pin(async move {
                tx.execute("INSERT INTO t VALUES (1)", &[]).await?;
                tx.execute("INSERT INTO t VALUES (2)", &[]).await
            })
        })
        .await
        .unwrap();
    assert_eq!(n, 1);
    let failed: Result<(), DbError> = pool
        .transaction(|tx| {
            Box::pin(async move {
                tx.execute("INSERT INTO t VALUES (3)", &[]).await?;
                tx.execute("INSERT INTO t VALUES (1)", &[]).await?; // duplicate
                Ok(())
            })
        })
        .await;
    let err = failed.unwrap_err();
    assert!(err.is_unique_violation(), "{err}");
    assert!(!err.trips_breaker());
    let count: i64 = pool
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 2, "the failed transaction left nothing behind");
    let s = pool.stats();
    assert_eq!(s.in_use, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_transaction_rolls_back() {
    let pool = pool(1, 2).await;
    pool.batch_execute("CREATE TABLE t (v int)").await.unwrap();
    let p = pool.clone();
    let joined = tokio::spawn(async move {
        let _: Result<(), DbError> = p
            .transaction(|tx| {
                Box::pin(async move {
                    tx.execute("INSERT INTO t VALUES (1)", &[]).await?;
                    panic!("station controller bug");
                })
            })
            .await;
    })
    .await;
    assert!(joined.unwrap_err().is_panic());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let count: i64 = pool
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0);
    let s = pool.stats();
    assert_eq!(s.in_use, 0);
    // Every connection handed out is clean.
    for _ in 0..4 {
        let c = pool.acquire().await.unwrap();
        assert!(crate::common::outside_transaction(&c).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_transaction_rolls_back() {
    let pool = pool(1, 1).await;
    pool.batch_execute("CREATE TABLE t (v int)").await.unwrap();
    let cancelled = tokio::time::timeout(
        Duration::from_millis(200),
        pool.transaction(|tx| {
            Box::pin(async move {
                tx.execute("INSERT INTO t VALUES (1)", &[]).await?;
                tx.query("SELECT pg_sleep(5)", &[]).await?;
                Ok::<_, DbError>(())
            })
        }),
    )
    .await;
    assert!(
        cancelled.is_err(),
        "the transaction should have been cancelled"
    );
    // The single connection is cancelled on the server and rolled back before reuse.
    let started = std::time::Instant::now();
    let conn = pool.acquire().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the sleep was not cancelled on the server"
    );
    assert!(crate::common::outside_transaction(&conn).await);
    drop(conn);
    let count: i64 = pool
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_one_and_opt_check_row_counts() {
    let pool = pool(1, 2).await;
    assert!(
        pool.query_opt("SELECT 1 WHERE false", &[])
            .await
            .unwrap()
            .is_none()
    );
    let err = pool
        .query_one("SELECT 1 WHERE false", &[])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("0 rows"), "{err}");
    let err = pool
        .query_opt("SELECT * FROM generate_series(1, 2)", &[])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("2 rows"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_response_time_and_stats() {
    let pool = pool(2, 4).await;
    let report = pool.health(Duration::from_secs(2)).await;
    assert!(report.healthy, "{report:?}");
    assert_eq!(report.backend, "async");
    assert!(report.stats.total >= 2);
    assert!(report.error.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tasks_share_twenty_connections() {
    let pool = pool(5, 20).await;
    let mut tasks = Vec::new();
    for i in 0..1000i32 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let row = pool.query_one("SELECT $1::int + 1", &[&i]).await.unwrap();
            assert_eq!(row.get::<_, i32>(0), i + 1);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = pool.stats();
    assert!(s.total <= 20, "{s:?}");
    assert_eq!(s.in_use, 0);
    assert_eq!(s.acquired_total, 1000);
    assert_eq!(s.acquire_timeouts_total, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_errors_do_not_break_the_connection() {
    let pool = pool(1, 1).await;
    let err = pool.query("SELEC 1", &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(&pgline_core::SqlState::SYNTAX_ERROR));
    assert!(err.is_permanent());
    let err = pool
        .query("SELECT $1::int", &[&"not a number"])
        .await
        .unwrap_err();
    assert!(
        !err.to_string().contains("not a number"),
        "parameter value leaked: {err}"
    );
    let row = pool.query_one("SELECT 2", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 2);
    assert_eq!(pool.stats().created_total, 1);
}

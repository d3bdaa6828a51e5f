//! The resilience layer around the real async pool.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::Duration;

use pgline_async::{PgManager, PgPool, PoolOptions};
use pgline_core::{Database, DbError};
use pgline_resilience::{BreakerOptions, ResilienceOptions, Resilient, RetryOptions};
use pgline_testkit::PgServer;

async fn resilient() -> Resilient<PgPool> {
    let server = PgServer::shared();
    let db = server.fresh_database().await.unwrap();
    let pool = PgPool::new(
        PgManager::new(server.config(&db), None, 100),
        PoolOptions::new(1, 4),
    )
    .unwrap();
    pool.initialize().await.unwrap();
    pool.batch_execute("CREATE TABLE t (v int)").await.unwrap();
    Resilient::new(
        pool,
        ResilienceOptions::new(
            BreakerOptions::new(5, Duration::from_secs(1)),
            RetryOptions::new(3).with_backoff(Duration::from_millis(5), Duration::from_millis(20)),
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serialization_failure_reruns_the_whole_transaction() {
    let db = resilient().await;
    let runs = AtomicU32::new(0);
    db.transaction(|tx| {
        let first = runs.fetch_add(1, SeqCst) == 0;
        Box::pin(async move {
            tx.execute("INSERT INTO t VALUES (1)", &[]).await?;
            if first {
                tx.batch_execute(
                    "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$",
                )
                .await?;
            }
            Ok::<_, DbError>(())
        })
    })
    .await
    .unwrap();
    assert_eq!(runs.load(SeqCst), 2);
    let n: i64 = db
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "the first run was rolled back, the second committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_before_commit_reruns_the_transaction() {
    let db = resilient().await;
    let runs = AtomicU32::new(0);
    db.transaction(|tx| {
        let first = runs.fetch_add(1, SeqCst) == 0;
        Box::pin(async move {
            tx.execute("INSERT INTO t VALUES (7)", &[]).await?;
            if first {
                // The backend kills itself mid-transaction.
                let _ = tx
                    .query("SELECT pg_terminate_backend(pg_backend_pid())", &[])
                    .await;
                tx.execute("INSERT INTO t VALUES (8)", &[]).await?;
            }
            Ok::<_, DbError>(())
        })
    })
    .await
    .unwrap();
    assert_eq!(runs.load(SeqCst), 2);
    let rows: Vec<i32> = db
        .query("SELECT v FROM t ORDER BY v", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, [7]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constraint_violations_are_not_retried_and_do_not_trip() {
    let db = resilient().await;
    db.batch_execute("CREATE TABLE u (v int PRIMARY KEY); INSERT INTO u VALUES (1)")
        .await
        .unwrap();
    for _ in 0..10 {
        let runs = AtomicU32::new(0);
        let err: DbError = db
            .transaction(|tx| {
                runs.fetch_add(1, SeqCst);
                Box::pin(async move {
                    tx.execute("INSERT INTO u VALUES (1)", &[])
                        .await
                        .map(|_| ())
                })
            })
            .await
            .unwrap_err();
        assert!(err.is_unique_violation());
        assert_eq!(runs.load(SeqCst), 1);
    }
    assert!(db.is_available());
}

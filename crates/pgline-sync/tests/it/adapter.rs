//! The sync pool from async code: the core `Database` trait on tokio's
//! multi-thread and current-thread runtimes, where the blocking client would
//! panic if called directly.

use std::sync::Arc;
use std::time::Duration;

use pgline_core::{Database, DbError, ErrorKind, Session};
use pgline_sync::SyncPool;

use crate::common::{count, idle_in_transaction, outside_transaction};

/// A pool built off the runtime thread (the testkit's blocking helpers and
/// `initialize` would block it; they would not panic, see below).
async fn pool(min: u32, max: u32) -> SyncPool {
    tokio::task::spawn_blocking(move || crate::common::pool(min, max))
        .await
        .unwrap()
}

async fn poll_until(bound: Duration, mut check: impl FnMut() -> bool) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < bound {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    check()
}

async fn insert_and_count(tx: &mut dyn Session, v: i32) -> Result<i64, DbError> {
    tx.execute("INSERT INTO t VALUES ($1)", &[&v]).await?;
    let row = tx.query_one("SELECT count(*) FROM t", &[]).await?;
    Ok(row.get(0))
}

/// The whole trait surface, run from either runtime flavor. Generic, as
/// domain code is: on a `SyncPool` value the inherent blocking methods of the
/// same names would win over the trait's.
async fn exercise<D: Database>(db: D) {
    let db = Arc::new(db);
    db.batch_execute("CREATE TABLE t (v int PRIMARY KEY)")
        .await
        .unwrap();
    assert_eq!(
        db.execute("INSERT INTO t VALUES ($1), ($2)", &[&1, &2])
            .await
            .unwrap(),
        2
    );
    // Commit, through helper functions taking the session.
    let seen = db
        .transaction(|tx| {
            Box::pin(async move {
                insert_and_count(tx, 3).await?;
                // Awaiting something else between statements is fine.
                tokio::task::yield_now().await;
                insert_and_count(tx, 4).await
            })
        })
        .await
        .unwrap();
    assert_eq!(seen, 4, "reads its own writes");
    // Rollback on a statement error.
    let err = db
        .transaction(|tx| {
            Box::pin(async move {
                tx.execute("INSERT INTO t VALUES (5)", &[]).await?;
                tx.execute("INSERT INTO t VALUES (1)", &[]).await
            })
        })
        .await
        .unwrap_err();
    assert!(err.is_unique_violation(), "{err}");
    // Rollback on panic.
    let db2 = Arc::clone(&db);
    let joined = tokio::spawn(async move {
        let _: Result<(), DbError> = db2
            .transaction(|tx| {
                Box::pin(async move {
                    tx.execute("INSERT INTO t VALUES (6)", &[]).await?;
                    panic!("async station bug");
                })
            })
            .await;
    })
    .await;
    assert!(joined.unwrap_err().is_panic());
    // Rollback on cancellation, between statements.
    let (inserted_tx, inserted_rx) = tokio::sync::oneshot::channel::<()>();
    let inserted_tx = std::sync::Mutex::new(Some(inserted_tx));
    tokio::select! {
        _ = db.transaction(|tx| {
            let signal = inserted_tx.lock().unwrap().take();
            Box::pin(async move {
                tx.execute("INSERT INTO t VALUES (7)", &[]).await?;
                if let Some(signal) = signal {
                    let _ = signal.send(());
                }
                std::future::pending::<()>().await;
                Ok::<_, DbError>(())
            })
        }) => panic!("the transaction cannot finish"),
        _ = inserted_rx => {}
    }
    assert!(
        poll_until(Duration::from_secs(5), || db.stats().in_use == 0).await,
        "{:?}",
        db.stats()
    );
    let left: Vec<i32> = db
        .query("SELECT v FROM t ORDER BY v", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, [1, 2, 3, 4]);
    let stuck: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stuck, 0);
    let report = db.health(Duration::from_secs(2)).await;
    assert!(report.healthy, "{report:?}");
    assert_eq!(report.backend, "sync");
    assert_eq!(db.backend(), "sync");
    let report = db.close(Duration::from_secs(2)).await;
    assert_eq!(report.still_in_use, 0, "{report:?}");
    let err = db.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::PoolClosed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_trait_works_on_a_multi_thread_runtime() {
    exercise(pool(1, 2).await).await;
}

#[tokio::test]
async fn the_database_trait_works_on_a_current_thread_runtime() {
    exercise(pool(1, 2).await).await;
}

/// The blocking API itself, called straight from runtime threads, leaves the
/// runtime before it blocks instead of panicking ("Cannot start a runtime
/// from within a runtime").
async fn blocking_api_on_a_runtime_thread() {
    let pool = pool(1, 1).await;
    pool.batch_execute("CREATE TABLE t (v int)").unwrap();
    {
        let mut conn = pool.get().unwrap();
        let mut tx = conn.transaction().unwrap();
        tx.execute("INSERT INTO t VALUES (1)", &[]).unwrap();
        // Dropped on the runtime thread, where it cannot roll back: the next
        // statement on this connection rolls back first.
        drop(tx);
        assert!(outside_transaction(&mut conn));
        let mut tx = conn.transaction().unwrap();
        tx.execute("INSERT INTO t VALUES (2)", &[]).unwrap();
        // And dropped with the connection: rolled back off the runtime.
    }
    assert_eq!(count(&pool), 0);
    assert_eq!(idle_in_transaction(&pool), 0);
    pool.transaction(|tx| tx.execute("INSERT INTO t VALUES (3)", &[]))
        .unwrap();
    assert_eq!(count(&pool), 1);
    // Dropping the last handle with idle connections closes them off the runtime.
    drop(pool);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blocking_api_does_not_panic_on_a_multi_thread_worker() {
    blocking_api_on_a_runtime_thread().await;
}

#[tokio::test]
async fn the_blocking_api_does_not_panic_on_a_current_thread_runtime() {
    blocking_api_on_a_runtime_thread().await;
}

/// Many tasks on two workers share a small sync pool through the trait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_share_a_small_pool() {
    share(pool(2, 4).await).await;
}

async fn share<D: Database>(db: D) {
    let db = Arc::new(db);
    let mut tasks = Vec::new();
    for i in 0..200i32 {
        let db = Arc::clone(&db);
        tasks.push(tokio::spawn(async move {
            let row = db.query_one("SELECT $1::int + 1", &[&i]).await.unwrap();
            assert_eq!(row.get::<_, i32>(0), i + 1);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = db.stats();
    assert!(s.total <= 4, "{s:?}");
    assert_eq!(s.in_use, 0, "{s:?}");
    assert_eq!(s.acquired_total, 200, "{s:?}");
    assert_eq!(s.acquire_timeouts_total, 0, "{s:?}");
}

/// `close` from a current-thread runtime lets the task holding a connection
/// finish instead of blocking the only thread until the deadline.
#[tokio::test]
async fn close_waits_for_a_task_holding_a_connection() {
    close_with_holder(pool(1, 2).await).await;
}

async fn close_with_holder<D: Database>(db: D) {
    let db = Arc::new(db);
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let (held_tx, mut held_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let holder = {
        let db = Arc::clone(&db);
        tokio::spawn(async move {
            db.transaction(|tx| {
                let (mut release, held) = (release_rx.clone(), held_tx.clone());
                Box::pin(async move {
                    tx.query("SELECT 1", &[]).await?;
                    let _ = held.send(());
                    let _ = release.wait_for(|go| *go).await;
                    Ok::<_, DbError>(())
                })
            })
            .await
        })
    };
    held_rx.recv().await.unwrap();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = release_tx.send(true);
    });
    let report = db.close(Duration::from_secs(5)).await;
    assert_eq!(report.still_in_use, 0, "{report:?}");
    assert_eq!(report.closed_after_return, 1, "{report:?}");
    assert!(report.elapsed_ms < 4000, "{report:?}");
    holder.await.unwrap().unwrap();
    assert_eq!(db.stats().total, 0, "{:?}", db.stats());
}

/// Operations cancelled at random points between statements, from many
/// tasks; every hand-out is checked to be outside any transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_cancellation_never_leaks_a_dirty_connection() {
    let pool = pool(2, 4).await;
    pool.batch_execute("CREATE TABLE t (v int)").unwrap();
    let dirty = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..8u64 {
        let (pool, dirty) = (pool.clone(), Arc::clone(&dirty));
        workers.push(tokio::spawn(async move {
            let mut seed = w * 7919 + 1;
            let mut next = move |n: u64| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 33) % n
            };
            for _ in 0..40 {
                // The hand-out check, through the blocking API on a worker.
                {
                    let mut conn = pool.get().unwrap();
                    if !outside_transaction(&mut conn) {
                        dirty.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
                let budget = Duration::from_micros(next(3000));
                let op = next(4);
                let db = &pool;
                let work = async move {
                    match op {
                        0 => {
                            Database::transaction(db, |tx| {
                                Box::pin(async move {
                                    tx.execute("INSERT INTO t VALUES (1)", &[]).await?;
                                    tokio::time::sleep(Duration::from_millis(1)).await;
                                    tx.execute("INSERT INTO t VALUES (1)", &[]).await
                                })
                            })
                            .await?;
                        }
                        1 => {
                            Database::transaction(db, |tx| {
                                Box::pin(async move {
                                    tx.execute("INSERT INTO t VALUES (2)", &[]).await?;
                                    std::future::pending::<()>().await;
                                    Ok::<_, DbError>(())
                                })
                            })
                            .await?;
                        }
                        2 => Database::batch_execute(db, "BEGIN; INSERT INTO t VALUES (3)").await?,
                        _ => {
                            Database::execute(db, "INSERT INTO t VALUES (4)", &[]).await?;
                        }
                    }
                    Ok::<_, DbError>(())
                };
                let _ = tokio::time::timeout(budget, work).await;
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    assert!(
        poll_until(Duration::from_secs(5), || pool.stats().in_use == 0).await,
        "{:?}",
        pool.stats()
    );
    assert_eq!(dirty.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(idle_in_transaction(&pool), 0);
    let bad: i64 = pool
        .query_one("SELECT count(*) FROM t WHERE v IN (2, 3)", &[])
        .unwrap()
        .get(0);
    assert_eq!(bad, 0, "rows of rolled-back transactions survived");
    println!("pool after the storm: {:?}", pool.stats());
}

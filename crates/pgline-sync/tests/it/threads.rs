//! The blocking API from plain threads: statements, transactions, sharing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use pgline_core::{DbError, ErrorKind};
use pgline_sync::PoolOptions;

use crate::common::{count, eventually, idle_in_transaction, outside_transaction, pool, pool_with};

#[test]
fn parameterized_values_are_stored_verbatim() {
    let pool = pool(1, 2);
    pool.batch_execute("CREATE TABLE t (v text)").unwrap();
    let hostile = "x'); DROP TABLE t; --";
    assert_eq!(
        pool.execute("INSERT INTO t (v) VALUES ($1)", &[&hostile])
            .unwrap(),
        1
    );
    let row = pool.query_one("SELECT v FROM t", &[]).unwrap();
    assert_eq!(row.get::<_, String>(0), hostile);
    assert!(
        pool.query_opt("SELECT v FROM t WHERE v = $1", &[&"' OR '1'='1"])
            .unwrap()
            .is_none()
    );
    assert_eq!(pool.stats().in_use, 0);
}

#[test]
fn transactions_commit_and_roll_back_on_error() {
    let pool = pool(1, 2);
    pool.batch_execute("CREATE TABLE t (v int PRIMARY KEY)")
        .unwrap();
    let n = pool
        .transaction(|tx| {
            tx.execute("INSERT INTO t VALUES (1)", &[])?;
            tx.execute("INSERT INTO t VALUES (2)", &[])
        })
        .unwrap();
    assert_eq!(n, 1);
    let err = pool
        .transaction(|tx| {
            tx.execute("INSERT INTO t VALUES (3)", &[])?;
            tx.execute("INSERT INTO t VALUES (1)", &[]) // duplicate
        })
        .unwrap_err();
    assert!(err.is_unique_violation(), "{err}");

    #[derive(Debug)]
    enum Domain {
        Db(DbError),
        NotAllowed,
    }
    impl From<DbError> for Domain {
        fn from(e: DbError) -> Self {
            Domain::Db(e)
        }
    }
    let err = pool
        .transaction(|tx| {
            tx.execute("INSERT INTO t VALUES (4)", &[])?;
            Err::<(), _>(Domain::NotAllowed)
        })
        .unwrap_err();
    assert!(matches!(err, Domain::NotAllowed), "{err:?}");
    if let Domain::Db(e) = err {
        panic!("unexpected {e}");
    }
    assert_eq!(
        count(&pool),
        2,
        "the failed transactions left nothing behind"
    );
    assert_eq!(pool.stats().in_use, 0);
}

#[test]
fn a_panicking_transaction_rolls_back_and_the_connection_is_reused() {
    let pool = pool(1, 1);
    pool.batch_execute("CREATE TABLE t (v int)").unwrap();
    let pid: i32 = pool
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let p = pool.clone();
    let joined = std::thread::spawn(move || {
        let _: Result<(), DbError> = p.transaction(|tx| {
            tx.execute("INSERT INTO t VALUES (1)", &[])?;
            panic!("station controller bug");
        });
    })
    .join();
    assert!(joined.is_err(), "the panic reached the thread");
    assert_eq!(
        pool.stats().in_use,
        0,
        "rolled back and returned during unwinding"
    );
    assert_eq!(count(&pool), 0);
    let mut conn = pool.get().unwrap();
    assert!(outside_transaction(&mut conn));
    let same: i32 = conn
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    assert_eq!(same, pid, "rolled back and reused, not replaced");
    assert_eq!(pool.stats().closed_total.total(), 0);
}

#[test]
fn a_dropped_transaction_rolls_back_at_once() {
    let pool = pool(1, 1);
    pool.batch_execute("CREATE TABLE t (v int)").unwrap();
    let mut conn = pool.get().unwrap();
    {
        let mut tx = conn.transaction().unwrap();
        tx.execute("INSERT INTO t VALUES (1)", &[]).unwrap();
        // dropped without commit
    }
    // Still holding the connection: it is already outside the transaction.
    assert!(outside_transaction(&mut conn));
    let n: i64 = conn
        .query_one("SELECT count(*) FROM t", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[test]
fn commit_and_explicit_rollback_on_a_held_connection() {
    let pool = pool(1, 1);
    pool.batch_execute("CREATE TABLE t (v int)").unwrap();
    let mut conn = pool.get().unwrap();
    let mut tx = conn.transaction().unwrap();
    tx.execute("INSERT INTO t VALUES (1)", &[]).unwrap();
    let seen: i64 = tx.query_one("SELECT count(*) FROM t", &[]).unwrap().get(0);
    assert_eq!(seen, 1, "reads its own writes");
    tx.commit().unwrap();
    let mut tx = conn.transaction().unwrap();
    tx.execute("INSERT INTO t VALUES (2)", &[]).unwrap();
    tx.rollback().unwrap();
    assert!(outside_transaction(&mut conn));
    drop(conn);
    assert_eq!(count(&pool), 1);
}

#[test]
fn eight_threads_share_three_connections() {
    let pool = pool(3, 3);
    pool.batch_execute("CREATE TABLE t (station int, n int)")
        .unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..8)
        .map(|station: i32| {
            let (pool, done) = (pool.clone(), done.clone());
            std::thread::spawn(move || {
                for n in 0..50i32 {
                    if n % 5 == 0 {
                        pool.transaction(|tx| {
                            tx.execute("INSERT INTO t VALUES ($1, $2)", &[&station, &n])?;
                            tx.execute("INSERT INTO t VALUES ($1, $2)", &[&station, &-n])
                        })
                        .unwrap();
                    } else {
                        let row = pool.query_one("SELECT $1::int * 2", &[&n]).unwrap();
                        assert_eq!(row.get::<_, i32>(0), n * 2);
                    }
                    done.fetch_add(1, SeqCst);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(done.load(SeqCst), 400);
    let s = pool.stats();
    assert!(s.total <= 3, "{s:?}");
    assert_eq!(s.in_use, 0, "{s:?}");
    assert_eq!(s.waiting, 0, "{s:?}");
    assert_eq!(s.acquired_total, 400 + 1, "{s:?}"); // + CREATE TABLE
    assert_eq!(s.acquire_timeouts_total, 0, "{s:?}");
    assert_eq!(count(&pool), 8 * 10 * 2);
    assert_eq!(idle_in_transaction(&pool), 0);
}

#[test]
fn acquire_times_out_with_the_counts_in_the_error() {
    let pool = pool_with(PoolOptions::new(1, 1).with_acquire_timeout(Duration::from_millis(300)));
    let held = pool.get().unwrap();
    let started = std::time::Instant::now();
    let err = pool.query("SELECT 1", &[]).unwrap_err();
    let waited = started.elapsed();
    assert!(err.is_timeout(), "{err}");
    assert!(err.trips_breaker());
    assert!(waited >= Duration::from_millis(290), "{waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    match err.kind() {
        ErrorKind::AcquireTimeout {
            waiting,
            in_use,
            max,
            ..
        } => {
            assert_eq!((*waiting, *in_use, *max), (1, 1, 1), "{err}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let s = pool.stats();
    assert_eq!(s.acquire_timeouts_total, 1);
    assert_eq!(s.waiting, 0);
    assert_eq!(s.in_use, 1);
    drop(held);
    assert!(eventually(Duration::from_secs(1), || pool.stats().in_use == 0));
    pool.query_one("SELECT 1", &[]).unwrap();
}

#[test]
fn a_waiter_gets_the_connection_when_it_is_returned() {
    let pool = pool(1, 1);
    let held = pool.get().unwrap();
    let p = pool.clone();
    let waiter = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let row = p.query_one("SELECT 7", &[]).unwrap();
        (row.get::<_, i32>(0), started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(pool.stats().waiting, 1);
    drop(held);
    let (v, waited) = waiter.join().unwrap();
    assert_eq!(v, 7);
    assert!(waited >= Duration::from_millis(140), "{waited:?}");
    let s = pool.stats();
    assert!(s.wait_time_max_us >= 140_000, "{s:?}");
}

#[test]
fn sql_errors_do_not_break_the_connection() {
    let pool = pool(1, 1);
    let err = pool.query("SELEC 1", &[]).unwrap_err();
    assert_eq!(err.code(), Some(&pgline_core::SqlState::SYNTAX_ERROR));
    assert!(err.is_permanent());
    let err = pool
        .query("SELECT $1::int", &[&"not a number"])
        .unwrap_err();
    assert!(
        !err.to_string().contains("not a number"),
        "parameter value leaked: {err}"
    );
    assert_eq!(pool.query_one("SELECT 2", &[]).unwrap().get::<_, i32>(0), 2);
    let s = pool.stats();
    assert_eq!(s.created_total, 1);
    assert_eq!(s.errors_total, 0, "statement errors are not pool errors");
}

#[test]
fn the_statement_cache_is_bounded_and_can_be_off() {
    use pgline_sync::{SyncManager, SyncPool};
    let server = pgline_testkit::PgServer::shared();
    let db = server.fresh_database_blocking().unwrap();
    for (cache, bound) in [(10, 11), (0, 1)] {
        let pool = SyncPool::new(
            SyncManager::new(server.config(&db), None, cache),
            PoolOptions::new(0, 1),
        )
        .unwrap();
        let mut conn = pool.get().unwrap();
        for i in 0..30 {
            conn.query(&format!("SELECT {i}"), &[]).unwrap();
        }
        let prepared: i64 = conn
            .query_one("SELECT count(*) FROM pg_prepared_statements", &[])
            .unwrap()
            .get(0);
        assert!(
            prepared <= bound,
            "cache {cache}: {prepared} statements kept"
        );
    }
}

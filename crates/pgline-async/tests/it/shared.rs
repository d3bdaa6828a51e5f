//! The shared (pipelined) path against a real server: many tasks on few
//! connections, refused statements, error isolation, dropped futures, the
//! server-side bound, broken connections, and connections that come back
//! clean.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use pgline_async::{PgPool, PoolOptions, SharedLane, SharedOptions};
use pgline_core::{Database, ErrorKind};
use tokio_postgres::error::SqlState;

use crate::common::{outside_transaction, pool, pool_with, simple_bool};

/// Every connection of the pool, checked out at once, is outside any
/// transaction and has the server's default `statement_timeout`.
async fn all_connections_clean(pool: &PgPool, n: usize) {
    let mut held = Vec::new();
    for _ in 0..n {
        let conn = pool.acquire().await.unwrap();
        assert!(outside_transaction(&conn).await, "inside a transaction");
        assert!(
            simple_bool(&conn, "SELECT current_setting('statement_timeout') = '0'")
                .await
                .unwrap(),
            "a session setting of the lane survived"
        );
        held.push(conn);
    }
}

/// Waits (bounded) until the pool has nothing in use.
async fn until_returned(pool: &PgPool) {
    for _ in 0..500 {
        let s = pool.stats();
        if s.in_use == 0 && s.idle == s.total {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("lane connections did not come back: {:?}", pool.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_share_two_connections_and_get_their_own_answers() {
    let pool = pool(3, 3).await;
    let lane = pool.shared(SharedOptions::new(2)).await.unwrap();
    // The lane's connections are checked out exclusively: the pool counts
    // them in use and hands out only the third.
    assert_eq!(lane.connections(), 2);
    assert_eq!(pool.stats().in_use, 2, "{:?}", pool.stats());
    let third = pool.acquire().await.unwrap();
    drop(third);

    let pids = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let mut tasks = Vec::new();
    for t in 0..300i64 {
        let (lane, pids) = (lane.clone(), pids.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..20i64 {
                let v = t * 1000 + i;
                let row = lane
                    .query_one("SELECT $1::int8 * 2, pg_backend_pid()", &[&v])
                    .await
                    .unwrap();
                assert_eq!(row.get::<_, i64>(0), v * 2);
                pids.lock().unwrap().insert(row.get::<_, i32>(1));
            }
            let n = lane
                .execute("SELECT generate_series(1, $1::int4)", &[&((t % 5) as i32)])
                .await
                .unwrap();
            assert_eq!(n, (t % 5) as u64);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        pids.lock().unwrap().len(),
        2,
        "statements ran on two backends"
    );
    lane.close().await;
    until_returned(&pool).await;
    assert_eq!(pool.stats().closed_total.total(), 0, "{:?}", pool.stats());
    all_connections_clean(&pool, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_and_transaction_statements_are_refused_before_reaching_the_server() {
    let pool = pool(1, 1).await;
    let lane = pool
        .shared(SharedOptions::new(1).with_statement_timeout(Duration::from_secs(7)))
        .await
        .unwrap();
    for sql in [
        "BEGIN",
        "SET statement_timeout = 0",
        "SELECT set_config('statement_timeout', '0', false)",
        "SELECT 1; SET statement_timeout = 0",
        "CREATE TEMP TABLE t (v int)",
        "LISTEN ch",
        "SELECT pg_advisory_lock(42)",
        "DISCARD ALL",
        "PREPARE p AS SELECT 1",
        "DECLARE c CURSOR FOR SELECT 1",
        "/* x */ reset all",
    ] {
        let e = lane.execute(sql, &[]).await.unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Rejected), "{sql}: {e}");
        assert!(e.to_string().contains("shared path"), "{sql}: {e}");
        let e = lane.query(sql, &[]).await.unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Rejected), "{sql}: {e}");
    }
    // Nothing reached the server: the session is as the lane set it.
    let row = lane
        .query_one(
            "SELECT current_setting('statement_timeout'), \
             (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "7s");
    assert_eq!(row.get::<_, i64>(1), 0);
    lane.close().await;
    until_returned(&pool).await;
    all_connections_clean(&pool, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_statement_does_not_disturb_the_others_on_one_connection() {
    let pool = pool(1, 1).await;
    pool.batch_execute("CREATE TABLE u (v int PRIMARY KEY)")
        .await
        .unwrap();
    pool.execute("INSERT INTO u VALUES (1)", &[]).await.unwrap();
    let lane = pool.shared(SharedOptions::new(1)).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..400i64 {
        let lane = lane.clone();
        tasks.push(tokio::spawn(async move {
            match t % 4 {
                0 => {
                    let e = lane.query("SELECT 1 / ($1::int8 - $1)", &[&t]).await;
                    let e = e.expect_err("division by zero");
                    assert_eq!(e.code(), Some(&SqlState::DIVISION_BY_ZERO));
                    None
                }
                1 if t % 8 == 1 => {
                    let e = lane.execute("INSERT INTO u VALUES (1)", &[]).await;
                    let e = e.expect_err("duplicate key");
                    assert!(e.is_unique_violation(), "{e}");
                    None
                }
                1 => {
                    let e = lane.query("SELECT * FROM no_such_table", &[]).await;
                    assert_eq!(
                        e.expect_err("no table").code(),
                        Some(&SqlState::UNDEFINED_TABLE)
                    );
                    None
                }
                _ => {
                    let v: i64 = lane
                        .query_one("SELECT $1::int8 + 1", &[&t])
                        .await
                        .expect("a good statement next to failing ones")
                        .get(0);
                    assert_eq!(v, t + 1);
                    Some(())
                }
            }
        }));
    }
    let mut good = 0;
    for t in tasks {
        if t.await.unwrap().is_some() {
            good += 1;
        }
    }
    assert_eq!(good, 200);
    // A failed statement left no aborted transaction behind.
    let n: i64 = lane
        .query_one("SELECT count(*) FROM u", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    lane.close().await;
    until_returned(&pool).await;
    assert_eq!(pool.stats().closed_total.total(), 0, "{:?}", pool.stats());
    all_connections_clean(&pool, 1).await;
}

/// Futures dropped at random points while others run: every statement that
/// was not dropped gets its own correct answer, and the connections go back
/// to the pool clean (no transaction, no session setting), without being
/// discarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_futures_abandon_only_their_own_answers() {
    let pool = pool_with(PoolOptions::new(2, 2)).await;
    pool.batch_execute("CREATE TABLE w (v int8)").await.unwrap();
    let lane = pool.shared(SharedOptions::new(2)).await.unwrap();
    let answered = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let kept = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..32u64 {
        let (lane, answered, dropped, kept) = (
            lane.clone(),
            answered.clone(),
            dropped.clone(),
            kept.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(w);
            for i in 0..60i64 {
                let v = (w as i64) * 100_000 + i;
                let kind = rng.u8(0..3);
                let drop_it = rng.bool();
                let budget = Duration::from_micros(rng.u64(0..3_000));
                let op = async {
                    match kind {
                        0 => {
                            let got: i64 = lane
                                .query_one("SELECT $1::int8 + 7 FROM pg_sleep(0.001)", &[&v])
                                .await?
                                .get(0);
                            assert_eq!(got, v + 7, "someone else's answer");
                        }
                        1 => {
                            let n = lane.execute("INSERT INTO w VALUES ($1)", &[&v]).await?;
                            assert_eq!(n, 1);
                        }
                        _ => {
                            let got: String = lane
                                .query_one("SELECT $1::text || 'x'", &[&v.to_string()])
                                .await?
                                .get(0);
                            assert_eq!(got, format!("{v}x"), "someone else's answer");
                        }
                    }
                    Ok::<_, pgline_core::DbError>(())
                };
                if drop_it {
                    // Dropped at a random point (possibly mid-flight).
                    match tokio::time::timeout(budget, op).await {
                        Ok(result) => {
                            result.unwrap();
                            answered.fetch_add(1, SeqCst);
                        }
                        Err(_) => {
                            dropped.fetch_add(1, SeqCst);
                        }
                    }
                } else {
                    kept.fetch_add(1, SeqCst);
                    op.await.unwrap();
                    answered.fetch_add(1, SeqCst);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    println!(
        "answered {}, dropped {}",
        answered.load(SeqCst),
        dropped.load(SeqCst)
    );
    assert!(dropped.load(SeqCst) > 0, "no future was dropped");
    assert!(
        answered.load(SeqCst) >= kept.load(SeqCst),
        "too few answered"
    );
    assert_eq!(lane.outstanding(), 0);
    lane.close().await;
    until_returned(&pool).await;
    let s = pool.stats();
    assert_eq!(
        s.closed_total.total(),
        0,
        "a lane connection was discarded: {s:?}"
    );
    all_connections_clean(&pool, 2).await;
    // No statement of the lane is still running anywhere.
    let conn = pool.acquire().await.unwrap();
    let active: i64 = conn
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND state = 'active' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(active, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_statement_is_stopped_by_the_server_side_bound_only() {
    let pool = pool(1, 1).await;
    let lane = pool
        .shared(SharedOptions::new(1).with_statement_timeout(Duration::from_millis(300)))
        .await
        .unwrap();
    let slow = {
        let lane = lane.clone();
        tokio::spawn(async move { lane.query("SELECT pg_sleep(30)", &[]).await })
    };
    // Queued behind the slow one on the same connection, and not cancelled
    // by its end.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let v: i32 = lane.query_one("SELECT 41 + 1", &[]).await.unwrap().get(0);
    assert_eq!(v, 42);
    let e = slow.await.unwrap().unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e}");
    lane.close().await;
    until_returned(&pool).await;
    all_connections_clean(&pool, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_lane_connection_is_replaced() {
    let pool = pool(2, 2).await;
    let lane = pool.shared(SharedOptions::new(1)).await.unwrap();
    let pid: i32 = lane
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    pgline_testkit::PgServer::shared()
        .execute(&format!("SELECT pg_terminate_backend({pid})"))
        .await
        .unwrap();
    let mut other = None;
    for _ in 0..200 {
        if let Ok(row) = lane.query_one("SELECT pg_backend_pid()", &[]).await {
            let p: i32 = row.get(0);
            if p != pid {
                other = Some(p);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(other.is_some(), "the lane did not replace its connection");
    assert_eq!(lane.connections(), 1);
    assert!(pool.stats().closed_total.broken >= 1, "{:?}", pool.stats());
    lane.close().await;
    until_returned(&pool).await;
    all_connections_clean(&pool, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_lane_gives_its_connections_back_clean() {
    let pool = pool(2, 2).await;
    {
        let lane: SharedLane = pool.shared(SharedOptions::new(2)).await.unwrap();
        let v: i64 = lane
            .query_one("SELECT $1::int8", &[&5i64])
            .await
            .unwrap()
            .get(0);
        assert_eq!(v, 5);
        // In flight when the lane goes: abandoned.
        let pending = lane.query("SELECT pg_sleep(0.2)", &[]);
        let _ = tokio::time::timeout(Duration::from_millis(20), pending).await;
    }
    until_returned(&pool).await;
    assert_eq!(pool.stats().closed_total.total(), 0, "{:?}", pool.stats());
    all_connections_clean(&pool, 2).await;
    // And a closed lane refuses work.
    let lane = pool.shared(SharedOptions::new(1)).await.unwrap();
    lane.close().await;
    let e = lane.query("SELECT 1", &[]).await.unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::PoolClosed), "{e}");
}

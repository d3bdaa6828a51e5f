//! pgline through PgBouncer in transaction pooling mode, with the statement
//! cache off (`statement_cache_size = 0`), on both backends.
//!
//! In transaction mode PgBouncer hands a client a server connection per
//! transaction: a named prepared statement made in one round trip may be gone
//! in the next. With the cache off pgline runs every statement as one
//! exchange on the unnamed statement (see `pgline-async`'s `pg/unnamed.rs`),
//! which these tests check under concurrency from several pools — the way
//! several `pgline-server` instances share one PgBouncer.
//!
//! Needs the `pgbouncer` binary (`apt-get install -y pgbouncer`); without it
//! every test fails with that hint.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use pgline_core::{Database, DbError, ErrorKind};
use pgline_testkit::{PgBouncer, PgServer};

/// A server of the test's own with PgBouncer in front (`pool_size` server
/// connections), and a fresh database.
async fn bouncer(pool_size: u32) -> (PgServer, PgBouncer, String) {
    let server = PgServer::start().await.expect("postgresql starts");
    let db = server.fresh_database().await.expect("fresh database");
    let bouncer = PgBouncer::builder()
        .default_pool_size(pool_size)
        .start(&server)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (server, bouncer, db)
}

fn async_pool(bouncer: &PgBouncer, db: &str, max: u32) -> pgline_async::PgPool {
    use pgline_async::{PgManager, PgPool, PoolOptions};
    let options = PoolOptions::new(0, max).with_acquire_timeout(Duration::from_secs(10));
    // Statement cache 0: the PgBouncer-safe statement path.
    PgPool::new(PgManager::new(bouncer.config(db), None, 0), options).expect("valid options")
}

fn sync_pool(bouncer: &PgBouncer, db: &str, max: u32) -> pgline_sync::SyncPool {
    use pgline_sync::{PoolOptions, SyncManager, SyncPool};
    let options = PoolOptions::new(0, max).with_acquire_timeout(Duration::from_secs(10));
    SyncPool::new(SyncManager::new(bouncer.config(db), None, 0), options).expect("valid options")
}

async fn queries_and_parameters<D: Database>(db: D) {
    db.batch_execute(
        "CREATE TABLE t (id bigint PRIMARY KEY, name text NOT NULL, ok bool, score float8, data bytea)",
    )
    .await
    .unwrap();
    let hostile = "x'); DROP TABLE t; --";
    let n = db
        .execute(
            "INSERT INTO t VALUES ($1, $2, $3, $4, $5)",
            &[&1i64, &hostile, &true, &2.5f64, &vec![0u8, 1, 2]],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let none: Option<bool> = None;
    db.execute(
        "INSERT INTO t VALUES ($1, $2, $3, $4, $5)",
        &[&2i64, &"plain", &none, &0.0f64, &Vec::<u8>::new()],
    )
    .await
    .unwrap();
    let row = db
        .query_one(
            "SELECT name, ok, score, data FROM t WHERE id = $1",
            &[&1i64],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), hostile, "stored verbatim");
    assert_eq!(row.get::<_, Option<bool>>(1), Some(true));
    assert_eq!(row.get::<_, f64>(2), 2.5);
    assert_eq!(row.get::<_, Vec<u8>>(3), vec![0u8, 1, 2]);
    let row = db
        .query_opt("SELECT ok FROM t WHERE id = $1", &[&2i64])
        .await
        .unwrap()
        .expect("row 2");
    assert_eq!(row.get::<_, Option<bool>>(0), None);
    assert!(
        db.query_opt("SELECT 1 FROM t WHERE id = $1", &[&99i64])
            .await
            .unwrap()
            .is_none()
    );

    // A statement error is the server's, and the next statement works.
    let err = db
        .query("SELECT * FROM missing_table", &[])
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42P01"), "{err}");
    let err = db
        .execute("INSERT INTO t VALUES ($1, $2)", &[&1i64, &"dup"])
        .await
        .unwrap_err();
    assert!(err.is_unique_violation(), "{err}");
    // A wrong parameter count is refused before anything runs.
    let err = db
        .query("SELECT $1::int + $2::int", &[&1i32])
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Rejected), "{err}");
    let row = db.query_one("SELECT count(*) FROM t", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 2);
}

async fn transactions<D: Database>(db: D, server: &PgServer) {
    db.batch_execute("CREATE TABLE ledger (id serial PRIMARY KEY, amount int NOT NULL)")
        .await
        .unwrap();
    // Commit: both rows, and statements inside see their own writes.
    let seen: i64 = db
        .transaction(|tx| {
            Box::pin(async move {
                tx.execute("INSERT INTO ledger (amount) VALUES ($1)", &[&10i32])
                    .await?;
                tx.execute("INSERT INTO ledger (amount) VALUES ($1)", &[&20i32])
                    .await?;
                let row = tx
                    .query_one("SELECT sum(amount)::bigint FROM ledger", &[])
                    .await?;
                Ok::<_, DbError>(row.get(0))
            })
        })
        .await
        .unwrap();
    assert_eq!(seen, 30);
    // Rollback on Err: nothing of it stays.
    let result: Result<(), DbError> = db
        .transaction(|tx| {
            Box::pin(async move {
                tx.execute("INSERT INTO ledger (amount) VALUES ($1)", &[&1000i32])
                    .await?;
                Err(DbError::new(ErrorKind::Rejected).with_context("the closure gave up"))
            })
        })
        .await;
    assert!(result.is_err());
    // Rollback on a failed statement inside.
    let result: Result<(), DbError> = db
        .transaction(|tx| {
            Box::pin(async move {
                tx.execute("INSERT INTO ledger (amount) VALUES ($1)", &[&5000i32])
                    .await?;
                tx.execute("INSERT INTO ledger (amount) VALUES (NULL)", &[])
                    .await?;
                Ok(())
            })
        })
        .await;
    assert!(result.unwrap_err().code().is_some());
    let row = db
        .query_one("SELECT count(*), sum(amount)::bigint FROM ledger", &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (2, 30));
    // No server connection behind PgBouncer is left inside a transaction.
    let idle_in_transaction = server
        .query_scalar_i64(
            "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'",
        )
        .await
        .unwrap();
    assert_eq!(idle_in_transaction, 0);
}

/// Several pools (as several processes would) × many tasks × many distinct
/// statements over 3 server connections: every statement is prepared and
/// executed in one exchange, so none is lost between server connections and
/// no name collides.
async fn statements_under_concurrency<D: Database>(pools: Vec<D>) {
    let pools: Vec<Arc<D>> = pools.into_iter().map(Arc::new).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for (p, pool) in pools.iter().enumerate() {
        for t in 0..8i32 {
            let pool = Arc::clone(pool);
            tasks.spawn(async move {
                let mut errors = Vec::new();
                for i in 0..40i32 {
                    // Distinct SQL texts: each is described once per connection.
                    let sql = format!("SELECT $1::int + $2::int + {}", i % 10);
                    match pool.query(&sql, &[&i, &t]).await {
                        Ok(rows) => assert_eq!(rows[0].get::<_, i32>(0), i + t + i % 10),
                        Err(e) => errors.push(format!("pool {p} task {t}: {e}")),
                    }
                    if i % 10 == 0 {
                        let outcome = pool
                            .transaction(|tx| {
                                Box::pin(async move {
                                    let row = tx.query_one("SELECT $1::int * 2", &[&i]).await?;
                                    Ok::<i32, DbError>(row.get(0))
                                })
                            })
                            .await;
                        match outcome {
                            Ok(v) => assert_eq!(v, i * 2),
                            Err(e) => errors.push(format!("pool {p} task {t} tx: {e}")),
                        }
                    }
                }
                errors
            });
        }
    }
    let mut errors = Vec::new();
    while let Some(result) = tasks.join_next().await {
        errors.extend(result.expect("task"));
    }
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        &errors[..errors.len().min(3)]
    );
}

mod async_pool {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queries_and_parameters() {
        let (_server, bouncer, db) = bouncer(3).await;
        super::queries_and_parameters(async_pool(&bouncer, &db, 4)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn transactions_commit_and_roll_back() {
        let (server, bouncer, db) = bouncer(3).await;
        super::transactions(async_pool(&bouncer, &db, 4), &server).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn statements_under_concurrency_from_three_pools() {
        let (_server, bouncer, db) = bouncer(3).await;
        let pools = (0..3).map(|_| async_pool(&bouncer, &db, 6)).collect();
        super::statements_under_concurrency(pools).await;
    }
}

mod sync_pool {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queries_and_parameters() {
        let (_server, bouncer, db) = bouncer(3).await;
        super::queries_and_parameters(sync_pool(&bouncer, &db, 4)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn transactions_commit_and_roll_back() {
        let (server, bouncer, db) = bouncer(3).await;
        super::transactions(sync_pool(&bouncer, &db, 4), &server).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn statements_under_concurrency_from_three_pools() {
        let (_server, bouncer, db) = bouncer(3).await;
        let pools = (0..3).map(|_| sync_pool(&bouncer, &db, 4)).collect();
        super::statements_under_concurrency(pools).await;
    }
}

/// Three `pgline-server` instances (async, sync, async) through one PgBouncer
/// under the 8-station load, 5 orders of 3 panels per station: no error,
/// every acknowledged order stored and completed, PgBouncer within its pool
/// size. `cargo xtask chaos` runs the longer variant (4 instances).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_server_instances_through_one_pgbouncer_under_8_stations() {
    let scenario: Vec<(&'static str, pgline_tests::chaos::Scenario)> =
        vec![("scale-out: 3 instances through one PgBouncer", || {
            Box::pin(pgline_tests::chaos::scaleout::instances_through_pgbouncer(
                3, 5,
            ))
        })];
    let failed = pgline_tests::chaos::run(&scenario, Duration::from_secs(120)).await;
    assert_eq!(
        failed, 0,
        "the scale-out scenario failed (its line above says why)"
    );
}

/// The pipelined shared lane (`PgPool::shared`) through PgBouncer: with the
/// pool's statement cache off the lane runs each statement on the unnamed
/// statement in one exchange (parameter types described once on an exclusive
/// connection) and makes no session `SET`, so concurrent statements of two
/// lanes (two processes, as it were) pipelined over PgBouncer all get their
/// own answers; a failing statement disturbs no other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_lane_through_pgbouncer() {
    use pgline_async::SharedOptions;
    let (server, bouncer, db) = bouncer(3).await;
    server
        .execute(&format!(
            "ALTER DATABASE \"{db}\" SET statement_timeout = '30s'"
        ))
        .await
        .unwrap();
    let setup = async_pool(&bouncer, &db, 2);
    setup
        .batch_execute("CREATE TABLE hits (lane int NOT NULL, task int NOT NULL, i int NOT NULL)")
        .await
        .unwrap();
    let mut lanes = Vec::new();
    for _ in 0..2 {
        // One more connection than the lane holds: statement descriptions.
        let pool = async_pool(&bouncer, &db, 3);
        lanes.push(
            pool.shared(SharedOptions::new(2))
                .await
                .expect("lane opens"),
        );
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (l, lane) in lanes.iter().enumerate() {
        for t in 0..16i32 {
            let lane = lane.clone();
            let l = l as i32;
            tasks.spawn(async move {
                let mut errors = Vec::new();
                for i in 0..40i32 {
                    let sql = format!("SELECT $1::int * 1000 + $2::int + {}", i % 4);
                    match lane.query_one(&sql, &[&t, &i]).await {
                        Ok(row) => assert_eq!(row.get::<_, i32>(0), t * 1000 + i + i % 4),
                        Err(e) => errors.push(format!("lane {l} task {t} select: {e}")),
                    }
                    if i % 8 == 0 {
                        // An error in one statement ends only that request.
                        let err = lane
                            .query("SELECT 1 / $1::int", &[&0i32])
                            .await
                            .unwrap_err();
                        assert_eq!(err.code().map(|c| c.code()), Some("22012"), "{err}");
                        if let Err(e) = lane
                            .execute(
                                "INSERT INTO hits (lane, task, i) VALUES ($1, $2, $3)",
                                &[&l, &t, &i],
                            )
                            .await
                        {
                            errors.push(format!("lane {l} task {t} insert: {e}"));
                        }
                    }
                }
                errors
            });
        }
    }
    let mut errors = Vec::new();
    while let Some(result) = tasks.join_next().await {
        errors.extend(result.expect("task"));
    }
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        &errors[..errors.len().min(3)]
    );
    // Statements that change the session are still refused on the lane.
    assert!(
        lanes[0]
            .execute("SET search_path = other", &[])
            .await
            .is_err()
    );
    for lane in &lanes {
        lane.close().await;
    }
    let row = setup
        .query_one("SELECT count(*) FROM hits", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2 * 16 * 5, "every insert stored once");
}

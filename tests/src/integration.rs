//! The seed's ten-point pool test: initialization, statistics, health,
//! connection test, queries, transactions, events, performance monitoring,
//! configuration validation, graceful shutdown.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgline_async::{PgPool, PoolOptions};
use pgline_core::{Database, DbError, ErrorKind, PoolEvent};
use pgline_testkit::PgServer;

use crate::chaos::Figures;

type Point = Result<String, String>;

fn fail<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn ensure(condition: bool, message: impl Into<String>) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(message.into())
    }
}

/// Runs the ten points against a throwaway server, printing one line each
/// and `N passed, N failed`; returns the number of failures.
pub async fn run() -> usize {
    let mut results: Vec<(&str, Point)> = Vec::new();
    let server = match PgServer::start().await {
        Ok(s) => s,
        Err(e) => {
            println!(" 1. FAIL  initialization: cannot start PostgreSQL: {e}");
            println!("0 passed, 10 failed");
            return 10;
        }
    };
    let url = server.url("postgres");
    let events = Arc::new(Mutex::new(Vec::<PoolEvent>::new()));
    let sink = events.clone();

    // 1. Initialization: from the configuration, min connections open.
    let started = Instant::now();
    let pool = async {
        let config = pgline_config::Config::from_vars([
            ("DATABASE_URL", url.as_str()),
            ("DB_POOL_MIN", "2"),
            ("DB_POOL_MAX", "10"),
        ])
        .map_err(fail("configuration"))?;
        let options =
            PoolOptions::from_config(&config.pool).with_listener(Arc::new(move |e: &PoolEvent| {
                sink.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(e.clone());
            }));
        let pool = PgPool::connect_with(&config, options)
            .await
            .map_err(fail("connect"))?;
        Ok::<_, String>(pool)
    }
    .await;
    let pool = match pool {
        Ok(pool) => {
            let s = pool.stats();
            results.push((
                "initialization",
                ensure(
                    s.total >= 2,
                    format!("expected 2 connections, got {}", s.total),
                )
                .map(|()| {
                    format!(
                        "{} connections open in {:.0?} (min 2, max 10)",
                        s.total,
                        started.elapsed()
                    )
                }),
            ));
            pool
        }
        Err(e) => {
            println!(" 1. FAIL  initialization: {e}");
            println!("0 passed, 10 failed");
            return 10;
        }
    };

    // 2. Statistics.
    results.push(("pool statistics", statistics(&pool).await));
    // 3. Health status.
    results.push(("health status", {
        let report = pool.health(Duration::from_secs(2)).await;
        ensure(report.healthy, format!("unhealthy: {:?}", report.error)).map(|()| {
            format!(
                "healthy, response {:.2} ms, {} idle",
                report.response_time_ms, report.stats.idle
            )
        })
    }));
    // 4. Connection test (the seed's `SELECT NOW()`).
    results.push(("connection test", connection_test(&pool).await));
    // 5. Query execution.
    results.push(("query execution", queries(&pool).await));
    // 6. Transactions.
    results.push(("transaction handling", transactions(&pool).await));
    // 7. Events.
    results.push(("pool event monitoring", {
        let names: Vec<&str> = events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(PoolEvent::name)
            .collect();
        let count = |n: &str| names.iter().filter(|x| **x == n).count();
        ensure(
            count("connect") >= 2 && count("acquire") >= 5 && count("release") >= 5,
            format!("events seen: {names:?}"),
        )
        .map(|()| {
            format!(
                "connect={} acquire={} release={}",
                count("connect"),
                count("acquire"),
                count("release")
            )
        })
    }));
    // 8. Performance monitoring.
    results.push(("performance monitoring", performance(&pool).await));
    // 9. Configuration validation.
    results.push(("configuration validation", configuration()));
    // 10. Graceful shutdown.
    results.push(("graceful shutdown", shutdown(&pool, &server, &events).await));

    let mut failed = 0;
    for (i, (name, outcome)) in results.iter().enumerate() {
        match outcome {
            Ok(detail) => println!("{:>2}. ok    {name}: {detail}", i + 1),
            Err(why) => {
                failed += 1;
                println!("{:>2}. FAIL  {name}: {why}", i + 1);
            }
        }
    }
    println!("{} passed, {failed} failed", results.len() - failed);
    failed
}

async fn statistics(pool: &PgPool) -> Point {
    let held = vec![
        pool.acquire().await.map_err(fail("acquire"))?,
        pool.acquire().await.map_err(fail("acquire"))?,
    ];
    let s = pool.stats();
    ensure(
        s.in_use == 2,
        format!("in use {} while holding 2", s.in_use),
    )?;
    ensure(
        (s.utilization_percent - 20.0).abs() < 0.01,
        format!("utilization {}%", s.utilization_percent),
    )?;
    drop(held);
    let s = pool.stats();
    ensure(s.in_use == 0, "in use did not return to 0")?;
    Ok(format!(
        "total={} idle={} in_use={} waiting={} acquired={} created={} (utilization 20% while holding 2 of 10)",
        s.total, s.idle, s.in_use, s.waiting, s.acquired_total, s.created_total
    ))
}

async fn connection_test(pool: &PgPool) -> Point {
    let row = pool
        .query_one("SELECT NOW()::text", &[])
        .await
        .map_err(fail("SELECT NOW()"))?;
    let now: String = row.get(0);
    Ok(format!("SELECT NOW() = {now}"))
}

async fn queries(pool: &PgPool) -> Point {
    pool.batch_execute(
        "CREATE TABLE IF NOT EXISTS panels (barcode text PRIMARY KEY, panel_type text)",
    )
    .await
    .map_err(fail("create table"))?;
    let hostile = "FR4'); DROP TABLE panels; --";
    let n = pool
        .execute(
            "INSERT INTO panels (barcode, panel_type) VALUES ($1, $2)",
            &[&"P-0001", &hostile],
        )
        .await
        .map_err(fail("insert"))?;
    let row = pool
        .query_one(
            "SELECT panel_type FROM panels WHERE barcode = $1",
            &[&"P-0001"],
        )
        .await
        .map_err(fail("select"))?;
    let stored: String = row.get(0);
    ensure(n == 1 && stored == hostile, "parameter not stored verbatim")?;
    Ok("parameterized insert and select; an injection-looking value stored verbatim".into())
}

async fn transactions(pool: &PgPool) -> Point {
    pool.transaction(|tx| {
        Box::pin(async move {
            tx.execute(
                "INSERT INTO panels (barcode, panel_type) VALUES ('P-0002', 'FR4')",
                &[],
            )
            .await?;
            tx.execute(
                "INSERT INTO panels (barcode, panel_type) VALUES ('P-0003', 'FR4')",
                &[],
            )
            .await?;
            Ok::<_, DbError>(())
        })
    })
    .await
    .map_err(fail("commit"))?;
    let failed: Result<(), DbError> = pool
        .transaction(|tx| {
            Box::pin(async move {
                tx.execute(
                    "INSERT INTO panels (barcode, panel_type) VALUES ('P-0004', 'FR4')",
                    &[],
                )
                .await?;
                tx.execute(
                    "INSERT INTO panels (barcode, panel_type) VALUES ('P-0001', 'dup')",
                    &[],
                )
                .await?;
                Ok(())
            })
        })
        .await;
    ensure(
        failed.as_ref().is_err_and(DbError::is_unique_violation),
        "the duplicate was not refused",
    )?;
    let count: i64 = pool
        .query_one("SELECT count(*) FROM panels", &[])
        .await
        .map_err(fail("count"))?
        .get(0);
    ensure(
        count == 3,
        format!("{count} panels; the rolled-back insert survived?"),
    )?;
    Ok("commit of two inserts; automatic rollback on error (P-0004 absent)".into())
}

async fn performance(pool: &PgPool) -> Point {
    let pool = Arc::new(pool.clone());
    let peak = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (pool, peak) = (pool.clone(), peak.clone());
        tasks.push(tokio::spawn(async move {
            let mut took = Vec::new();
            for _ in 0..25 {
                let t = Instant::now();
                pool.query_one("SELECT pg_sleep(0.001)::text", &[]).await?;
                took.push(t.elapsed());
                peak.fetch_max(pool.stats().in_use, std::sync::atomic::Ordering::Relaxed);
            }
            Ok::<_, DbError>(took)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.map_err(fail("task"))?.map_err(fail("query"))?);
    }
    all.sort();
    let p = |q: f64| all[((all.len() - 1) as f64 * q) as usize];
    let s = pool.stats();
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    let mut f = Figures::default();
    f.add("queries", all.len());
    f.ms("p50", p(0.5));
    f.ms("p99", p(0.99));
    f.add("peak_in_use", peak);
    f.add(
        "peak_utilization",
        format!("{}%", peak * 100 / s.max.max(1)),
    );
    f.add("mean_wait_us", s.wait_time_mean_us());
    f.add("max_wait_us", s.wait_time_max_us);
    ensure(peak > 1, "load never used more than one connection")?;
    Ok(f.to_string())
}

fn configuration() -> Point {
    let bad = pgline_config::Config::from_vars([("DB_POOL_MAX", "abc")]);
    let msg = bad.err().map(|e| e.to_string()).unwrap_or_default();
    ensure(
        msg.contains("DB_POOL_MAX"),
        format!("DB_POOL_MAX=abc not named: {msg}"),
    )?;
    let prod = pgline_config::Config::from_vars([
        ("NODE_ENV", "production"),
        ("DB_HOST", "db"),
        ("DB_USER", "line"),
        ("DB_PASSWORD", "s3cret-value"),
        ("DB_SSL", "true"),
    ]);
    let msg = prod.err().map(|e| e.to_string()).unwrap_or_default();
    ensure(
        msg.contains("DB_NAME"),
        format!("production without DB_NAME not refused: {msg}"),
    )?;
    let ok =
        pgline_config::Config::from_vars([("DB_PASSWORD", "s3cret-value"), ("DB_POOL_MIN", "3")])
            .map_err(fail("valid configuration"))?;
    ensure(
        !format!("{ok:?}").contains("s3cret-value"),
        "the password appears in Debug output",
    )?;
    ensure(ok.pool.min_connections == 3, "DB_POOL_MIN ignored")?;
    Ok(
        "DB_POOL_MAX=abc refused naming it; production without DB_NAME refused; password hidden"
            .into(),
    )
}

async fn shutdown(pool: &PgPool, server: &PgServer, events: &Arc<Mutex<Vec<PoolEvent>>>) -> Point {
    let held = pool.acquire().await.map_err(fail("acquire"))?;
    let returner = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(held);
    });
    let report = pool.close(Duration::from_secs(5)).await;
    returner.await.map_err(fail("returner"))?;
    let after = pool.acquire().await;
    ensure(
        matches!(
            after.as_ref().map_err(DbError::kind),
            Err(ErrorKind::PoolClosed)
        ),
        "acquire after close did not fail with PoolClosed",
    )?;
    ensure(
        report.still_in_use == 0 && report.closed_after_return == 1,
        format!("{report:?}"),
    )?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let left = server
        .query_scalar_i64("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
        .await
        .map_err(fail("pg_stat_activity"))?;
    ensure(
        left == 0,
        format!("{left} connections left open on the server"),
    )?;
    let removes = events
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .filter(|e| e.name() == "remove")
        .count();
    Ok(format!(
        "closed {} idle, waited for 1 in use ({} ms), new acquires refused, 0 server connections left, {removes} remove events",
        report.closed_idle, report.elapsed_ms
    ))
}

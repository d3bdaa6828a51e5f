//! Scenarios 2, 7 and 8: terminated backends, exhaustion, cancellation storm.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use pgline_async::PoolOptions;
use pgline_core::{Database, DbError, ErrorKind};
use pgline_testkit::PgServer;

use super::support::{percentile, pool, server_connections};
use super::{Figures, Outcome, check, setup};

/// `pg_terminate_backend` of every pool connection: no error reaches callers
/// that start afterwards.
pub async fn terminate_all() -> Outcome {
    let mut figures = Figures::default();
    let server = PgServer::shared();
    let db = setup(server.fresh_database().await, "database", &figures)?;
    let pool = setup(
        pool(
            server.config(&db),
            PoolOptions::new(4, 8),
            Some(Duration::from_secs(5)),
        )
        .await,
        "pool",
        &figures,
    )?;
    for _ in 0..20 {
        setup(pool.query_one("SELECT 1", &[]).await, "warm-up", &figures)?;
    }
    let terminated = setup(
        server
            .query_scalar_i64(&format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{db}' AND pid <> pg_backend_pid()"
            ))
            .await,
        "terminate",
        &figures,
    )?;
    figures.add("terminated", terminated);
    // Wait until the server has let them go.
    let started = Instant::now();
    while setup(server_connections(server, &db).await, "count", &figures)? > 0 {
        check(
            started.elapsed() < Duration::from_secs(5),
            "backends did not exit",
            &figures,
        )?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut errors = Vec::new();
    let mut tasks = Vec::new();
    let pool = Arc::new(pool);
    for _ in 0..40 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            pool.query_one("SELECT 1", &[]).await.map(|_| ())
        }));
    }
    for t in tasks {
        if let Ok(Err(e)) = t.await {
            errors.push(e.to_string());
        }
    }
    let stats = pool.stats();
    figures.add("calls_after", 40);
    figures.add("errors_after", errors.len());
    figures.add("closed_broken", stats.closed_total.broken);
    check(
        errors.is_empty(),
        format!("callers saw errors: {:?}", errors.first()),
        &figures,
    )?;
    check(
        terminated >= 4,
        "fewer connections than expected were terminated",
        &figures,
    )?;
    Ok(figures)
}

/// 1000 tasks on a pool of 20 with a short acquire timeout: only acquire
/// timeouts, no panics, grants in FIFO order.
pub async fn exhaustion() -> Outcome {
    let mut figures = Figures::default();
    let server = PgServer::shared();
    let db = setup(server.fresh_database().await, "database", &figures)?;
    let config = server.config(&db);
    // A current-thread runtime of its own: tasks enqueue in the order they are
    // spawned, so the grant order must equal the ticket order exactly.
    let result = setup(
        tokio::task::spawn_blocking(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let options =
                    PoolOptions::new(20, 20).with_acquire_timeout(Duration::from_millis(300));
                let pool = Arc::new(
                    pool(config, options, None)
                        .await
                        .map_err(std::io::Error::other)?,
                );
                let tickets = Arc::new(AtomicU64::new(0));
                let grants = Arc::new(Mutex::new(Vec::new()));
                let mut tasks = Vec::new();
                for _ in 0..1000 {
                    let (pool, tickets, grants) = (pool.clone(), tickets.clone(), grants.clone());
                    tasks.push(tokio::spawn(async move {
                        let ticket = tickets.fetch_add(1, SeqCst);
                        let conn = pool.acquire().await?;
                        grants
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(ticket);
                        conn.query_one("SELECT pg_sleep(0.02)", &[]).await?;
                        Ok::<(), DbError>(())
                    }));
                }
                let mut outcomes = Vec::new();
                for t in tasks {
                    outcomes.push(t.await);
                }
                let grants = grants
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                Ok::<_, std::io::Error>((outcomes, grants))
            })
        })
        .await,
        "runtime",
        &figures,
    )?;
    let (outcomes, grants) = setup(result, "run", &figures)?;
    let panics = outcomes.iter().filter(|o| o.is_err()).count();
    let errors: Vec<_> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok())
        .filter_map(|r| r.as_ref().err())
        .collect();
    let other = errors
        .iter()
        .filter(|e| !matches!(e.kind(), ErrorKind::AcquireTimeout { .. }))
        .count();
    let inversions = grants.windows(2).filter(|w| w[1] < w[0]).count();
    figures.add("granted", grants.len());
    figures.add("acquire_timeouts", errors.len() - other);
    figures.add("other_errors", other);
    figures.add("panics", panics);
    figures.add("fifo_inversions", inversions);
    check(panics == 0, "tasks panicked", &figures)?;
    check(
        other == 0,
        format!(
            "errors other than acquire timeouts: {:?}",
            errors
                .iter()
                .find(|e| !e.is_timeout())
                .map(|e| e.to_string())
        ),
        &figures,
    )?;
    check(inversions == 0, "grants out of FIFO order", &figures)?;
    check(!grants.is_empty(), "nothing was granted", &figures)?;
    Ok(figures)
}

/// Thousands of operations cancelled at random points; no connection is ever
/// handed out inside a transaction.
pub async fn cancellation_storm() -> Outcome {
    let mut figures = Figures::default();
    let server = PgServer::shared();
    let db = setup(server.fresh_database().await, "database", &figures)?;
    let pool = Arc::new(setup(
        pool(
            server.config(&db),
            PoolOptions::new(2, 6),
            Some(Duration::from_secs(5)),
        )
        .await,
        "pool",
        &figures,
    )?);
    setup(
        pool.batch_execute("CREATE TABLE t (v int)").await,
        "schema",
        &figures,
    )?;
    let checked = Arc::new(AtomicU64::new(0));
    let dirty = Arc::new(AtomicU64::new(0));
    let cancelled = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..24u64 {
        let (pool, checked, dirty, cancelled) = (
            pool.clone(),
            checked.clone(),
            dirty.clone(),
            cancelled.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(w + 1);
            let mut latencies = Vec::new();
            for _ in 0..120 {
                let budget = Duration::from_micros(rng.u64(1_000..25_000));
                let op = rng.u8(0..5);
                let t = Instant::now();
                let work = async {
                    let conn = pool.acquire().await?;
                    let rows = conn.simple_query("SELECT now() = statement_timestamp()").await?;
                    checked.fetch_add(1, SeqCst);
                    let clean = rows.iter().any(|m| {
                        matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("t"))
                    });
                    if !clean {
                        dirty.fetch_add(1, SeqCst);
                    }
                    match op {
                        0 => {
                            conn.query("SELECT pg_sleep(0.003)", &[]).await?;
                        }
                        1 => {
                            let tx = conn.transaction().await?;
                            tx.execute("INSERT INTO t VALUES (1)", &[]).await?;
                            tx.query("SELECT pg_sleep(0.002)", &[]).await?;
                            tx.commit().await?;
                        }
                        2 => {
                            let tx = conn.transaction().await?;
                            tx.execute("INSERT INTO t VALUES (2)", &[]).await?;
                        }
                        3 => {
                            conn.batch_execute("BEGIN; INSERT INTO t VALUES (3); SELECT pg_sleep(0.002)").await?;
                        }
                        _ => {
                            let _ = conn.batch_execute("BEGIN; SELECT 1/0").await;
                        }
                    }
                    Ok::<_, DbError>(())
                };
                if tokio::time::timeout(budget, work).await.is_err() {
                    cancelled.fetch_add(1, SeqCst);
                }
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(setup(w.await, "worker", &figures)?);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bad = setup(
        pool.query_one("SELECT count(*) FROM t WHERE v IN (2, 3)", &[])
            .await,
        "count",
        &figures,
    )?
    .get::<_, i64>(0);
    let stats = pool.stats();
    figures.add("operations", latencies.len());
    figures.add("cancelled", cancelled.load(SeqCst));
    figures.add("handouts_checked", checked.load(SeqCst));
    figures.add("dirty_handouts", dirty.load(SeqCst));
    figures.ms("p99_operation", percentile(latencies, 99.0));
    figures.add("resets_discarded", stats.closed_total.broken);
    figures.ms("elapsed", started.elapsed());
    check(
        dirty.load(SeqCst) == 0,
        "a connection was handed out inside a transaction",
        &figures,
    )?;
    check(
        bad == 0,
        "rows of rolled-back transactions survived",
        &figures,
    )?;
    check(
        stats.in_use == 0,
        "connections still in use after the storm",
        &figures,
    )?;
    check(
        cancelled.load(SeqCst) > 100,
        "too few operations were cancelled to mean anything",
        &figures,
    )?;
    Ok(figures)
}

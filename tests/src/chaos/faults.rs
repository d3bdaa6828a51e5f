//! Scenarios 3–6: connection limit, stall, latency, failover.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};

use pgline_async::PoolOptions;
use pgline_core::{Database, ErrorKind};
use pgline_testkit::{FaultProxy, PgServer};

use super::support::{pool, resilient};
use super::{Figures, Outcome, check, setup};

/// `max_connections` reached at start and mid-run: clean errors, the breaker
/// opens as configured, and the pool recovers when slots free up.
pub async fn max_connections() -> Outcome {
    let mut figures = Figures::default();
    let server = setup(
        PgServer::builder()
            .max_connections(8)
            .config("superuser_reserved_connections", "3")
            .start()
            .await,
        "server",
        &figures,
    )?;
    setup(
        server.execute("CREATE ROLE app LOGIN").await,
        "role",
        &figures,
    )?;
    let mut app = server.config("postgres");
    app.user("app");
    // Five slots for ordinary roles: take them all.
    let mut hogs = Vec::new();
    for _ in 0..5 {
        let (client, connection) =
            setup(app.connect(tokio_postgres::NoTls).await, "hog", &figures)?;
        tokio::spawn(connection);
        hogs.push(client);
    }
    let options = PoolOptions::new(0, 4).with_acquire_timeout(Duration::from_millis(300));
    let manager = pgline_async::PgManager::new(app.clone(), None, 100);
    let pool = setup(
        pgline_async::PgPool::new(manager, options),
        "pool",
        &figures,
    )?;
    let db = resilient(pool);
    let mut kinds = Vec::new();
    for _ in 0..8 {
        match db.query_one("SELECT 1", &[]).await {
            Ok(_) => kinds.push("ok".to_string()),
            Err(e) => {
                if !matches!(
                    e.kind(),
                    ErrorKind::AcquireTimeout { .. } | ErrorKind::CircuitOpen { .. }
                ) {
                    return Err((format!("unclean error at the limit: {e}"), figures));
                }
                kinds.push(
                    e.kind()
                        .to_string()
                        .split(' ')
                        .next()
                        .unwrap_or("")
                        .to_string(),
                );
            }
        }
    }
    let saw_53300 = db.breaker().stats().opened_total > 0;
    figures.add("breaker_opened", db.breaker().stats().opened_total);
    figures.add("rejected_fast", db.breaker().stats().rejected_total);
    check(
        !kinds.iter().any(|k| k == "ok"),
        "a call succeeded with no slot free",
        &figures,
    )?;
    check(
        saw_53300,
        "the breaker never opened at the connection limit",
        &figures,
    )?;
    // Free the slots: the pool must recover by itself.
    hogs.clear();
    let freed_at = Instant::now();
    let mut recovered = None;
    while freed_at.elapsed() < Duration::from_secs(5) {
        if db.query_one("SELECT 1", &[]).await.is_ok() {
            recovered = Some(freed_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(r) = recovered {
        figures.ms("recovered_after_slots_freed", r);
    }
    check(
        recovered.is_some(),
        "no recovery within 5 s of freeing slots",
        &figures,
    )?;

    // Mid-run: the pool holds 2, hogs take the rest; the held ones keep working.
    let held: Vec<_> = {
        let mut v = Vec::new();
        for _ in 0..2 {
            v.push(setup(db.inner().acquire().await, "acquire", &figures)?);
        }
        v
    };
    drop(held);
    let mut hogs = Vec::new();
    while hogs.len() < 3 {
        match app.connect(tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                hogs.push(client);
            }
            Err(_) => break,
        }
    }
    let mut ok = 0;
    for _ in 0..20 {
        if db.query_one("SELECT 1", &[]).await.is_ok() {
            ok += 1;
        }
    }
    figures.add("mid_run_ok_of_20", ok);
    check(
        ok == 20,
        "open connections stopped working when the server was full",
        &figures,
    )?;
    Ok(figures)
}

/// A stall through the proxy: every call returns within its timeouts.
pub async fn stall() -> Outcome {
    let mut figures = Figures::default();
    let server = PgServer::shared();
    let proxy = setup(
        FaultProxy::start(([127, 0, 0, 1], server.port()).into()).await,
        "proxy",
        &figures,
    )?;
    let mut config = server.config_via(proxy.port(), "postgres");
    config.connect_timeout(Duration::from_millis(500));
    let options = PoolOptions::new(2, 4)
        .with_acquire_timeout(Duration::from_millis(800))
        .with_connect_timeout(Duration::from_millis(500));
    let pool = setup(
        pool(config, options, Some(Duration::from_millis(500))).await,
        "pool",
        &figures,
    )?;
    let db = Arc::new(resilient(pool));
    setup(db.query_one("SELECT 1", &[]).await, "warm-up", &figures)?;
    proxy.stall();
    let stalled_at = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = db.query_one("SELECT 1", &[]).await;
            (t.elapsed(), r.err().map(|e| e.to_string()))
        }));
    }
    let mut slowest = Duration::ZERO;
    let mut errors = 0;
    for t in tasks {
        let (took, error) = setup(t.await, "task", &figures)?;
        slowest = slowest.max(took);
        errors += usize::from(error.is_some());
    }
    figures.ms("slowest_call_during_stall", slowest);
    figures.add("errors_during_stall", errors);
    // acquire 800 ms + query 500 ms + one retry's backoff, with margin.
    check(
        slowest < Duration::from_secs(3),
        "a call hung during the stall",
        &figures,
    )?;
    check(
        errors == 20,
        "calls succeeded through a stalled network",
        &figures,
    )?;
    proxy.pass();
    proxy.cut_all();
    let mut recovered = None;
    while stalled_at.elapsed() < Duration::from_secs(15) {
        if db.query_one("SELECT 1", &[]).await.is_ok() {
            recovered = Some(stalled_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check(
        recovered.is_some(),
        "no recovery after the stall ended",
        &figures,
    )?;
    Ok(figures)
}

/// Latency through the proxy: the query timeout is honoured and the
/// statement is cancelled on the server.
pub async fn latency() -> Outcome {
    let mut figures = Figures::default();
    let server = PgServer::shared();
    let db = setup(server.fresh_database().await, "database", &figures)?;
    let proxy = setup(
        FaultProxy::start(([127, 0, 0, 1], server.port()).into()).await,
        "proxy",
        &figures,
    )?;
    let config = server.config_via(proxy.port(), &db);
    let pool = setup(
        pool(config, PoolOptions::new(1, 2), Some(Duration::from_secs(1))).await,
        "pool",
        &figures,
    )?;
    proxy.set_latency(Duration::from_millis(150));
    let started = Instant::now();
    let result = pool.query_one("SELECT pg_sleep(30)", &[]).await;
    let took = started.elapsed();
    figures.ms("returned_after", took);
    let timed_out = matches!(
        result.as_ref().map_err(|e| e.kind()),
        Err(ErrorKind::Timeout)
    );
    check(
        timed_out,
        format!("expected a query timeout, got {result:?}"),
        &figures,
    )?;
    check(
        took < Duration::from_millis(1600),
        "the query timeout was not honoured",
        &figures,
    )?;
    // The server-side statement must be cancelled (directly, not via the proxy).
    let cancel_started = Instant::now();
    loop {
        let running = setup(
            server
                .query_scalar_i64(&format!(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND query LIKE 'SELECT pg_sleep(30)%' AND state = 'active'"
                ))
                .await,
            "pg_stat_activity",
            &figures,
        )?;
        if running == 0 {
            break;
        }
        check(
            cancel_started.elapsed() < Duration::from_secs(5),
            "pg_sleep(30) still runs on the server",
            &figures,
        )?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    figures.ms("server_side_cancelled_within", cancel_started.elapsed());
    proxy.pass();
    setup(
        pool.query_one("SELECT 1", &[]).await,
        "after latency",
        &figures,
    )?;
    Ok(figures)
}

/// The primary is killed and the standby promoted: writes succeed again
/// within 3 s of the promotion, without restarting the application.
pub async fn failover() -> Outcome {
    let mut figures = Figures::default();
    let primary = setup(PgServer::start().await, "primary", &figures)?;
    setup(
        primary
            .execute("CREATE TABLE orders (id serial PRIMARY KEY, at timestamptz DEFAULT now())")
            .await,
        "schema",
        &figures,
    )?;
    let standby = setup(primary.start_standby().await, "standby", &figures)?;
    // Synchronous replication: an acknowledged write is on the standby, so a
    // failover loses none. (The testkit turns synchronous_commit off on the
    // server's command line; the pool's sessions turn it back on.)
    setup(
        async {
            primary
                .execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
                .await?;
            primary.execute("SELECT pg_reload_conf()").await
        }
        .await,
        "synchronous replication",
        &figures,
    )?;
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(primary.port())
        .host("127.0.0.1")
        .port(standby.port())
        .user("postgres")
        .dbname("postgres")
        .connect_timeout(Duration::from_millis(500))
        .options("-c synchronous_commit=on")
        .target_session_attrs(tokio_postgres::config::TargetSessionAttrs::ReadWrite);
    let options = PoolOptions::new(2, 4).with_acquire_timeout(Duration::from_millis(500));
    let pool = setup(
        pool(config, options, Some(Duration::from_secs(2))).await,
        "pool",
        &figures,
    )?;
    let db = Arc::new(resilient(pool));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, stop) = (db.clone(), stop.clone());
        tokio::spawn(async move {
            let mut log = Vec::new();
            while !stop.load(SeqCst) {
                let at = Instant::now();
                let ok = db
                    .execute("INSERT INTO orders DEFAULT VALUES", &[])
                    .await
                    .is_ok();
                log.push((at, ok));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            log
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    setup(primary.kill9().await, "kill primary", &figures)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    setup(standby.promote().await, "promote", &figures)?;
    let promoted_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, SeqCst);
    let log = setup(writer.await, "writer", &figures)?;
    let first_write = log
        .iter()
        .find(|(at, ok)| *ok && *at >= promoted_at)
        .map(|(at, _)| at.saturating_duration_since(promoted_at));
    figures.add("writes", log.iter().filter(|(_, ok)| *ok).count());
    figures.add("failed_writes", log.iter().filter(|(_, ok)| !*ok).count());
    if let Some(d) = first_write {
        figures.ms("first_write_after_promotion", d);
    }
    check(
        first_write.is_some_and(|d| d <= Duration::from_secs(3)),
        "no write succeeded within 3 s of the promotion",
        &figures,
    )?;
    let on_new = setup(
        standby
            .query_scalar_i64("SELECT count(*) FROM orders")
            .await,
        "count",
        &figures,
    )?;
    let acknowledged = log.iter().filter(|(_, ok)| *ok).count() as i64;
    let unknown = log.iter().filter(|(_, ok)| !*ok).count() as i64;
    figures.add("rows_on_new_primary", on_new);
    check(
        on_new >= acknowledged && on_new <= acknowledged + unknown,
        format!(
            "{acknowledged} writes acknowledged, {on_new} rows on the new primary: acknowledged writes lost"
        ),
        &figures,
    )?;
    Ok(figures)
}

//! Scenario 1: kill -9 of the server under load, restart on the same port.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};

use pgline_async::PoolOptions;
use pgline_core::Database;
use pgline_testkit::PgServer;

use super::support::{pool, resilient, select_load, server_connections};
use super::{Figures, Outcome, check, setup};

/// Errors only while the server is down; first success within 1 s after it
/// accepts connections again; pool size within bounds; no connection leaked.
pub async fn kill_and_restart() -> Outcome {
    let mut figures = Figures::default();
    let server = setup(PgServer::start().await, "start server", &figures)?;
    let options = PoolOptions::new(2, 10).with_acquire_timeout(Duration::from_secs(2));
    let pool = setup(
        pool(
            server.config("postgres"),
            options,
            Some(Duration::from_secs(5)),
        )
        .await,
        "pool",
        &figures,
    )?;
    let db = Arc::new(resilient(pool));
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(select_load(
        db.clone(),
        8,
        Duration::from_millis(5),
        stop.clone(),
    ));

    tokio::time::sleep(Duration::from_millis(700)).await;
    let killed_at = Instant::now();
    setup(server.kill9().await, "kill -9", &figures)?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    setup(server.restart().await, "restart", &figures)?;
    let up_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stop.store(true, SeqCst);
    let samples = setup(load.await, "load task", &figures)?;

    let before = samples.iter().filter(|s| s.at < killed_at).count();
    let early_errors = samples
        .iter()
        .filter(|s| s.at + s.took < killed_at && s.error.is_some())
        .count();
    let first_success_after_up = samples
        .iter()
        .filter(|s| s.error.is_none() && s.at + s.took >= up_at)
        .map(|s| (s.at + s.took).saturating_duration_since(up_at))
        .min();
    let late_errors: Vec<_> = samples
        .iter()
        .filter(|s| s.at > up_at + Duration::from_secs(1) && s.error.is_some())
        .collect();
    let fast_fails = samples.iter().filter(|s| s.circuit_open).count();
    figures.add("calls", samples.len());
    figures.add("calls_before_kill", before);
    figures.add(
        "errors",
        samples.iter().filter(|s| s.error.is_some()).count(),
    );
    figures.add("circuit_open_fast_fails", fast_fails);
    if let Some(first) = first_success_after_up {
        figures.ms("first_success_after_restart", first);
    }
    let stats = db.stats();
    figures.add("pool_total", stats.total);
    check(
        early_errors == 0,
        format!("{early_errors} errors before the kill"),
        &figures,
    )?;
    check(
        first_success_after_up.is_some_and(|d| d <= Duration::from_secs(1)),
        "no success within 1 s of the restart",
        &figures,
    )?;
    check(
        late_errors.is_empty(),
        format!(
            "{} errors more than 1 s after the restart, e.g. {:?}",
            late_errors.len(),
            late_errors.first().and_then(|s| s.error.clone())
        ),
        &figures,
    )?;
    check(stats.total <= 10, "pool above its maximum", &figures)?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = setup(
        server_connections(&server, "postgres").await,
        "pg_stat_activity",
        &figures,
    )?;
    figures.add("server_connections", seen);
    check(
        seen <= i64::from(db.stats().total),
        format!(
            "server sees {seen} connections, the pool holds {}",
            db.stats().total
        ),
        &figures,
    )?;
    Ok(figures)
}

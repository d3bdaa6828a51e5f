//! Terminated backends, server restarts, events, statement cache, close.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgline_async::{PgManager, PgPool, PoolOptions};
use pgline_core::{Database, PoolEvent};
use pgline_testkit::PgServer;

use crate::common::{pool, pool_on};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_backends_are_never_handed_out() {
    let pool = pool(3, 3).await;
    let conns: Vec<_> = futures(&pool, 3).await;
    drop(conns);
    let server = PgServer::shared();
    let db: String = pool
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    server
        .execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}' AND pid <> pg_backend_pid()"
        ))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    for _ in 0..6 {
        let row = pool.query_one("SELECT 1", &[]).await;
        assert!(
            row.is_ok(),
            "a terminated connection was handed out: {row:?}"
        );
    }
    assert!(pool.stats().closed_total.broken >= 3, "{:?}", pool.stats());
}

async fn futures(pool: &PgPool, n: usize) -> Vec<pgline_async::Pooled<PgManager>> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(pool.acquire().await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_recovers_after_a_server_restart() {
    let server = PgServer::start().await.unwrap();
    let pool = pool_on(
        &server,
        "postgres",
        PoolOptions::new(2, 4).with_acquire_timeout(Duration::from_secs(10)),
    )
    .await;
    pool.query_one("SELECT 1", &[]).await.unwrap();
    server.stop().await.unwrap();
    let down = pool.query_one("SELECT 1", &[]).await;
    assert!(down.is_err(), "query succeeded with the server down");
    server.restart().await.unwrap();
    let started = std::time::Instant::now();
    let mut ok = false;
    while started.elapsed() < Duration::from_secs(10) {
        if pool.query_one("SELECT 1", &[]).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "pool did not recover after restart");
    println!("recovered {:?} after restart", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_emitted_for_connect_acquire_release_remove() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let options = PoolOptions::new(0, 1).with_listener(Arc::new(move |e: &PoolEvent| {
        sink.lock().unwrap().push(e.name());
    }));
    let server = PgServer::shared();
    let db = server.fresh_database().await.unwrap();
    let pool = pool_on(server, &db, options).await;
    pool.query_one("SELECT 1", &[]).await.unwrap();
    pool.close(Duration::from_secs(1)).await;
    let names = events.lock().unwrap().clone();
    assert_eq!(names, ["connect", "acquire", "release", "remove"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_statement_cache_is_bounded_and_can_be_off() {
    let server = PgServer::shared();
    let db = server.fresh_database().await.unwrap();
    let manager = PgManager::new(server.config(&db), None, 10);
    let pool = PgPool::new(manager, PoolOptions::new(0, 1)).unwrap();
    let conn = pool.acquire().await.unwrap();
    for i in 0..30 {
        conn.query(&format!("SELECT {i}"), &[]).await.unwrap();
    }
    let prepared: i64 = conn
        .query_one("SELECT count(*) FROM pg_prepared_statements", &[])
        .await
        .unwrap()
        .get(0);
    assert!(prepared <= 11, "cache grew to {prepared} statements");
    drop(conn);

    let manager = PgManager::new(server.config(&db), None, 0);
    let pool = PgPool::new(manager, PoolOptions::new(0, 1)).unwrap();
    let conn = pool.acquire().await.unwrap();
    for _ in 0..3 {
        conn.query("SELECT 1", &[]).await.unwrap();
    }
    let prepared: i64 = conn
        .query_one("SELECT count(*) FROM pg_prepared_statements", &[])
        .await
        .unwrap()
        .get(0);
    assert!(prepared <= 1, "cache off still kept {prepared} statements");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_waits_for_connections_in_use_and_closes_sockets() {
    let pool = pool(2, 3).await;
    let db: String = pool
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    let held = pool.acquire().await.unwrap();
    let releaser = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(held);
    });
    let report = pool.close(Duration::from_secs(5)).await;
    releaser.await.unwrap();
    assert_eq!(report.still_in_use, 0, "{report:?}");
    assert_eq!(report.closed_after_return, 1, "{report:?}");
    let err = pool.query_one("SELECT 1", &[]).await.unwrap_err();
    assert!(err.to_string().contains("closed"), "{err}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left = PgServer::shared()
        .query_scalar_i64(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}'"
        ))
        .await
        .unwrap();
    assert_eq!(left, 0, "sockets left open after close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialize_fails_clearly_when_the_database_is_unreachable() {
    let mut config = PgServer::shared().config("postgres");
    config.port(1); // nothing listens there
    let pool = PgPool::new(
        PgManager::new(config, None, 10),
        PoolOptions::new(1, 2).with_acquire_timeout(Duration::from_millis(500)),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let err = pool.initialize().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    let text = err.to_string();
    assert!(text.contains("could not open 1 connections"), "{text}");
    assert!(err.trips_breaker());
}

//! The composition root end to end: the backend chosen by configuration
//! (`DB_BACKEND`), serving on a socket, and graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::http;
use pgline_testkit::PgServer;

async fn serves_on(backend: &str) {
    let server = PgServer::shared();
    let db = server.fresh_database().await.unwrap();
    let url = server.url(&db);
    let config = pgline_config::Config::from_vars([
        ("DATABASE_URL", url.as_str()),
        ("DB_BACKEND", backend),
        ("NODE_ENV", "test"),
    ])
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics = pgline_telemetry::Metrics::new("pgline-server").unwrap();
    let running = tokio::spawn(pgline_server::run_with(
        config,
        Some(listener),
        async move {
            let _ = stopped.await;
        },
        Some(metrics),
    ));
    // Ready once migrated and serving.
    let mut ready = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok()
            && http(addr, "GET", "/ready", None).await.0 == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "{backend}: never ready");
    let (status, body) = http(addr, "GET", "/status", None).await;
    assert_eq!(status, 200, "{body}");
    let status_json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status_json["database"]["backend"], backend, "{body}");
    let order = format!(
        r#"{{"order_number":"MO-{backend}","panel_type":"FR4","panels":[{{"barcode":"P-{backend}-1"}}]}}"#
    );
    let (status, body) = http(addr, "POST", "/api/orders", Some(&order)).await;
    assert_eq!(status, 201, "{backend}: {body}");
    let (status, body) = http(addr, "GET", &format!("/api/orders/MO-{backend}"), None).await;
    assert_eq!(status, 200, "{backend}: {body}");

    let (status, text) = http(addr, "GET", "/metrics", None).await;
    assert_eq!(status, 200);
    for name in [
        "db_client_connection_count",
        "db_client_connection_max",
        "pgline_breaker_state",
        "db_client_operation_duration_seconds",
    ] {
        assert!(
            text.contains(name),
            "{backend}: /metrics lacks {name}:\n{text}"
        );
    }

    // Graceful shutdown: the server stops, closes the pool, and returns Ok.
    stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("shutdown within bound");
    result.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
    let left = server
        .query_scalar_i64(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}'"
        ))
        .await
        .unwrap();
    assert_eq!(left, 0, "{backend}: connections left open after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_backend_serves_and_shuts_down() {
    serves_on("async").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_backend_serves_and_shuts_down() {
    serves_on("sync").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_refuses_to_start_without_a_database() {
    let config = pgline_config::Config::from_vars([
        ("NODE_ENV", "production"),
        ("DB_HOST", "127.0.0.1"),
        ("DB_PORT", "1"),
        ("DB_NAME", "plant"),
        ("DB_USER", "line"),
        ("DB_PASSWORD", "secret"),
        ("DB_SSL", "disable"),
        ("DB_POOL_ACQUIRE_MS", "500"),
    ])
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        pgline_server::run(config, Some(listener), std::future::pending()),
    )
    .await
    .expect("start-up gives up within a bound")
    .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("unreachable at start-up"), "{text}");
    assert!(!text.contains("secret"), "password in the error: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn development_starts_degraded_without_a_database() {
    let config = pgline_config::Config::from_vars([
        ("NODE_ENV", "development"),
        ("DB_HOST", "127.0.0.1"),
        ("DB_PORT", "1"),
        ("DB_POOL_ACQUIRE_MS", "500"),
    ])
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(pgline_server::run(config, Some(listener), async move {
        let _ = stopped.await;
    }));
    let mut body = String::new();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            let (status, b) = http(addr, "GET", "/status", None).await;
            if status == 200 {
                body = b;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["degraded"], true, "{body}");
    assert_eq!(http(addr, "GET", "/ready", None).await.0, 503);
    assert_eq!(http(addr, "GET", "/live", None).await.0, 200);
    let (code, b) = http(
        addr,
        "POST",
        "/api/panels",
        Some(r#"{"barcode":"P-1","panel_type":"FR4"}"#),
    )
    .await;
    assert_eq!(code, 201, "the in-memory store serves: {b}");
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

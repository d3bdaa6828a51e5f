//! Read replicas: a throwaway primary and a hot standby (`pg_basebackup -R`),
//! the read pool built from `DB_READ_HOSTS`, and [`Routed`] sending
//! lag-tolerant reads to the standby and everything else to the primary.
//!
//! What is proven, on both backends: a read through `query_replica` runs on a
//! connection where `pg_is_in_recovery()` is true (the standby), even with the
//! primary listed first in `DB_READ_HOSTS` (`target_session_attrs=read-only`
//! skips it); writes and transactions run where it is false; with the standby
//! stopped, the same read is answered by the primary. Through
//! `pgline-server`: an order written on the primary is readable with
//! `GET /api/orders/{n}` (the test waits for the standby to replay the
//! primary's WAL position, not for a time), `/status` reports the read pool,
//! the standby holds pgline's read connections (`pg_stat_activity`), and the
//! look-up still answers with the standby stopped.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use pgline_config::Config;
use pgline_core::{Database, Routed};
use pgline_testkit::PgServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A primary with database `db`, and a hot standby of it.
async fn primary_and_standby() -> (PgServer, PgServer, String) {
    let primary = PgServer::start().await.expect("primary starts");
    let db = primary.fresh_database().await.expect("fresh database");
    let standby = primary.start_standby().await.expect("standby starts");
    (primary, standby, db)
}

/// The configuration of a plant with a read pool: the primary as `DB_HOST`,
/// and `read_hosts` as `DB_READ_HOSTS`.
fn plant_config(primary: &PgServer, db: &str, read_hosts: &str, extra: &[(&str, &str)]) -> Config {
    let port = primary.port().to_string();
    let mut vars = vec![
        ("NODE_ENV", "test"),
        ("DB_HOST", "127.0.0.1"),
        ("DB_PORT", port.as_str()),
        ("DB_NAME", db),
        ("DB_USER", "postgres"),
        ("DB_READ_HOSTS", read_hosts),
        ("DB_READ_POOL_MIN", "1"),
        ("DB_READ_POOL_MAX", "2"),
        ("DB_READ_POOL_ACQUIRE_MS", "2000"),
        ("DB_READ_FALLBACK_MS", "60000"),
    ];
    vars.extend_from_slice(extra);
    Config::from_vars(vars).expect("valid configuration")
}

/// Waits until the standby has replayed everything the primary wrote so far
/// (its WAL insert position: the testkit's servers commit asynchronously, so
/// the write position may trail the last commit): reads after writes without
/// sleeping blindly.
async fn wait_for_replay(primary: &PgServer, standby: &PgServer) {
    let client = primary.connect("postgres").await.unwrap();
    let lsn: String = client
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let standby = standby.connect("postgres").await.unwrap();
    for _ in 0..3000 {
        let caught_up: bool = standby
            .query_one(
                "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                &[&lsn],
            )
            .await
            .unwrap()
            .get(0);
        if caught_up {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the standby did not replay {lsn} within 30 s");
}

async fn in_recovery<D: Database>(db: &D, replica: bool) -> bool {
    let sql = "SELECT pg_is_in_recovery()";
    let rows = match replica {
        true => db.query_replica(sql, &[]).await.unwrap(),
        false => db.query(sql, &[]).await.unwrap(),
    };
    rows[0].get(0)
}

/// The routing on any backend: `make` builds a pool from a configuration.
async fn routes_reads_and_writes<D, F, Fut>(make: F)
where
    D: Database,
    F: Fn(Config) -> Fut,
    Fut: std::future::Future<Output = D>,
{
    let (primary, standby, db) = primary_and_standby().await;
    // The primary first: target_session_attrs=read-only must skip it.
    let read_hosts = format!("127.0.0.1:{},127.0.0.1:{}", primary.port(), standby.port());
    let config = plant_config(&primary, &db, &read_hosts, &[]);
    let read_config = config.read_pool_config().expect("read pool configured");
    let routed = Routed::new(
        make(config.clone()).await,
        Some(make(read_config).await),
        config.read_pool.as_ref().unwrap().fallback_period,
    );

    assert!(
        in_recovery(&routed, true).await,
        "replica read not on the standby"
    );
    assert!(
        !in_recovery(&routed, false).await,
        "plain query not on the primary"
    );
    routed
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    routed
        .execute("INSERT INTO t VALUES ($1)", &[&1i32])
        .await
        .unwrap();
    let in_tx: bool = routed
        .transaction(|tx| {
            Box::pin(async move {
                tx.execute("INSERT INTO t VALUES ($1)", &[&2i32]).await?;
                let row = tx.query_one("SELECT pg_is_in_recovery()", &[]).await?;
                Ok::<bool, pgline_core::DbError>(row.get(0))
            })
        })
        .await
        .unwrap();
    assert!(!in_tx, "transaction not on the primary");
    wait_for_replay(&primary, &standby).await;
    let rows = routed
        .query_replica("SELECT count(*) FROM t", &[])
        .await
        .unwrap();
    assert_eq!(
        rows[0].get::<_, i64>(0),
        2,
        "the standby replays the writes"
    );
    let stats = routed.routing_stats();
    assert!(stats.configured);
    assert_eq!(
        (stats.replica_reads, stats.primary_reads),
        (2, 0),
        "{stats:?}"
    );

    // The standby goes away: the same read is answered by the primary, and
    // the standby is skipped for the fallback period.
    standby.stop().await.unwrap();
    assert!(
        !in_recovery(&routed, true).await,
        "fallback read not on the primary"
    );
    assert!(!in_recovery(&routed, true).await);
    let stats = routed.routing_stats();
    assert_eq!(stats.replica_failures, 1, "{stats:?}");
    assert_eq!(stats.primary_reads, 2, "{stats:?}");
    assert!(stats.replica_skipped, "{stats:?}");
    println!("routing after the standby stopped: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_pool_reads_on_the_standby_writes_on_the_primary_falls_back() {
    routes_reads_and_writes(|config: Config| async move {
        pgline_async::PgPool::connect(&config).await.expect("pool")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_pool_reads_on_the_standby_writes_on_the_primary_falls_back() {
    routes_reads_and_writes(|config: Config| async move {
        tokio::task::spawn_blocking(move || {
            let tls = pgline_async::make_connector(config.database.tls, None).unwrap();
            pgline_sync::SyncPool::connect(&config, tls).expect("pool")
        })
        .await
        .unwrap()
    })
    .await;
}

async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

async fn server_reads_orders_from_the_standby(backend: &str) {
    let (primary, standby, db) = primary_and_standby().await;
    let read_hosts = format!("127.0.0.1:{}", standby.port());
    let config = plant_config(&primary, &db, &read_hosts, &[("DB_BACKEND", backend)]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(pgline_server::run(config, Some(listener), async move {
        let _ = stopped.await;
    }));
    let mut ready = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok()
            && http(addr, "GET", "/ready", None).await.0 == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "{backend}: never ready");

    // Written on the primary (the standby would refuse: read-only).
    let order = r#"{"order_number":"MO-R1","panel_type":"FR4","panels":[{"barcode":"R1-1"},{"barcode":"R1-2"}]}"#;
    let (status, body) = http(addr, "POST", "/api/orders", Some(order)).await;
    assert_eq!(status, 201, "{backend}: {body}");
    // Read-after-write through the standby: wait until it replayed the write.
    wait_for_replay(&primary, &standby).await;
    let (status, body) = http(addr, "GET", "/api/orders/MO-R1", None).await;
    assert_eq!(status, 200, "{backend}: {body}");
    let order: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(order["panels"].as_array().map(Vec::len), Some(2), "{body}");

    // /status: figures through the standby, and the read pool's report.
    let (status, body) = http(addr, "GET", "/status", None).await;
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["manufacturing"]["orders"], 1, "{body}");
    let read_pool = &report["read_pool"];
    assert_eq!(read_pool["hosts"][0], read_hosts.as_str(), "{body}");
    assert!(read_pool["pool"]["total"].as_u64().unwrap() >= 1, "{body}");
    assert!(
        read_pool["routing"]["replica_reads"].as_u64().unwrap() >= 2,
        "{body}"
    );
    assert_eq!(read_pool["routing"]["primary_reads"], 0, "{body}");
    // The standby holds pgline's read connections.
    let on_standby = standby
        .query_scalar_i64(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND application_name = 'pgline'"
        ))
        .await
        .unwrap();
    assert!(on_standby >= 1, "no pgline connection on the standby");

    // The standby stops: the look-up is answered by the primary.
    standby.stop().await.unwrap();
    let (status, body) = http(addr, "GET", "/api/orders/MO-R1", None).await;
    assert_eq!(status, 200, "{backend} after the standby stopped: {body}");
    let (_, body) = http(addr, "GET", "/status", None).await;
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["manufacturing"]["orders"], 1, "{body}");
    assert!(
        report["read_pool"]["routing"]["primary_reads"]
            .as_u64()
            .unwrap()
            >= 2,
        "{body}"
    );
    assert_eq!(
        report["read_pool"]["routing"]["replica_skipped"], true,
        "{body}"
    );
    println!(
        "{backend}: read pool after the standby stopped: {}",
        report["read_pool"]
    );

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("shutdown within bound")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_async_backend_reads_orders_and_status_from_the_standby() {
    server_reads_orders_from_the_standby("async").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sync_backend_reads_orders_and_status_from_the_standby() {
    server_reads_orders_from_the_standby("sync").await;
}

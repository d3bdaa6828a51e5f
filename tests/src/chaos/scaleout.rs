//! Scale-out: several `pgline-server` instances (alternating the async and the
//! sync backend) through one PgBouncer in transaction pooling mode, under the
//! 8-station load: every station creates orders and moves each panel through
//! `SCANNED`, `PASSED`, `COMPLETED`, round-robin over the instances.
//!
//! Checks: no request failed, every acknowledged order is in the database
//! (read directly, not through PgBouncer) with all its panels completed, and
//! PgBouncer never used more server connections than its pool size although
//! the instances together hold more client connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use pgline_config::Config;
use pgline_testkit::{PgBouncer, PgServer};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Figures, Outcome, check, setup};

/// Panels per order.
const PANELS: usize = 3;
/// Stations driving the load.
const STATIONS: usize = 8;
/// PgBouncer's server connections (`default_pool_size`).
const BOUNCER_POOL: u32 = 8;
/// Each instance's pool maximum (`DB_POOL_MAX`).
const INSTANCE_POOL_MAX: u32 = 5;

/// The full scenario of `cargo xtask chaos`: 4 instances, 40 orders per
/// station.
pub async fn pgbouncer_scale_out() -> Outcome {
    instances_through_pgbouncer(4, 40).await
}

/// `instances` servers through one PgBouncer; each of the 8 stations creates
/// `orders_per_station` orders of 3 panels and completes every panel.
pub async fn instances_through_pgbouncer(instances: usize, orders_per_station: usize) -> Outcome {
    let mut figures = Figures::default();
    figures.add("instances", instances);
    figures.add("stations", STATIONS);
    let server = setup(PgServer::start().await, "postgresql", &figures)?;
    let db = setup(server.fresh_database().await, "database", &figures)?;
    let bouncer = setup(
        PgBouncer::builder()
            .default_pool_size(BOUNCER_POOL)
            .start(&server)
            .await,
        "pgbouncer",
        &figures,
    )?;
    let url = bouncer.url(&db);

    // The instances, in process, each on its own listener.
    let mut stops = Vec::new();
    let mut running = Vec::new();
    let mut addresses = Vec::new();
    for i in 0..instances {
        let backend = if i % 2 == 0 { "async" } else { "sync" };
        let max = INSTANCE_POOL_MAX.to_string();
        let config = setup(
            Config::from_vars([
                ("NODE_ENV", "test"),
                ("DATABASE_URL", url.as_str()),
                ("DB_BACKEND", backend),
                // Behind PgBouncer in transaction mode: no named statements.
                ("DB_STATEMENT_CACHE_SIZE", "0"),
                ("DB_POOL_MIN", "1"),
                ("DB_POOL_MAX", max.as_str()),
                ("DB_POOL_ACQUIRE_MS", "10000"),
            ]),
            "configuration",
            &figures,
        )?;
        let listener = setup(
            tokio::net::TcpListener::bind("127.0.0.1:0").await,
            "listener",
            &figures,
        )?;
        addresses.push(setup(listener.local_addr(), "address", &figures)?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        stops.push(stop);
        running.push(tokio::spawn(pgline_server::run(
            config,
            Some(listener),
            async move {
                let _ = stopped.await;
            },
        )));
    }
    for (i, addr) in addresses.iter().enumerate() {
        let ready = wait_ready(*addr).await;
        check(ready, format!("instance {i} never became ready"), &figures)?;
    }

    let requests = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let started = Instant::now();
    let mut stations = Vec::new();
    for st in 1..=STATIONS {
        let addresses = addresses.clone();
        let (requests, errors) = (requests.clone(), errors.clone());
        stations.push(tokio::spawn(async move {
            let name = format!("ST-{st:02}");
            let mut acknowledged = Vec::new();
            let mut turn = st;
            let mut next = || {
                turn += 1;
                addresses[turn % addresses.len()]
            };
            let fail = |what: String| {
                errors
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(what);
            };
            for n in 1..=orders_per_station {
                let order_number = format!("MO-{st:02}-{n:05}");
                let barcodes: Vec<String> = (0..PANELS)
                    .map(|p| format!("P-{st:02}-{n:05}-{p}"))
                    .collect();
                let order = json!({
                    "order_number": order_number,
                    "panel_type": "FR4",
                    "panels": barcodes.iter().map(|b| json!({"barcode": b})).collect::<Vec<_>>(),
                });
                requests.fetch_add(1, Relaxed);
                let (code, body) = post(next(), "/api/orders", &order.to_string()).await;
                if code != 201 {
                    fail(format!("POST order {order_number}: {code} {body}"));
                    continue;
                }
                acknowledged.push(order_number);
                for barcode in &barcodes {
                    for event in ["SCANNED", "PASSED", "COMPLETED"] {
                        let body = json!({"event_type": event, "station": name}).to_string();
                        requests.fetch_add(1, Relaxed);
                        let path = format!("/api/panels/{barcode}/events");
                        let (code, answer) = post(next(), &path, &body).await;
                        if code != 201 {
                            fail(format!("{event} {barcode}: {code} {answer}"));
                        }
                    }
                }
            }
            acknowledged
        }));
    }
    let mut acknowledged = Vec::new();
    for station in stations {
        acknowledged.extend(setup(station.await, "station", &figures)?);
    }
    let took = started.elapsed();
    let errors = errors
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let requests = requests.load(Relaxed);
    figures.add("orders", acknowledged.len());
    figures.add("requests", requests);
    figures.add("errors", errors.len());
    figures.ms("load_time", took);
    figures.add(
        "orders_per_sec",
        format!("{:.0}", acknowledged.len() as f64 / took.as_secs_f64()),
    );
    figures.add(
        "requests_per_sec",
        format!("{:.0}", requests as f64 / took.as_secs_f64()),
    );
    let server_connections = setup(
        server
            .query_scalar_i64(&format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}'"
            ))
            .await,
        "server connections",
        &figures,
    )?;
    figures.add(
        "client_connections_max",
        instances as u32 * INSTANCE_POOL_MAX,
    );
    figures.add("server_connections", server_connections);

    for stop in stops {
        let _ = stop.send(());
    }
    for (i, instance) in running.into_iter().enumerate() {
        let stopped = tokio::time::timeout(Duration::from_secs(30), instance).await;
        let result = setup(stopped, "instance shutdown", &figures)?;
        let result = setup(result, "instance task", &figures)?;
        setup(result, &format!("instance {i}"), &figures)?;
    }
    drop(bouncer);

    // The database itself, not through PgBouncer or pgline.
    let client = setup(server.connect(&db).await, "connect", &figures)?;
    let rows = setup(
        client
            .query(
                "SELECT o.order_number, count(p.id), count(p.id) FILTER (WHERE p.status = 'COMPLETED') \
                 FROM manufacturing_orders o LEFT JOIN panels p ON p.order_id = o.id GROUP BY o.order_number",
                &[],
            )
            .await,
        "read back",
        &figures,
    )?;
    let stored: std::collections::HashMap<String, (i64, i64)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    let missing = acknowledged
        .iter()
        .filter(|o| !stored.contains_key(*o))
        .count();
    let unfinished = stored
        .values()
        .filter(|(panels, done)| *panels != PANELS as i64 || *done != PANELS as i64)
        .count();
    figures.add("acknowledged_but_missing", missing);
    figures.add("orders_not_completed", unfinished);
    check(
        errors.is_empty(),
        format!(
            "{} requests failed, first: {:?}",
            errors.len(),
            errors.first()
        ),
        &figures,
    )?;
    check(
        acknowledged.len() == STATIONS * orders_per_station,
        "not every order was acknowledged",
        &figures,
    )?;
    check(missing == 0, "acknowledged orders are missing", &figures)?;
    check(
        unfinished == 0,
        "orders with panels not completed",
        &figures,
    )?;
    check(
        server_connections <= i64::from(BOUNCER_POOL),
        "more server connections than PgBouncer's pool size",
        &figures,
    )?;
    Ok(figures)
}

async fn wait_ready(addr: SocketAddr) -> bool {
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() && get(addr, "/ready").await.0 == 200
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    exchange(addr, "GET", path, "").await
}

async fn post(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    exchange(addr, "POST", path, body).await
}

/// One HTTP/1.1 request on a fresh connection; status 0 when the exchange
/// failed or took longer than 30 s.
async fn exchange(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: pgline\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        let status = response.split(' ').nth(1)?.parse().ok()?;
        let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        Some((status, body))
    };
    tokio::time::timeout(Duration::from_secs(30), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or((0, String::new()))
}

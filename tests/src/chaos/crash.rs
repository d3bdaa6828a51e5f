//! Crash consistency through the HTTP API: kill -9 while 8 stations create
//! orders; afterwards every acknowledged order exists with all its panels,
//! none exists half-written, and the outage gave 503s — no 500s, no hangs.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use pgline_async::{PgManager, PgPool, PoolOptions};
use pgline_mfg::{PgStore, Store};
use pgline_resilience::{BreakerOptions, ResilienceOptions, Resilient, RetryOptions};
use pgline_server::{AppState, app};
use pgline_testkit::PgServer;
use serde_json::json;
use tower::ServiceExt;

use super::{Figures, Outcome, check, setup};

const PANELS: usize = 3;

/// Scenario 9 (issue 7's crash-consistency test).
pub async fn crash_consistency() -> Outcome {
    let mut figures = Figures::default();
    // Acknowledged commits must survive kill -9: durability on for this server.
    let server = setup(
        PgServer::builder()
            .config("synchronous_commit", "on")
            .start()
            .await,
        "server",
        &figures,
    )?;
    let pool = setup(
        PgPool::new(
            PgManager::new(server.config("postgres"), None, 100)
                .with_query_timeout(Some(Duration::from_secs(5))),
            PoolOptions::new(2, 10).with_acquire_timeout(Duration::from_millis(500)),
        ),
        "pool",
        &figures,
    )?;
    setup(pool.initialize().await, "initialize", &figures)?;
    let db = Arc::new(Resilient::new(
        pool,
        ResilienceOptions::new(
            BreakerOptions::new(5, Duration::from_millis(200)),
            RetryOptions::new(2).with_backoff(Duration::from_millis(5), Duration::from_millis(50)),
        ),
    ));
    let store = PgStore::new(db.clone());
    setup(store.migrate().await, "migrate", &figures)?;
    let router = app(AppState::new(db.clone(), Store::Postgres(store)));

    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let statuses = Arc::new(Mutex::new(HashMap::<u16, u64>::new()));
    let slowest = Arc::new(Mutex::new(Duration::ZERO));
    let mut stations = Vec::new();
    for st in 1..=8u32 {
        let (router, stop, acknowledged, statuses, slowest) = (
            router.clone(),
            stop.clone(),
            acknowledged.clone(),
            statuses.clone(),
            slowest.clone(),
        );
        stations.push(tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(SeqCst) {
                n += 1;
                let order_number = format!("MO-{st:02}-{n:05}");
                let panels: Vec<_> = (0..PANELS)
                    .map(|p| json!({"barcode": format!("P-{st:02}-{n:05}-{p}")}))
                    .collect();
                let body =
                    json!({"order_number": order_number, "panel_type": "FR4", "panels": panels});
                let t = Instant::now();
                // 0 stands for a request that hung.
                let code = tokio::time::timeout(
                    Duration::from_secs(15),
                    post(&router, "/api/orders", &body),
                )
                .await
                .unwrap_or_default();
                let took = t.elapsed();
                {
                    let mut s = slowest
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    *s = (*s).max(took);
                }
                *statuses
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .entry(code)
                    .or_insert(0) += 1;
                if code == 201 {
                    acknowledged
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(order_number);
                }
                if code != 201 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    setup(server.kill9().await, "kill -9", &figures)?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    setup(server.restart().await, "restart", &figures)?;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stop.store(true, SeqCst);
    for s in stations {
        setup(s.await, "station", &figures)?;
    }
    let statuses = statuses
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let acknowledged = acknowledged
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let mut codes: Vec<_> = statuses.iter().collect();
    codes.sort();
    figures.add("responses", format!("{codes:?}"));
    figures.add("acknowledged_orders", acknowledged.len());
    figures.ms(
        "slowest_request",
        *slowest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );

    // Check the database directly, not through the pool under test.
    let client = setup(server.connect("postgres").await, "connect", &figures)?;
    let rows = setup(
        client
            .query(
                "SELECT o.order_number, count(p.id) FROM manufacturing_orders o \
                 LEFT JOIN panels p ON p.order_id = o.id GROUP BY o.order_number",
                &[],
            )
            .await,
        "read back",
        &figures,
    )?;
    let stored: HashMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let missing = acknowledged
        .iter()
        .filter(|o| !stored.contains_key(*o))
        .count();
    let partial = stored.values().filter(|n| **n != PANELS as i64).count();
    figures.add("orders_in_database", stored.len());
    figures.add("acknowledged_but_missing", missing);
    figures.add("partial_orders", partial);
    check(
        missing == 0,
        "acknowledged orders are missing after the crash",
        &figures,
    )?;
    check(
        partial == 0,
        "orders exist with only part of their panels",
        &figures,
    )?;
    check(
        !statuses.contains_key(&500),
        "the API answered 500 during the outage",
        &figures,
    )?;
    check(
        !statuses.contains_key(&0),
        "requests hung during the outage",
        &figures,
    )?;
    check(
        statuses.get(&503).copied().unwrap_or(0) > 0,
        "no 503 during the outage",
        &figures,
    )?;
    check(
        statuses.keys().all(|c| [201, 503].contains(c)),
        "answers other than 201 and 503",
        &figures,
    )?;
    Ok(figures)
}

async fn post(router: &Router, uri: &str, body: &serde_json::Value) -> u16 {
    let request = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()));
    let Ok(request) = request else { return 0 };
    match router.clone().oneshot(request).await {
        Ok(response) => response.status().as_u16(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.as_u16(),
    }
}

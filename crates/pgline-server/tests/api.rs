//! The HTTP contract, driven through the router with no socket, on a real
//! database and on the in-memory store.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use pgline_async::{PgManager, PgPool, PoolOptions};
use pgline_mfg::{MemoryStore, PgStore, Store};
use pgline_resilience::{ResilienceOptions, Resilient};
use pgline_server::{AppState, app, breaker_view};
use pgline_testkit::PgServer;
use serde_json::{Value, json};
use tower::ServiceExt;

type Db = Arc<Resilient<PgPool>>;

async fn postgres_app() -> (Router, Db) {
    let server = PgServer::shared();
    let name = server.fresh_database().await.unwrap();
    let pool = PgPool::new(
        PgManager::new(server.config(&name), None, 100),
        PoolOptions::new(1, 5),
    )
    .unwrap();
    pool.initialize().await.unwrap();
    let db = Arc::new(Resilient::new(pool, ResilienceOptions::default()));
    let store = PgStore::new(db.clone());
    store.migrate().await.unwrap();
    let breaker = db.breaker().clone();
    let mut state = AppState::new(db.clone(), Store::Postgres(store));
    state.breaker = Some(Arc::new(move || breaker_view(&breaker)));
    (app(state), db)
}

async fn call(app: &Router, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    let body = match body {
        Some(v) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    raw(app, request.body(body).unwrap()).await
}

async fn raw(app: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

async fn contract(app: &Router) {
    // Orders: all panels in one transaction.
    let order = json!({"order_number": "MO-1", "panel_type": "FR4", "panels": [{"barcode": "P-1"}, {"barcode": "P-2"}]});
    let (status, body) = call(app, "POST", "/api/orders", Some(order.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["order_number"], "MO-1");
    let (status, body) = call(app, "POST", "/api/orders", Some(order)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"]["message"].is_string());
    let clash = json!({"order_number": "MO-2", "panel_type": "FR4", "panels": [{"barcode": "P-3"}, {"barcode": "P-1"}]});
    let (status, _) = call(app, "POST", "/api/orders", Some(clash)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = call(app, "GET", "/api/orders/MO-2", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a half-written order exists");
    let (status, _) = call(app, "GET", "/api/panels/P-3/events", None).await;
    assert!(status.is_client_error());
    let (status, body) = call(app, "GET", "/api/orders/MO-1", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["panel_type"], "FR4");
    assert!(
        body["status"].is_string() && body["created_at"].is_string(),
        "{body}"
    );
    let panels = body["panels"].as_array().unwrap();
    assert_eq!(panels.len(), 2);
    assert_eq!(panels[0]["barcode"], "P-1");
    assert_eq!(panels[0]["status"], "PENDING");

    // Panels and events.
    let (status, _) = call(
        app,
        "POST",
        "/api/panels",
        Some(json!({"barcode": "P-9", "panel_type": "x'); DROP TABLE panels; --"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = call(app, "GET", "/api/panels?status=PENDING", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.as_array()
            .unwrap()
            .iter()
            .any(|p| p["panel_type"] == "x'); DROP TABLE panels; --"),
        "{body}"
    );
    let scan = json!({"event_type": "SCANNED", "station": "ST-01"});
    let (status, body) = call(app, "POST", "/api/panels/P-1/events", Some(scan.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = call(app, "POST", "/api/panels/P-1/events", Some(scan)).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "a second scan keeps IN_PROGRESS"
    );
    let (status, _) = call(
        app,
        "POST",
        "/api/panels/P-1/events",
        Some(json!({"event_type": "COMPLETED", "station": "ST-02"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = call(
        app,
        "POST",
        "/api/panels/P-2/events",
        Some(json!({"event_type": "COMPLETED", "station": "ST-02"})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "PENDING → COMPLETED is not allowed: {body}"
    );
    let (status, _) = call(
        app,
        "POST",
        "/api/panels/NOPE-1/events",
        Some(json!({"event_type": "SCANNED", "station": "ST-01"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = call(
        app,
        "POST",
        "/api/panels/P-2/events",
        Some(json!({"event_type": "TELEPORTED", "station": "ST-01"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // Malformed input: JSON errors, and the server keeps serving.
    let bad = Request::builder()
        .method("POST")
        .uri("/api/orders")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"order_number\": "))
        .unwrap();
    let (status, body) = raw(app, bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "malformed_json");
    let (status, body) = call(app, "POST", "/api/orders", Some(json!({"order_number": 5}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let huge = "x".repeat(2 * 1024 * 1024);
    let (status, _) = call(
        app,
        "POST",
        "/api/panels",
        Some(json!({"barcode": huge, "panel_type": "a"})),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, body) = call(app, "GET", "/api/panels?status=SIDEWAYS", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = call(app, "GET", "/nowhere", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, _) = call(app, "GET", "/live", None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_contract_on_postgres() {
    let (app, db) = postgres_app().await;
    contract(&app).await;
    let (status, body) = call(&app, "GET", "/status", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["database"]["healthy"], true, "{body}");
    assert_eq!(body["breaker"]["state"], "closed");
    assert_eq!(body["degraded"], false);
    assert!(
        body["manufacturing"]["orders"].as_u64().unwrap() >= 1,
        "{body}"
    );
    assert_eq!(body["pool"]["in_use"], 0);
    for path in ["/health", "/ready", "/health/database"] {
        let (status, body) = call(&app, "GET", path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let response = app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(text.contains("# TYPE"), "{text}");
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_contract_on_the_memory_store() {
    let server = PgServer::shared();
    let pool = PgPool::new(
        PgManager::new(server.config("postgres"), None, 10),
        PoolOptions::new(0, 1),
    )
    .unwrap();
    let app = app(AppState::new(Arc::new(pool), MemoryStore::new()));
    contract(&app).await;
    let (status, body) = call(&app, "GET", "/status", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["degraded"], true);
    let (status, _) = call(&app, "GET", "/ready", None).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "degraded mode is not ready"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_gives_503_with_retry_after_and_live_stays_200() {
    // Acknowledged commits must survive kill -9 (the testkit turns it off by default).
    let server = PgServer::builder()
        .config("synchronous_commit", "on")
        .start()
        .await
        .unwrap();
    let pool = PgPool::new(
        PgManager::new(server.config("postgres"), None, 100),
        PoolOptions::new(1, 3).with_acquire_timeout(Duration::from_millis(300)),
    )
    .unwrap();
    pool.initialize().await.unwrap();
    let db = Arc::new(Resilient::new(pool, ResilienceOptions::default()));
    let store = PgStore::new(db.clone());
    store.migrate().await.unwrap();
    let app = app(AppState::new(db.clone(), Store::Postgres(store)));
    let (status, _) = call(
        &app,
        "POST",
        "/api/panels",
        Some(json!({"barcode": "A-1", "panel_type": "t"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    server.kill9().await.unwrap();
    let response = app
        .clone()
        .oneshot(
            Request::post("/api/panels")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    json!({"barcode": "A-2", "panel_type": "t"}).to_string(),
                ))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    let (status, _) = call(&app, "GET", "/ready", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _) = call(&app, "GET", "/live", None).await;
    assert_eq!(status, StatusCode::OK);
    server.restart().await.unwrap();
    let mut recovered = false;
    for _ in 0..100 {
        if call(&app, "GET", "/ready", None).await.0 == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "/ready did not recover after the restart");
    let (status, body) = call(
        &app,
        "POST",
        "/api/panels",
        Some(json!({"barcode": "A-3", "panel_type": "t"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

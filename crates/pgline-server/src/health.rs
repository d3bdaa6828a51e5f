//! The seed's health endpoints, with Kubernetes semantics.

use std::fmt::Write as _;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use pgline_core::{Database, PoolStats};
use pgline_mfg::ManufacturingStore;
use serde_json::json;

use crate::state::AppState;

/// `GET /live`: the process answers; never touches the database.
pub(crate) async fn live() -> Json<serde_json::Value> {
    Json(json!({ "status": "alive" }))
}

/// `GET /health`: fast, for load balancers — no database round trip; reports
/// from the pool's statistics and the breaker.
pub(crate) async fn health<D, S>(State(state): State<AppState<D, S>>) -> Response
where
    D: Database + Clone,
    S: ManufacturingStore + Clone + 'static,
{
    let stats = state.db.stats();
    let breaker_open = state.breaker.as_ref().is_some_and(|b| b().state == "open");
    let degraded = state.store.is_degraded();
    let status = if state.is_shutting_down() {
        "shutting_down"
    } else if degraded || breaker_open {
        "degraded"
    } else {
        "ok"
    };
    let code = if state.is_shutting_down() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = json!({
        "status": status,
        "uptime_seconds": state.uptime().as_secs(),
        "database": if breaker_open { "unavailable" } else if degraded { "in-memory fallback" } else { "connected" },
        "pool": { "total": stats.total, "idle": stats.idle, "in_use": stats.in_use, "waiting": stats.waiting },
    });
    (code, Json(body)).into_response()
}

/// `GET /ready`: can a connection be borrowed within a short bound?
pub(crate) async fn ready<D, S>(State(state): State<AppState<D, S>>) -> Response
where
    D: Database + Clone,
    S: ManufacturingStore + Clone + 'static,
{
    if state.is_shutting_down() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "reason": "shutting down" })),
        )
            .into_response();
    }
    if state.store.is_degraded() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "reason": "database unreachable; running on the in-memory fallback" })),
        )
            .into_response();
    }
    let report = state.db.health(state.limits.ready_timeout).await;
    let code = if report.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(json!({ "ready": report.healthy, "response_time_ms": report.response_time_ms, "error": report.error })),
    )
        .into_response()
}

/// `GET /health/database`: a round trip with its response time and the pool's statistics.
pub(crate) async fn database<D, S>(State(state): State<AppState<D, S>>) -> Response
where
    D: Database + Clone,
    S: ManufacturingStore + Clone + 'static,
{
    let report = state.db.health(state.limits.check_timeout).await;
    let code = if report.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(json!({
            "status": if report.healthy { "healthy" } else { "unhealthy" },
            "backend": report.backend,
            "response_time_ms": report.response_time_ms,
            "pool": report.stats,
            "error": report.error,
        })),
    )
        .into_response()
}

/// `GET /status`: database, pool, breaker, degraded mode and manufacturing figures.
pub(crate) async fn status<D, S>(State(state): State<AppState<D, S>>) -> Json<serde_json::Value>
where
    D: Database + Clone,
    S: ManufacturingStore + Clone + 'static,
{
    let report = state.db.health(state.limits.check_timeout).await;
    let figures =
        match tokio::time::timeout(state.limits.check_timeout, state.store.figures()).await {
            Ok(Ok(figures)) => json!(figures),
            Ok(Err(e)) => json!({ "error": e.to_string() }),
            Err(_) => json!({ "error": "timed out" }),
        };
    Json(json!({
        "service": "pgline-server",
        "version": env!("CARGO_PKG_VERSION"),
        "profile": state.profile,
        "uptime_seconds": state.uptime().as_secs(),
        "shutting_down": state.is_shutting_down(),
        "degraded": state.store.is_degraded(),
        "database": {
            "healthy": report.healthy,
            "backend": report.backend,
            "response_time_ms": report.response_time_ms,
            "error": report.error,
        },
        "pool": state.db.stats(),
        "breaker": state.breaker.as_ref().map(|b| b()),
        "read_pool": state.read_pool.as_ref().map(|r| r()),
        "manufacturing": figures,
    }))
}

/// `GET /metrics`: Prometheus text.
pub(crate) async fn metrics<D, S>(State(state): State<AppState<D, S>>) -> Response
where
    D: Database + Clone,
    S: ManufacturingStore + Clone + 'static,
{
    let mut body = match &state.metrics {
        Some(render) => render(),
        None => render_pool_stats(&state.db.stats(), state.db.backend()),
    };
    body.push_str(&state.auth_failures.render_prometheus());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// A minimal Prometheus rendering of the pool statistics (used when no
/// telemetry renderer is installed).
pub fn render_pool_stats(stats: &PoolStats, backend: &str) -> String {
    let mut out = String::new();
    let labels = format!("pool_name=\"pgline\",backend=\"{backend}\"");
    let gauge = |out: &mut String, name: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{labels}}} {value}"
        );
    };
    let counter = |out: &mut String, name: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{{labels}}} {value}"
        );
    };
    gauge(
        &mut out,
        "pgline_pool_connections",
        "Open connections.",
        f64::from(stats.total),
    );
    gauge(
        &mut out,
        "pgline_pool_connections_idle",
        "Idle connections.",
        f64::from(stats.idle),
    );
    gauge(
        &mut out,
        "pgline_pool_connections_in_use",
        "Connections held by callers.",
        f64::from(stats.in_use),
    );
    gauge(
        &mut out,
        "pgline_pool_pending_requests",
        "Callers waiting for a connection.",
        f64::from(stats.waiting),
    );
    gauge(
        &mut out,
        "pgline_pool_max_connections",
        "Maximum pool size.",
        f64::from(stats.max),
    );
    gauge(
        &mut out,
        "pgline_pool_utilization_ratio",
        "In use over max.",
        stats.utilization_percent / 100.0,
    );
    counter(
        &mut out,
        "pgline_pool_acquired_total",
        "Connections handed out.",
        stats.acquired_total,
    );
    counter(
        &mut out,
        "pgline_pool_created_total",
        "Connections opened.",
        stats.created_total,
    );
    counter(
        &mut out,
        "pgline_pool_acquire_timeouts_total",
        "Acquires that timed out.",
        stats.acquire_timeouts_total,
    );
    counter(
        &mut out,
        "pgline_pool_errors_total",
        "Errors seen by the pool.",
        stats.errors_total,
    );
    out
}

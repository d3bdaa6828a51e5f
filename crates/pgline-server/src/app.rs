//! The router: `fn app(state) -> Router`, so tests need no socket.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use pgline_core::Database;
use pgline_mfg::ManufacturingStore;
use tower_http::timeout::TimeoutLayer;

use crate::error::ApiError;
use crate::state::AppState;
use crate::{api, health};

/// The dashboard page: one file, no build step; it polls `/status`.
const DASHBOARD: &str = include_str!("../assets/dashboard.html");

/// The whole HTTP surface: the manufacturing API, the health endpoints and
/// the dashboard, with the body limit and request timeout of `state.limits`.
pub fn app<D, S>(state: AppState<D, S>) -> Router
where
    D: Database + Clone,
    S: ManufacturingStore + Clone + 'static,
{
    let limits = state.limits.clone();
    Router::new()
        .route("/", get(dashboard))
        .route("/live", get(health::live))
        .route("/health", get(health::health::<D, S>))
        .route("/ready", get(health::ready::<D, S>))
        .route("/health/database", get(health::database::<D, S>))
        .route("/status", get(health::status::<D, S>))
        .route("/metrics", get(health::metrics::<D, S>))
        .route("/api/orders", post(api::create_order::<D, S>))
        .route("/api/orders/{order_number}", get(api::get_order::<D, S>))
        .route(
            "/api/panels",
            post(api::create_panel::<D, S>).get(api::list_panels::<D, S>),
        )
        .route(
            "/api/panels/{barcode}/events",
            post(api::record_event::<D, S>),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .with_state(state)
}

async fn dashboard() -> Html<&'static str> {
    Html(DASHBOARD)
}

async fn not_found() -> impl IntoResponse {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

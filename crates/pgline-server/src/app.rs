//! The router: `fn app(state) -> Router`, so tests need no socket.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use pgline_core::Database;
use pgline_mfg::ManufacturingStore;
use tower_http::timeout::TimeoutLayer;

use crate::auth::{self, Gate};
use crate::error::ApiError;
use crate::state::AppState;
use crate::{api, health, trace};

/// The dashboard page: one file, no build step; it polls `/status`.
const DASHBOARD: &str = include_str!("../assets/dashboard.html");

/// The whole HTTP surface: the manufacturing API, the health endpoints and
/// the dashboard, with the body limit and request timeout of `state.limits`
/// and the authentication of `state.auth`. Every routed request runs in a
/// server span named after its route (`POST /api/orders`) that continues the
/// caller's W3C `traceparent`; its attributes are listed in docs/tracing.md.
///
/// | endpoints | who may call them |
/// |---|---|
/// | `/live`, `/ready`, `/health` | everyone (probes) |
/// | `/`, `/status`, `/metrics`, `/health/database` | holders of an admin token, when `state.auth` has admin tokens |
/// | `/api/*` | holders of a station token, when `state.auth` has station tokens |
pub fn app<D, S>(state: AppState<D, S>) -> Router
where
    D: Database + Clone,
    S: ManufacturingStore + Clone + 'static,
{
    let limits = state.limits.clone();
    let gate = Gate {
        auth: state.auth.clone(),
        failures: state.auth_failures.clone(),
    };
    let probes = Router::new()
        .route("/live", get(health::live))
        .route("/health", get(health::health::<D, S>))
        .route("/ready", get(health::ready::<D, S>));
    let admin = Router::new()
        .route("/", get(dashboard))
        .route("/health/database", get(health::database::<D, S>))
        .route("/status", get(health::status::<D, S>))
        .route("/metrics", get(health::metrics::<D, S>))
        .route_layer(middleware::from_fn_with_state(
            gate.clone(),
            auth::require_admin,
        ));
    let api = Router::new()
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
        .route_layer(middleware::from_fn_with_state(gate, auth::require_station));
    Router::new()
        .merge(probes)
        .merge(admin)
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        // Last, so outermost: the span covers the timeout (a 408 is recorded),
        // the body limit and authentication (401/403 too). A route layer runs
        // after routing, where `MatchedPath` is known; the 404 fallback gets none.
        .route_layer(middleware::from_fn(trace::request_span))
        .with_state(state)
}

async fn dashboard() -> Html<&'static str> {
    Html(DASHBOARD)
}

async fn not_found() -> impl IntoResponse {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn method_not_allowed() -> impl IntoResponse {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not accept that method",
    )
}

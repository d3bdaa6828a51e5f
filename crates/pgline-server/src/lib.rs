//! `pgline-server`: the manufacturing API and the seed's health endpoints on
//! a pgline pool.
//!
//! The library holds the HTTP surface ([`app`]) so tests drive it without a
//! socket; the binary (`src/main.rs`) is the composition root that reads the
//! configuration, builds the pool and its decorators, migrates, serves and
//! shuts down.
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /live` | 200 while the process runs; never touches the database |
//! | `GET /health` | fast status for load balancers (no round trip) |
//! | `GET /ready` | 200 when a connection can be borrowed within 1 s, else 503 |
//! | `GET /health/database` | a round trip's response time and the pool statistics |
//! | `GET /status` | database, pool, breaker, read pool (when `DB_READ_HOSTS` is set), degraded mode, manufacturing figures |
//! | `GET /metrics` | Prometheus text |
//! | `POST /api/orders` | 201 with the order; 409 on a duplicate order number or barcode |
//! | `GET /api/orders/{order_number}` | the order with its panels, or 404 |
//! | `POST /api/panels`, `GET /api/panels?status=` | create a panel; list by status |
//! | `POST /api/panels/{barcode}/events` | 201; 404 unknown barcode; 409 transition not allowed |
//!
//! Errors are JSON `{"error": {"code", "message"}}`: 4xx for the caller's
//! mistakes, 503 with `Retry-After` when the database is unavailable or the
//! breaker is open, never internals.
//!
//! ```
//! use pgline_mfg::MemoryStore;
//! use pgline_server::{AppState, app};
//!
//! # fn demo<D: pgline_core::Database + Clone>(db: D) {
//! let router: axum::Router = app(AppState::new(db, MemoryStore::new()));
//! # }
//! ```

mod api;
mod app;
mod auth;
mod error;
mod extract;
mod health;
mod replica;
mod run;
mod state;
mod tls;
mod trace;

pub use app::app;
pub use auth::{Auth, AuthFailures, AuthenticatedStation, FailureReason, hash_token};
pub use error::ApiError;
pub use health::render_pool_stats;
pub use replica::{ReadPoolProbe, ReadPoolView};
pub use run::{breaker_view, run, run_with, serve, shutdown_signal};
pub use state::store_limits;
pub use state::{AppState, BreakerProbe, BreakerView, HttpLimits, MetricsRenderer};
pub use tls::{HANDSHAKE_TIMEOUT, plain_http_warning, server_config as tls_server_config};

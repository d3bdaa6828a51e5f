//! What every handler shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pgline_config::{Config, ConfigError};
use serde::Serialize;

use crate::auth::{Auth, AuthFailures};

/// The circuit breaker as `/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct BreakerView {
    /// `closed`, `open` or `half_open`.
    pub state: &'static str,
    /// Times it opened.
    pub opened_total: u64,
    /// Calls it rejected.
    pub rejected_total: u64,
    /// Milliseconds until the next probe while open.
    pub retry_in_ms: u64,
}

/// Reads the breaker.
pub type BreakerProbe = Arc<dyn Fn() -> BreakerView + Send + Sync>;
/// Renders the Prometheus text of `/metrics`.
pub type MetricsRenderer = Arc<dyn Fn() -> String + Send + Sync>;

/// Settings of the HTTP edge.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpLimits {
    /// Largest request body, in bytes (413 above). Default 1 MiB.
    pub max_body_bytes: usize,
    /// Bound on one request (408 above). Default 30 s.
    pub request_timeout: Duration,
    /// Bound on `/ready`'s borrow of a connection. Default 1 s.
    pub ready_timeout: Duration,
    /// Bound on `/health/database`'s and `/status`'s checks. Default 3 s.
    pub check_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            ready_timeout: Duration::from_secs(1),
            check_timeout: Duration::from_secs(3),
        }
    }
}

/// The shared state of the router: the database handle `D`, the
/// manufacturing store `S`, and what the health endpoints read.
pub struct AppState<D, S> {
    /// The database handle (a pool behind decorators).
    pub db: D,
    /// The manufacturing store.
    pub store: S,
    /// Reads the circuit breaker, when there is one.
    pub breaker: Option<BreakerProbe>,
    /// Reads the read pool on standbys, when one is configured (`DB_READ_HOSTS`).
    pub read_pool: Option<crate::replica::ReadPoolProbe>,
    /// Renders `/metrics`; without one, a minimal rendering of the pool statistics.
    pub metrics: Option<MetricsRenderer>,
    /// Limits of the HTTP edge.
    pub limits: HttpLimits,
    /// The profile name, for `/status`.
    pub profile: &'static str,
    /// Who may call the API and the admin endpoints; [`Auth::off`] unless
    /// set (directly or by [`AppState::apply_config`]).
    pub auth: Auth,
    /// Failed authentication attempts, for `/metrics`
    /// ([`AuthFailures::render_prometheus`]). Shared by clones; replacing
    /// [`auth`](Self::auth) keeps it.
    pub auth_failures: Arc<AuthFailures>,
    started: Instant,
    shutting_down: Arc<AtomicBool>,
}

impl<D: Clone, S: Clone> Clone for AppState<D, S> {
    fn clone(&self) -> Self {
        Self {
            db: self.db.clone(),
            store: self.store.clone(),
            breaker: self.breaker.clone(),
            read_pool: self.read_pool.clone(),
            metrics: self.metrics.clone(),
            limits: self.limits.clone(),
            profile: self.profile,
            auth: self.auth.clone(),
            auth_failures: self.auth_failures.clone(),
            started: self.started,
            shutting_down: self.shutting_down.clone(),
        }
    }
}

impl<D, S> AppState<D, S> {
    /// State with default limits and no breaker or metrics renderer.
    pub fn new(db: D, store: S) -> Self {
        Self {
            db,
            store,
            breaker: None,
            read_pool: None,
            metrics: None,
            limits: HttpLimits::default(),
            profile: "development",
            auth: Auth::off(),
            auth_failures: Arc::new(AuthFailures::default()),
            started: Instant::now(),
            shutting_down: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Takes the HTTP settings of `config`: the profile, the body limit
    /// (`HTTP_MAX_BODY_BYTES`) and the authentication ([`Auth::from_config`]).
    ///
    /// Errors when the profile requires authentication that is not
    /// configured: in production, `STATION_TOKENS_FILE`, and
    /// `ADMIN_TOKEN_FILE` unless `ADMIN_OPEN=true`. The store's limits
    /// (`MAX_PANELS_PER_ORDER`) are the store's: see [`store_limits`].
    pub fn apply_config(&mut self, config: &Config) -> Result<(), ConfigError> {
        self.auth = Auth::from_config(config)?;
        self.limits.max_body_bytes = config.server.max_body_bytes;
        self.profile = config.profile.as_str();
        Ok(())
    }

    /// Seconds since the state was made.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Marks the service as shutting down: `/ready` answers 503 from now on.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// True once shutdown began.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}

/// The manufacturing store's limits from `config` (`MAX_PANELS_PER_ORDER`),
/// for `PgStore::with_limits` and `MemoryStore::with_limits`.
pub fn store_limits(config: &Config) -> pgline_mfg::Limits {
    pgline_mfg::Limits::default().with_max_panels_per_order(config.server.max_panels_per_order)
}

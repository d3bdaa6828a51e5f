//! Pool sizing and timing options.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use pgline_core::PoolListener;

/// How a [`Pool`](crate::Pool) sizes itself and when it times out, reaps and
/// validates. Build it with [`PoolOptions::new`] and the `with_*` methods, or
/// from the service configuration with [`PoolOptions::from_config`].
#[derive(Clone)]
#[non_exhaustive]
pub struct PoolOptions {
    /// Idle connections the pool keeps open when load allows (opened in the
    /// background). Default 0.
    pub min_idle: u32,
    /// Hard upper bound on open connections (idle + in use + being opened). Default 10.
    pub max_size: u32,
    /// One deadline for an acquire: queueing, connecting and validation. Default 30 s.
    pub acquire_timeout: Duration,
    /// Idle connections above `min_idle` are closed after this long. `None` keeps them. Default 10 min.
    pub idle_timeout: Option<Duration>,
    /// Connections are retired after this age (spread randomly by up to
    /// `lifetime_jitter` so they don't all expire together). `None` keeps them. Default 30 min.
    pub max_lifetime: Option<Duration>,
    /// Largest random reduction of a connection's lifetime. Default 2.5 % of `max_lifetime`.
    pub lifetime_jitter: Option<Duration>,
    /// A connection idle longer than this is checked with a round trip before
    /// hand-out. Default 500 ms.
    pub validation_threshold: Duration,
    /// Warn when a connection is held longer than this. Default off.
    pub leak_detection: Option<Duration>,
    /// How often the maintenance task reaps and refills. Default 1 s.
    pub maintenance_interval: Duration,
    /// Bound on one attempt to open a connection. Default 10 s.
    pub connect_timeout: Duration,
    /// Bound on resetting a returned connection (cancel + rollback). Default 5 s.
    pub reset_timeout: Duration,
    /// Receives pool events. Default none (events cost nothing).
    pub listener: Option<Arc<dyn PoolListener>>,
}

impl fmt::Debug for PoolOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolOptions")
            .field("min_idle", &self.min_idle)
            .field("max_size", &self.max_size)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_lifetime", &self.max_lifetime)
            .field("lifetime_jitter", &self.lifetime_jitter)
            .field("validation_threshold", &self.validation_threshold)
            .field("leak_detection", &self.leak_detection)
            .field("maintenance_interval", &self.maintenance_interval)
            .field("connect_timeout", &self.connect_timeout)
            .field("reset_timeout", &self.reset_timeout)
            .field("listener", &self.listener.is_some())
            .finish()
    }
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            min_idle: 0,
            max_size: 10,
            acquire_timeout: Duration::from_secs(30),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
            lifetime_jitter: None,
            validation_threshold: Duration::from_millis(500),
            leak_detection: None,
            maintenance_interval: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(10),
            reset_timeout: Duration::from_secs(5),
            listener: None,
        }
    }
}

impl PoolOptions {
    /// Defaults with the given bounds.
    pub fn new(min_idle: u32, max_size: u32) -> Self {
        Self {
            min_idle,
            max_size,
            ..Self::default()
        }
    }

    /// Sets the acquire deadline.
    #[must_use]
    pub fn with_acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Sets the idle timeout (`None` keeps idle connections).
    #[must_use]
    pub fn with_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets the maximum lifetime (`None` keeps connections forever).
    #[must_use]
    pub fn with_max_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.max_lifetime = lifetime;
        self
    }

    /// Sets the largest random reduction of each connection's lifetime.
    #[must_use]
    pub fn with_lifetime_jitter(mut self, jitter: Duration) -> Self {
        self.lifetime_jitter = Some(jitter);
        self
    }

    /// Sets how long a connection may idle before it is checked at hand-out.
    #[must_use]
    pub fn with_validation_threshold(mut self, threshold: Duration) -> Self {
        self.validation_threshold = threshold;
        self
    }

    /// Warns about connections held longer than `threshold`.
    #[must_use]
    pub fn with_leak_detection(mut self, threshold: Option<Duration>) -> Self {
        self.leak_detection = threshold;
        self
    }

    /// Sets how often maintenance runs.
    #[must_use]
    pub fn with_maintenance_interval(mut self, interval: Duration) -> Self {
        self.maintenance_interval = interval;
        self
    }

    /// Sets the bound on one connection attempt.
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the listener that receives pool events.
    #[must_use]
    pub fn with_listener(mut self, listener: Arc<dyn PoolListener>) -> Self {
        self.listener = Some(listener);
        self
    }

    /// Checks the bounds; the message names the field and what it accepts.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_size == 0 {
            return Err("max_size must be at least 1".into());
        }
        if self.min_idle > self.max_size {
            return Err(format!(
                "min_idle ({}) must not exceed max_size ({})",
                self.min_idle, self.max_size
            ));
        }
        for (name, value) in [
            ("acquire_timeout", Some(self.acquire_timeout)),
            ("idle_timeout", self.idle_timeout),
            ("max_lifetime", self.max_lifetime),
            ("maintenance_interval", Some(self.maintenance_interval)),
            ("connect_timeout", Some(self.connect_timeout)),
            ("reset_timeout", Some(self.reset_timeout)),
        ] {
            if value == Some(Duration::ZERO) {
                return Err(format!("{name} must be greater than zero"));
            }
        }
        Ok(())
    }

    /// The lifetime jitter in effect: the configured one, else 2.5 % of the lifetime.
    pub(crate) fn effective_jitter(&self) -> Duration {
        match (self.lifetime_jitter, self.max_lifetime) {
            (Some(j), Some(life)) => j.min(life / 2),
            (None, Some(life)) => life / 40,
            (_, None) => Duration::ZERO,
        }
    }
}

impl PoolOptions {
    /// Options from the service configuration (`DB_POOL_*` and the TOML
    /// `[pool]` table): `min_connections` becomes `min_idle`.
    pub fn from_config(pool: &pgline_config::PoolConfig) -> Self {
        Self {
            min_idle: pool.min_connections,
            max_size: pool.max_connections,
            acquire_timeout: pool.acquire_timeout,
            idle_timeout: Some(pool.idle_timeout),
            max_lifetime: Some(pool.max_lifetime),
            lifetime_jitter: None,
            validation_threshold: pool.validation_idle,
            leak_detection: pool.leak_detection,
            maintenance_interval: Duration::from_secs(1),
            connect_timeout: pool.connect_timeout,
            reset_timeout: Duration::from_secs(5),
            listener: None,
        }
    }
}

//! Pool sizing and timing options, and how they map onto r2d2's builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use pgline_core::PoolListener;

/// How a [`SyncPool`](crate::SyncPool) sizes itself and when it times out,
/// reaps and validates. Build it with [`PoolOptions::new`] and the `with_*`
/// methods, or from the service configuration with [`PoolOptions::from_config`].
///
/// The fields mean what they mean in the async pool; where r2d2 cannot do the
/// same, the field says so.
#[derive(Clone)]
#[non_exhaustive]
pub struct PoolOptions {
    /// Idle connections the pool keeps open (r2d2's `min_idle`, set
    /// explicitly: r2d2 would default it to `max_size`). Default 0.
    pub min_idle: u32,
    /// Upper bound on open connections (r2d2's `max_size`). Default 10.
    pub max_size: u32,
    /// How long a caller waits for a connection. Default 30 s.
    pub acquire_timeout: Duration,
    /// Idle connections are closed after this long (r2d2's reaper runs every
    /// 30 s and does not spare `min_idle`: it closes them and opens new ones).
    /// `None` keeps them. Default 10 min.
    pub idle_timeout: Option<Duration>,
    /// Connections older than this are closed when they are returned, or by
    /// the reaper when idle. `None` keeps them. Default 30 min.
    pub max_lifetime: Option<Duration>,
    /// A connection unused for longer than this is checked with a round trip
    /// before it is handed out; a more recently used one is not. Zero checks
    /// on every checkout (r2d2's behaviour). Default 500 ms.
    pub validation_threshold: Duration,
    /// Bound on that check. Default 5 s.
    pub validation_timeout: Duration,
    /// Receives pool events. Default none.
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
            .field("validation_threshold", &self.validation_threshold)
            .field("validation_timeout", &self.validation_timeout)
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
            validation_threshold: Duration::from_millis(500),
            validation_timeout: Duration::from_secs(5),
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

    /// Options from the service configuration (`DB_POOL_*` and the TOML
    /// `[pool]` table): `min_connections` becomes `min_idle`,
    /// `max_connections` `max_size`, `validation_idle` the validation threshold.
    pub fn from_config(pool: &pgline_config::PoolConfig) -> Self {
        Self {
            min_idle: pool.min_connections,
            max_size: pool.max_connections,
            acquire_timeout: pool.acquire_timeout,
            idle_timeout: Some(pool.idle_timeout),
            max_lifetime: Some(pool.max_lifetime),
            validation_threshold: pool.validation_idle,
            ..Self::default()
        }
    }

    /// Sets how long a caller waits for a connection.
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

    /// Sets how long a connection may go unused before it is checked at checkout.
    #[must_use]
    pub fn with_validation_threshold(mut self, threshold: Duration) -> Self {
        self.validation_threshold = threshold;
        self
    }

    /// Sets the listener that receives pool events.
    #[must_use]
    pub fn with_listener(mut self, listener: Arc<dyn PoolListener>) -> Self {
        self.listener = Some(listener);
        self
    }

    /// Checks the bounds (r2d2 panics on the values refused here); the message
    /// names the field and what it accepts.
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
            ("validation_timeout", Some(self.validation_timeout)),
        ] {
            if value == Some(Duration::ZERO) {
                return Err(format!("{name} must be greater than zero"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_config_maps_min_max_and_timeouts() {
        let config = pgline_config::PoolConfig::defaults(pgline_config::Profile::Development);
        let options = PoolOptions::from_config(&config);
        assert_eq!(options.min_idle, 2);
        assert_eq!(options.max_size, 10);
        assert_eq!(options.acquire_timeout, Duration::from_secs(30));
        assert_eq!(options.idle_timeout, Some(Duration::from_secs(10)));
        assert_eq!(options.max_lifetime, Some(config.max_lifetime));
        assert_eq!(options.validation_threshold, Duration::from_millis(500));
        assert!(options.validate().is_ok());
    }

    #[test]
    fn values_r2d2_would_panic_on_are_refused() {
        assert!(PoolOptions::new(0, 0).validate().is_err());
        let err = PoolOptions::new(5, 2).validate().unwrap_err();
        assert!(err.contains("min_idle"), "{err}");
        let err = PoolOptions::new(0, 2)
            .with_idle_timeout(Some(Duration::ZERO))
            .validate()
            .unwrap_err();
        assert!(err.contains("idle_timeout"), "{err}");
        let err = PoolOptions::new(0, 2)
            .with_acquire_timeout(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert!(err.contains("acquire_timeout"), "{err}");
    }
}

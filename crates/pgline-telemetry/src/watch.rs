//! [`UtilizationWatch`]: a warning when a pool runs hot, at most once per
//! interval.

use std::time::{Duration, Instant};

use pgline_core::PoolStats;

/// Target of the utilization lines.
const WATCH_TARGET: &str = "pgline_telemetry::pool";

/// Warns when a pool's utilization (connections in use over its maximum)
/// reaches a threshold — at most once per interval however long it stays
/// there — and says so once when it falls back below.
///
/// Check it by hand with [`check`](UtilizationWatch::check) or let
/// [`spawn`](UtilizationWatch::spawn) sample the pool periodically.
///
/// ```
/// use std::time::{Duration, Instant};
/// use pgline_core::PoolStats;
/// use pgline_telemetry::UtilizationWatch;
///
/// let mut watch = UtilizationWatch::new("plant", 80, Duration::from_secs(60));
/// let busy = PoolStats::new(10, 1, 9, 3, 2, 10); // 9 of 10 in use
/// let start = Instant::now();
/// assert!(watch.check_at(&busy, start)); // warns
/// assert!(!watch.check_at(&busy, start + Duration::from_secs(30))); // quiet
/// assert!(watch.check_at(&busy, start + Duration::from_secs(61))); // warns again
/// ```
#[derive(Debug, Clone)]
pub struct UtilizationWatch {
    pool_name: String,
    threshold_percent: f64,
    interval: Duration,
    last_warning: Option<Instant>,
}

impl UtilizationWatch {
    /// Warns about the pool named `pool_name` when at least
    /// `threshold_percent` of its connections are in use, at most once per
    /// `interval`.
    pub fn new(pool_name: impl Into<String>, threshold_percent: u8, interval: Duration) -> Self {
        Self {
            pool_name: pool_name.into(),
            threshold_percent: f64::from(threshold_percent),
            interval,
            last_warning: None,
        }
    }

    /// With the threshold of the configuration (`utilization_warn_percent`,
    /// 80 % by default) and one warning per minute at most.
    pub fn from_config(pool_name: impl Into<String>, log: &pgline_config::LogConfig) -> Self {
        Self::new(
            pool_name,
            log.utilization_warn_percent,
            Duration::from_secs(60),
        )
    }

    /// Looks at `stats` now; returns whether it logged a warning.
    pub fn check(&mut self, stats: &PoolStats) -> bool {
        self.check_at(stats, Instant::now())
    }

    /// Looks at `stats` as of `now`; returns whether it logged a warning.
    pub fn check_at(&mut self, stats: &PoolStats, now: Instant) -> bool {
        if stats.max == 0 || stats.utilization_percent < self.threshold_percent {
            if self.last_warning.take().is_some() {
                tracing::info!(
                    target: WATCH_TARGET,
                    pool = %self.pool_name,
                    utilization_percent = stats.utilization_percent,
                    "pool utilization back below {}%",
                    self.threshold_percent
                );
            }
            return false;
        }
        if self
            .last_warning
            .is_some_and(|last| now.saturating_duration_since(last) < self.interval)
        {
            return false;
        }
        self.last_warning = Some(now);
        tracing::warn!(
            target: WATCH_TARGET,
            pool = %self.pool_name,
            utilization_percent = stats.utilization_percent,
            in_use = stats.in_use,
            max = stats.max,
            waiting = stats.waiting,
            threshold_percent = self.threshold_percent,
            "pool utilization high: {} of {} connections in use",
            stats.in_use,
            stats.max
        );
        true
    }

    /// Samples `stats` every `period` on the current Tokio runtime until the
    /// task is aborted (or the runtime ends).
    pub fn spawn(
        mut self,
        stats: impl Fn() -> PoolStats + Send + 'static,
        period: Duration,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                self.check(&stats());
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_at_most_once_per_interval_and_rearms_after_recovery() {
        let mut watch = UtilizationWatch::new("p", 80, Duration::from_secs(60));
        let t0 = Instant::now();
        let hot = PoolStats::new(10, 2, 8, 0, 2, 10);
        let cool = PoolStats::new(10, 5, 5, 0, 2, 10);
        assert!(watch.check_at(&hot, t0), "80% reaches the threshold");
        assert!(!watch.check_at(&hot, t0 + Duration::from_secs(59)));
        assert!(watch.check_at(&hot, t0 + Duration::from_secs(60)));
        assert!(!watch.check_at(&cool, t0 + Duration::from_secs(61)));
        assert!(
            watch.check_at(&hot, t0 + Duration::from_secs(62)),
            "re-armed"
        );
        assert!(!watch.check_at(&PoolStats::default(), t0 + Duration::from_secs(200)));
    }
}

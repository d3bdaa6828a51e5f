//! Retry with exponential backoff and full jitter, for what is safe to repeat.

use std::time::Duration;

use pgline_core::{DbError, ErrorKind};

/// Retry settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RetryOptions {
    /// Attempts in all, the first included. Default 3; 1 turns retry off.
    pub max_attempts: u32,
    /// Cap of the first backoff (each sleep is uniformly random below its
    /// cap: "full jitter"). Default 50 ms.
    pub initial_backoff: Duration,
    /// The cap never grows past this. Default 1 s.
    pub max_backoff: Duration,
    /// No retry starts after this much time since the first attempt. Default 10 s.
    pub deadline: Duration,
}

impl Default for RetryOptions {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            deadline: Duration::from_secs(10),
        }
    }
}

impl RetryOptions {
    /// Options with `max_attempts` and the default backoff.
    pub fn new(max_attempts: u32) -> Self {
        Self {
            max_attempts: max_attempts.max(1),
            ..Self::default()
        }
    }

    /// Sets the backoff caps.
    #[must_use]
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// Sets the total deadline.
    #[must_use]
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The cap of the sleep before attempt `attempt + 1` (attempt counts from 1).
    pub fn backoff_cap(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }

    /// A full-jitter sleep before attempt `attempt + 1`.
    pub fn backoff(&self, attempt: u32, rng: &mut fastrand::Rng) -> Duration {
        self.backoff_cap(attempt).mul_f64(rng.f64())
    }
}

/// What may be repeated.
///
/// - A statement outside a transaction only when getting a connection failed
///   (`Connect`: it never reached the server). An `AcquireTimeout` is not
///   retried: the pool already spent the caller's whole acquire deadline
///   queueing and reconnecting (with its own backoff), and repeating it would
///   multiply the wait of a station that must get a clear answer.
/// - A whole transaction closure also on serialization failures and
///   deadlocks (`40001`, `40P01`) and on a connection lost before `COMMIT` was
///   sent (nothing was committed).
/// - Never: `CommitOutcomeUnknown`, `CircuitOpen`, `PoolClosed`, errors of the
///   request itself.
pub fn is_retryable(error: &DbError, whole_transaction: bool) -> bool {
    match error.kind() {
        ErrorKind::Connect => error.is_transient(),
        ErrorKind::Query if whole_transaction => {
            error.is_serialization_failure() || error.is_connection_lost()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_to_the_cap_with_full_jitter() {
        let o = RetryOptions::new(10)
            .with_backoff(Duration::from_millis(10), Duration::from_millis(100));
        assert_eq!(o.backoff_cap(1), Duration::from_millis(10));
        assert_eq!(o.backoff_cap(2), Duration::from_millis(20));
        assert_eq!(o.backoff_cap(4), Duration::from_millis(80));
        assert_eq!(o.backoff_cap(5), Duration::from_millis(100));
        assert_eq!(o.backoff_cap(60), Duration::from_millis(100));
        let mut rng = fastrand::Rng::with_seed(1);
        let samples: Vec<_> = (0..200).map(|_| o.backoff(3, &mut rng)).collect();
        assert!(samples.iter().all(|d| *d <= Duration::from_millis(40)));
        assert!(
            samples.iter().any(|d| *d < Duration::from_millis(10)),
            "full jitter reaches low values"
        );
        assert!(samples.iter().any(|d| *d > Duration::from_millis(30)));
    }

    #[test]
    fn only_safe_errors_are_retryable() {
        assert!(is_retryable(&DbError::new(ErrorKind::Connect), false));
        assert!(!is_retryable(
            &DbError::new(ErrorKind::AcquireTimeout {
                waited: Duration::from_secs(1),
                waiting: 1,
                in_use: 1,
                max: 1
            }),
            false
        ));
        assert!(!is_retryable(
            &DbError::new(ErrorKind::CommitOutcomeUnknown),
            true
        ));
        assert!(!is_retryable(
            &DbError::new(ErrorKind::CircuitOpen {
                retry_in: Duration::ZERO
            }),
            true
        ));
        assert!(!is_retryable(&DbError::new(ErrorKind::PoolClosed), true));
        assert!(!is_retryable(&DbError::new(ErrorKind::Query), true));
    }
}

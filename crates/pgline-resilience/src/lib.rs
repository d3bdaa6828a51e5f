//! Resilience for any pgline handle: a circuit breaker on failsafe and retry
//! with exponential backoff and full jitter, applied by the error
//! classification of `pgline-core` ([`DbError::class`](pgline_core::DbError::class),
//! [`DbError::trips_breaker`](pgline_core::DbError::trips_breaker)).
//!
//! It wraps backends through the `pgline-core` traits and knows no backend:
//! `Resilient<PgPool>` and `Resilient<SyncPool>` are both `Database` handles.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use pgline_core::Database;
//! use pgline_resilience::{BreakerOptions, Resilient, ResilienceOptions, RetryOptions};
//!
//! fn harden<D: Database>(pool: D) -> Resilient<D> {
//!     Resilient::new(
//!         pool,
//!         ResilienceOptions::new(
//!             BreakerOptions::new(5, Duration::from_secs(2)),
//!             RetryOptions::new(3).with_deadline(Duration::from_secs(5)),
//!         ),
//!     )
//! }
//! ```
//!
//! # What is retried
//!
//! Only what is safe: a call whose connection could not be opened (it never
//! reached the server), and a whole transaction closure after a
//! serialization failure or deadlock or a connection lost before `COMMIT` was
//! sent. A connection lost during `COMMIT` is
//! [`ErrorKind::CommitOutcomeUnknown`](pgline_core::ErrorKind::CommitOutcomeUnknown)
//! and is never retried: the caller must check whether it committed. An
//! acquire timeout is not retried either: the pool's acquire already queues
//! and reconnects (with backoff) for the whole deadline.

mod breaker;
mod resilient;
mod retry;

pub use breaker::{Breaker, BreakerOptions, BreakerState, BreakerStats, StateListener};
pub use resilient::{ResilienceOptions, Resilient};
pub use retry::{RetryOptions, is_retryable};

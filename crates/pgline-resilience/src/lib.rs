//! Resilience for any pgline handle: error classification, a circuit breaker on
//! failsafe and retry with exponential backoff and full jitter.
//!
//! It wraps backends through the `pgline-core` traits and knows no backend.

//! Integration tests of pgline-telemetry against a real PostgreSQL and an
//! in-process OTLP collector. Each test installs its subscriber for its own
//! futures only (`WithSubscriber`), so they run side by side; `tests/init.rs`
//! is a binary of its own because it installs the global one.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
mod otlp;
mod prometheus;
mod secrets;
mod tls;

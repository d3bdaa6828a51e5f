//! The async connection pool of pgline, written on tokio and tokio-postgres.
//!
//! This crate owns connections; it implements the handle traits of `pgline-core`.

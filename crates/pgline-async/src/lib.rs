//! The async connection pool of pgline, written on tokio and tokio-postgres.
//!
//! This crate owns connections; it implements the handle traits of `pgline-core`.

mod manager;
mod options;
mod pg;
mod pool;
mod pooled;
mod stats;
mod tls;

pub use manager::Manager;
pub use options::PoolOptions;
pub use pg::{PgConnection, PgManager, PgPool, PgTransaction};
pub use pool::Pool;
pub use pooled::Pooled;

#[cfg(test)]
mod tests;

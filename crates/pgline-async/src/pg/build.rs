//! Building a PostgreSQL pool from the service configuration.

use pgline_core::DbError;

use super::{PgManager, PgPool};
use crate::options::PoolOptions;

impl PgManager {
    /// A manager from the service configuration: hosts, credentials,
    /// keep-alive, `statement_timeout`, TLS mode and root certificate,
    /// statement-cache size.
    pub fn from_config(config: &pgline_config::Config) -> Result<Self, DbError> {
        let tls = crate::tls::make_connector(
            config.database.tls,
            config.database.ssl_root_cert.as_deref(),
        )?;
        Ok(Self::new(
            config.to_tokio_postgres(),
            tls,
            config.pool.statement_cache_size as usize,
        )
        .with_query_timeout(Some(config.pool.query_timeout)))
    }
}

impl PgPool {
    /// Builds a pool from the service configuration and opens its minimum
    /// connections (see [`Pool::initialize`](crate::Pool::initialize)).
    pub async fn connect(config: &pgline_config::Config) -> Result<Self, DbError> {
        Self::connect_with(config, PoolOptions::from_config(&config.pool)).await
    }

    /// Like [`connect`](Self::connect) with explicit pool options (for a
    /// listener, say).
    pub async fn connect_with(
        config: &pgline_config::Config,
        options: PoolOptions,
    ) -> Result<Self, DbError> {
        let pool = Self::new(PgManager::from_config(config)?, options)?;
        pool.initialize().await?;
        Ok(pool)
    }
}

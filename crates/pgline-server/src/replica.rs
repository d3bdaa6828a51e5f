//! The optional read pool on hot standbys (`DB_READ_HOSTS`): built with the
//! same backend as the primary pool, decorated the same way, and joined to the
//! primary by [`Routed`] so that the store's lag-tolerant reads go to a
//! standby and fall back to the primary.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pgline_async::{PgManager, PgPool, PoolOptions};
use pgline_config::Config;
use pgline_core::{Database, DbError, ErrorKind, PoolStats, Routed, RoutingStats};
use pgline_sync::{PoolOptions as SyncPoolOptions, SyncManager, SyncPool};
use serde::Serialize;

/// The read pool as `/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ReadPoolView {
    /// The standbys (`host:port`), in the order they are tried.
    pub hosts: Vec<String>,
    /// The read pool's statistics.
    pub pool: PoolStats,
    /// How lag-tolerant reads were routed: to the standby, or to the primary.
    pub routing: RoutingStats,
}

/// Reads the read pool for `/status`.
pub type ReadPoolProbe = Arc<dyn Fn() -> ReadPoolView + Send + Sync>;

/// A probe for `/status` over the routed handle.
pub(crate) fn probe<D: Database>(config: &Config, routed: Arc<Routed<D>>) -> ReadPoolProbe {
    let hosts: Vec<String> = config
        .read_pool
        .iter()
        .flat_map(|read| read.hosts.iter().map(ToString::to_string))
        .collect();
    Arc::new(move || ReadPoolView {
        hosts: hosts.clone(),
        pool: routed.replica().map(Database::stats).unwrap_or_default(),
        routing: routed.routing_stats(),
    })
}

/// The async read pool, when configured. Its minimum connections are opened
/// within the read acquire timeout; a standby that is down at start is only
/// a warning (reads go to the primary, the pool keeps connecting).
pub(crate) async fn async_read_pool(config: &Config) -> anyhow::Result<Option<PgPool>> {
    let Some(read) = config.read_pool_config() else {
        return Ok(None);
    };
    let manager = PgManager::from_config(&read).context("read pool database settings")?;
    let pool = PgPool::new(manager, PoolOptions::from_config(&read.pool))
        .context("read pool settings (DB_READ_POOL_*)")?;
    warn_unless_started(
        &read,
        pool.initialize_within(read.pool.acquire_timeout).await,
    );
    Ok(Some(pool))
}

/// The sync read pool, when configured (see [`async_read_pool`]).
pub(crate) async fn sync_read_pool(config: &Config) -> anyhow::Result<Option<SyncPool>> {
    let Some(read) = config.read_pool_config() else {
        return Ok(None);
    };
    let tls =
        pgline_async::make_connector(read.database.tls, read.database.ssl_root_cert.as_deref())
            .context("TLS settings")?;
    let manager = SyncManager::from_config(&read, tls).context("read pool database settings")?;
    let pool = SyncPool::new(manager, SyncPoolOptions::from_config(&read.pool))
        .context("read pool settings (DB_READ_POOL_*)")?;
    let opening = pool.clone();
    let wait = read.pool.acquire_timeout;
    let started =
        match tokio::time::timeout(
            wait,
            tokio::task::spawn_blocking(move || opening.initialize()),
        )
        .await
        {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(DbError::other(ErrorKind::Connect, e.to_string())),
            Err(_) => Err(DbError::new(ErrorKind::Connect)
                .with_context(format!("no connection within {wait:?}"))),
        };
    warn_unless_started(&read, started);
    Ok(Some(pool))
}

fn warn_unless_started(read: &Config, started: Result<(), DbError>) {
    let hosts: Vec<String> = read
        .database
        .hosts
        .iter()
        .map(ToString::to_string)
        .collect();
    match started {
        Ok(()) => tracing::info!(hosts = ?hosts, "read pool on standbys ready"),
        Err(e) => tracing::warn!(
            hosts = ?hosts,
            error = %e,
            "read pool: no standby answered at start; lag-tolerant reads go to the primary until one does"
        ),
    }
}

/// How long reads stay on the primary after a standby failure.
pub(crate) fn fallback_period(config: &Config) -> Duration {
    config
        .read_pool
        .as_ref()
        .map_or(Duration::ZERO, |read| read.fallback_period)
}

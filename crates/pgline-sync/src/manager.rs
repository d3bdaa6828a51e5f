//! Opening and checking connections: [`SyncManager`] holds the settings, and
//! the pool's private r2d2 `ManageConnection` opens connections through
//! r2d2_postgres and wraps them in [`SyncClient`].

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use pgline_config::TlsMode;
use pgline_core::{DbError, ErrorKind, RemoveReason};
use r2d2_postgres::PostgresConnectionManager;
use r2d2_postgres::postgres::{self, NoTls};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::client::SyncClient;
use crate::events;
use crate::shared::Shared;

/// Where and how the sync pool connects: the tokio-postgres settings, the
/// TLS connector and the size of each connection's statement cache.
#[derive(Clone)]
pub struct SyncManager {
    config: tokio_postgres::Config,
    tls: Option<MakeRustlsConnect>,
    statement_cache: usize,
}

impl std::fmt::Debug for SyncManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // tokio_postgres::Config's Debug redacts the password.
        f.debug_struct("SyncManager")
            .field("config", &self.config)
            .field("tls", &self.tls.is_some())
            .field("statement_cache", &self.statement_cache)
            .finish()
    }
}

impl SyncManager {
    /// A manager for `config`. With `tls` set and an `ssl_mode` other than
    /// `Disable`, connections negotiate TLS through rustls (build the
    /// connector with `pgline_async::make_connector`, as the async pool does;
    /// tokio-postgres-rustls' connector works with the sync client too). A
    /// `statement_cache` of 0 turns the per-connection cache off.
    pub fn new(
        config: tokio_postgres::Config,
        tls: Option<MakeRustlsConnect>,
        statement_cache: usize,
    ) -> Self {
        Self {
            config,
            tls,
            statement_cache,
        }
    }

    /// A manager from the service configuration: hosts, credentials,
    /// keep-alive, `statement_timeout`, `sslmode` and statement-cache size.
    ///
    /// The connector is the caller's to build from `config.database.tls` and
    /// `ssl_root_cert` (this crate does not depend on the async one).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Rejected`] when the configuration requires TLS
    /// (`require`, `verify-ca`, `verify-full`) and `tls` is `None`.
    pub fn from_config(
        config: &pgline_config::Config,
        tls: Option<MakeRustlsConnect>,
    ) -> Result<Self, DbError> {
        let mode = config.database.tls;
        if tls.is_none() && !matches!(mode, TlsMode::Disable | TlsMode::Prefer) {
            return Err(DbError::new(ErrorKind::Rejected).with_context(format!(
                "DB_SSL={mode} needs a TLS connector (pgline_async::make_connector)"
            )));
        }
        Ok(Self::new(
            config.to_tokio_postgres(),
            tls,
            config.pool.statement_cache_size as usize,
        ))
    }

    /// The connection settings.
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }
}

/// r2d2_postgres' manager for the negotiated kind of socket.
enum Connector {
    Plain(PostgresConnectionManager<NoTls>),
    Tls(PostgresConnectionManager<MakeRustlsConnect>),
}

/// The r2d2 `ManageConnection` of a [`SyncPool`](crate::SyncPool).
pub(crate) struct Manager {
    connector: Connector,
    statement_cache: usize,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("tls", &matches!(self.connector, Connector::Tls(_)))
            .field("statement_cache", &self.statement_cache)
            .finish()
    }
}

impl Manager {
    pub(crate) fn new(settings: SyncManager, shared: Arc<Shared>) -> Self {
        let ssl_mode = settings.config.get_ssl_mode();
        let mut config = postgres::Config::from(settings.config);
        // Server notices (a ROLLBACK outside a transaction warns) go to
        // tracing at debug level instead of the `log` crate at info.
        config.notice_callback(|notice| {
            tracing::debug!(
                severity = notice.severity(),
                code = notice.code().code(),
                message = notice.message(),
                "server notice"
            );
        });
        let connector = match settings.tls {
            Some(tls) if ssl_mode != SslMode::Disable => {
                Connector::Tls(PostgresConnectionManager::new(config, tls))
            }
            _ => Connector::Plain(PostgresConnectionManager::new(config, NoTls)),
        };
        Self {
            connector,
            statement_cache: settings.statement_cache,
            shared,
        }
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = SyncClient;
    type Error = DbError;

    fn connect(&self) -> Result<SyncClient, DbError> {
        if self.shared.is_closed() {
            return Err(DbError::new(ErrorKind::PoolClosed));
        }
        let started = Instant::now();
        let client = match &self.connector {
            Connector::Plain(m) => m.connect(),
            Connector::Tls(m) => m.connect(),
        }
        .map_err(|e| DbError::postgres(ErrorKind::Connect, e))?;
        let conn = SyncClient::new(client, Arc::clone(&self.shared), self.statement_cache);
        events::connected(conn.id_cell(), started.elapsed());
        Ok(conn)
    }

    /// Called by r2d2 on every checkout (`test_on_check_out` is on): a
    /// connection used within the validation threshold is handed out without
    /// a round trip; an older one answers an empty query first.
    fn is_valid(&self, conn: &mut SyncClient) -> Result<(), DbError> {
        let shared = &self.shared;
        if shared.is_closed() {
            // `close` is taking idle connections out to close them.
            return Ok(());
        }
        if conn.is_closed() {
            conn.flags.discard = Some(RemoveReason::Broken);
            return Err(
                DbError::new(ErrorKind::Query).with_context("validation: connection closed")
            );
        }
        if conn.last_used.elapsed() <= shared.validation_threshold {
            shared.counters.validations_skipped.fetch_add(1, Relaxed);
            return Ok(());
        }
        shared.counters.validations_run.fetch_add(1, Relaxed);
        conn.ping(shared.validation_timeout).map_err(|e| {
            conn.flags.discard = Some(RemoveReason::Broken);
            e.with_context("validation failed")
        })
    }

    /// Called by r2d2 on every return, without IO: closed sockets, marked
    /// connections, expired lifetimes and a closed pool are discarded.
    fn has_broken(&self, conn: &mut SyncClient) -> bool {
        let shared = &self.shared;
        let reason = if conn.flags.discard.is_some() {
            conn.flags.discard
        } else if conn.is_closed() || conn.flags.interrupted || conn.flags.needs_reset() {
            // Dirty at this point means its reset failed or never ran.
            Some(RemoveReason::Broken)
        } else if shared.is_closed() {
            Some(RemoveReason::Closed)
        } else if shared
            .max_lifetime
            .is_some_and(|life| conn.created_at.elapsed() >= life)
        {
            Some(RemoveReason::Lifetime)
        } else {
            None
        };
        match reason {
            Some(reason) => {
                conn.flags.discard = Some(reason);
                true
            }
            None => {
                conn.last_used = Instant::now();
                false
            }
        }
    }
}

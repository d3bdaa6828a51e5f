//! The PostgreSQL backend: [`PgManager`] opens tokio-postgres connections,
//! [`PgConnection`] tracks whether one may be dirty, and `Pool<PgManager>`
//! implements the core [`Database`](pgline_core::Database) trait.

mod build;
mod connection;
mod database;
mod transaction;
mod unnamed;

use std::future::poll_fn;
use std::time::Duration;

use pgline_core::{DbError, ErrorKind};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, NoTls, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

pub use connection::PgConnection;
pub use database::PgPool;
pub use transaction::PgTransaction;

use crate::manager::Manager;

/// Opens and cleans PostgreSQL connections for the pool.
#[derive(Clone)]
pub struct PgManager {
    config: tokio_postgres::Config,
    tls: Option<MakeRustlsConnect>,
    statement_cache: usize,
    query_timeout: Option<Duration>,
}

impl std::fmt::Debug for PgManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // tokio_postgres::Config's Debug redacts the password.
        f.debug_struct("PgManager")
            .field("config", &self.config)
            .field("tls", &self.tls.is_some())
            .field("statement_cache", &self.statement_cache)
            .field("query_timeout", &self.query_timeout)
            .finish()
    }
}

impl PgManager {
    /// A manager for `config`. With `tls` set and an `ssl_mode` other than
    /// `Disable`, connections negotiate TLS through rustls. A
    /// `statement_cache` of 0 turns the per-connection cache off (needed
    /// behind PgBouncer in transaction mode).
    pub fn new(
        config: tokio_postgres::Config,
        tls: Option<MakeRustlsConnect>,
        statement_cache: usize,
    ) -> Self {
        Self {
            config,
            tls,
            statement_cache,
            query_timeout: None,
        }
    }

    /// Bounds every statement on the client side too: a statement still
    /// running after `timeout` returns [`ErrorKind::Timeout`], and the pool
    /// cancels it on the server before the connection is reused. (The
    /// server-side `statement_timeout` from the configuration does not see
    /// network stalls; this does.)
    #[must_use]
    pub fn with_query_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.query_timeout = timeout;
        self
    }

    /// The connection settings.
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// Prepared statements cached per connection; 0 means the cache is off
    /// and statements run on the unnamed statement (PgBouncer-safe).
    pub fn statement_cache(&self) -> usize {
        self.statement_cache
    }

    async fn open<T>(&self, tls: T) -> Result<PgConnection, DbError>
    where
        T: MakeTlsConnect<Socket> + Send,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        let (client, mut connection) = self
            .config
            .connect(tls)
            .await
            .map_err(|e| DbError::postgres(ErrorKind::Connect, e))?;
        // Drive the connection ourselves so server notices go to tracing at
        // debug level instead of the `log` crate.
        tokio::spawn(async move {
            while let Some(message) = poll_fn(|cx| connection.poll_message(cx)).await {
                match message {
                    Ok(AsyncMessage::Notice(notice)) => {
                        tracing::debug!(
                            severity = notice.severity(),
                            code = notice.code().code(),
                            message = notice.message(),
                            "server notice"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "connection ended with an error");
                        break;
                    }
                }
            }
        });
        Ok(PgConnection::new(
            client,
            self.statement_cache,
            self.query_timeout,
        ))
    }
}

impl Manager for PgManager {
    type Connection = PgConnection;

    async fn connect(&self) -> Result<PgConnection, DbError> {
        match (&self.tls, self.config.get_ssl_mode()) {
            (Some(tls), mode) if mode != SslMode::Disable => self.open(tls.clone()).await,
            _ => self.open(NoTls).await,
        }
    }

    fn has_broken(&self, conn: &PgConnection) -> bool {
        conn.is_closed()
    }

    async fn validate(&self, conn: &PgConnection) -> Result<(), DbError> {
        // An empty simple query: one round trip, no parse, no plan.
        conn.raw()
            .simple_query("")
            .await
            .map(|_| ())
            .map_err(DbError::query)
    }

    fn needs_reset(&self, conn: &PgConnection) -> bool {
        conn.flags().needs_reset()
    }

    async fn reset(&self, conn: &PgConnection) -> Result<(), DbError> {
        if conn
            .flags()
            .cancelled
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            // A statement was dropped mid-flight. Ask the server to stop it,
            // then discard the connection rather than reuse it: tokio-postgres
            // returns from `cancel_query` once the request is written, not
            // once the server has acted on it, so a late cancel could
            // otherwise hit the next caller's statement on this backend
            // (seen in the chaos suite). A discarded backend's pid and secret
            // key die with it, so the late cancel harms no one.
            let cancel = conn.cancel_token().clone();
            let sent = match &self.tls {
                Some(tls) if self.config.get_ssl_mode() != SslMode::Disable => {
                    tokio::time::timeout(Duration::from_secs(2), cancel.cancel_query(tls.clone()))
                        .await
                }
                _ => tokio::time::timeout(Duration::from_secs(2), cancel.cancel_query(NoTls)).await,
            };
            if !matches!(sent, Ok(Ok(()))) {
                tracing::debug!(connection_id = conn.id(), "cancel request failed");
            }
            return Err(DbError::new(ErrorKind::Rejected)
                .with_context("a statement was cancelled mid-flight; connection discarded"));
        }
        // In a transaction, or a statement may have opened one: ROLLBACK
        // leaves the session outside any transaction block, aborted or not
        // (with a harmless notice when there was none).
        match conn.raw().batch_execute("ROLLBACK").await {
            Ok(()) => {
                conn.flags().clear();
                Ok(())
            }
            Err(e) => Err(DbError::query(e).with_context("reset")),
        }
    }

    fn set_id(&self, conn: &mut PgConnection, id: u64) {
        conn.id = id;
    }
}

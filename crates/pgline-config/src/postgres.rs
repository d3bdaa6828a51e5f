//! The connection settings for tokio-postgres: the service's role, and the
//! schema owner's role for migrations.

use crate::{Config, Secret};

/// Sent as `application_name`, so pgline's sessions stand out in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "pgline";

/// Sent as `application_name` by the migration connection
/// ([`Config::migration_tokio_postgres`]).
pub const MIGRATION_APPLICATION_NAME: &str = "pgline-migrate";

impl Config {
    /// The tokio-postgres connection settings: every host and port, database,
    /// user, password, connect timeout, keep-alive, `application_name`
    /// `pgline`, the query timeout as the server's `statement_timeout`,
    /// `target_session_attrs` and the `sslmode`.
    ///
    /// `verify-ca` and `verify-full` become `Require` here: checking the
    /// certificate is the job of the TLS connector, built from
    /// [`DatabaseConfig::tls`](crate::DatabaseConfig::tls). The sync backend
    /// converts the result with `postgres::Config::from`.
    ///
    /// ```
    /// let config = pgline_config::Config::from_vars([("DB_HOST", "db1,db2"), ("DB_NAME", "plant")])?;
    /// let pg = config.to_tokio_postgres();
    /// assert_eq!(pg.get_hosts().len(), 2);
    /// assert_eq!(pg.get_dbname(), Some("plant"));
    /// # Ok::<(), pgline_config::ConfigError>(())
    /// ```
    pub fn to_tokio_postgres(&self) -> tokio_postgres::Config {
        let database = &self.database;
        self.connection(&database.user, database.password.as_ref(), APPLICATION_NAME)
    }

    /// The role migrations run as: `DB_MIGRATION_USER`, else `DB_USER`.
    pub fn migration_user(&self) -> &str {
        self.database
            .migration_user
            .as_deref()
            .unwrap_or(&self.database.user)
    }

    /// The connection settings for running migrations: those of
    /// [`to_tokio_postgres`](Self::to_tokio_postgres) with the schema owner's
    /// role (`DB_MIGRATION_USER` and `DB_MIGRATION_PASSWORD`) and
    /// `application_name` `pgline-migrate`.
    ///
    /// Without `DB_MIGRATION_USER` this is the service's own user and
    /// password; the same when `DB_MIGRATION_USER` equals `DB_USER` and has
    /// no password of its own. The TLS mode, and so the connector to build, is
    /// the service's.
    ///
    /// ```
    /// use pgline_config::Config;
    ///
    /// let config = Config::from_vars([
    ///     ("DB_USER", "pgline_app"), ("DB_PASSWORD", "app-pw"),
    ///     ("DB_MIGRATION_USER", "pgline_owner"), ("DB_MIGRATION_PASSWORD", "owner-pw"),
    /// ])?;
    /// let owner = config.migration_tokio_postgres();
    /// assert_eq!(owner.get_user(), Some("pgline_owner"));
    /// assert_eq!(owner.get_password(), Some(&b"owner-pw"[..]));
    /// assert_eq!(config.to_tokio_postgres().get_user(), Some("pgline_app"));
    ///
    /// let single = Config::from_vars([("DB_USER", "pgline"), ("DB_PASSWORD", "pw")])?;
    /// assert_eq!(single.migration_tokio_postgres().get_user(), Some("pgline"));
    /// assert_eq!(single.migration_tokio_postgres().get_password(), Some(&b"pw"[..]));
    /// # Ok::<(), pgline_config::ConfigError>(())
    /// ```
    pub fn migration_tokio_postgres(&self) -> tokio_postgres::Config {
        let database = &self.database;
        let password = match &database.migration_user {
            Some(owner) if *owner != database.user || database.migration_password.is_some() => {
                database.migration_password.as_ref()
            }
            _ => database.password.as_ref(),
        };
        self.connection(self.migration_user(), password, MIGRATION_APPLICATION_NAME)
    }

    fn connection(
        &self,
        user: &str,
        password: Option<&Secret>,
        application_name: &str,
    ) -> tokio_postgres::Config {
        let (database, pool) = (&self.database, &self.pool);
        let mut pg = tokio_postgres::Config::new();
        for endpoint in &database.hosts {
            pg.host(&endpoint.host).port(endpoint.port);
        }
        pg.dbname(&database.name)
            .user(user)
            .application_name(application_name)
            .connect_timeout(pool.connect_timeout)
            .keepalives(pool.keepalive)
            .keepalives_idle(pool.keepalive_idle)
            .options(format!(
                "-c statement_timeout={}",
                pool.query_timeout.as_millis()
            ))
            .target_session_attrs(database.target_session_attrs.to_tokio_postgres())
            .ssl_mode(database.tls.to_ssl_mode());
        if let Some(password) = password {
            pg.password(password.expose());
        }
        pg
    }
}

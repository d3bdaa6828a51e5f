//! The connection settings for tokio-postgres.

use crate::Config;

/// Sent as `application_name`, so pgline's sessions stand out in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "pgline";

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
        let (database, pool) = (&self.database, &self.pool);
        let mut pg = tokio_postgres::Config::new();
        for endpoint in &database.hosts {
            pg.host(&endpoint.host).port(endpoint.port);
        }
        pg.dbname(&database.name)
            .user(&database.user)
            .application_name(APPLICATION_NAME)
            .connect_timeout(pool.connect_timeout)
            .keepalives(pool.keepalive)
            .keepalives_idle(pool.keepalive_idle)
            .options(format!(
                "-c statement_timeout={}",
                pool.query_timeout.as_millis()
            ))
            .target_session_attrs(database.target_session_attrs.to_tokio_postgres())
            .ssl_mode(database.tls.to_ssl_mode());
        if let Some(password) = &database.password {
            pg.password(password.expose());
        }
        pg
    }
}

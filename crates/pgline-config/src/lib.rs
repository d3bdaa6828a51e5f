//! Configuration for pgline: the profile's defaults, an optional TOML file
//! and the environment, layered with figment and validated.
//!
//! The variables are those of the Node system pgline replaces (`DB_HOST`,
//! `DB_PORT`, `DB_NAME`, `DB_USER`, `DB_PASSWORD`, `DB_SSL`, `DATABASE_URL`,
//! `NODE_ENV`, `LOG_LEVEL`, `DB_POOL_*`, `PORT`, `HOST`, …) plus
//! OpenTelemetry's standard ones; `PGLINE_CONFIG` names a TOML file that can
//! set every field. `docs/configuration.md` lists them all.
//!
//! Precedence, lowest first: the profile's defaults ← the file ← the
//! environment. Inside the file and inside the environment, the parts a
//! connection string names (`database.url`, `DATABASE_URL`) override the
//! separate settings.
//!
//! Every invalid value is reported with the setting as the user wrote it and
//! the accepted form, and all problems are reported at once. The password is
//! a [`Secret`]: it never appears in `Debug` output or in an error.
//!
//! Secrets can come from files (`DB_PASSWORD_FILE`,
//! `DB_MIGRATION_PASSWORD_FILE`; a file readable by others draws a
//! [warning](Config::warnings)). Migrations can run as a separate schema
//! owner ([`Config::migration_tokio_postgres`]). The server's callers
//! authenticate with tokens whose SHA-256 hashes are read from
//! `STATION_TOKENS_FILE` and `ADMIN_TOKEN_FILE` ([`AuthConfig`]); what the
//! production profile requires of them is [`Config::check_http_auth`].
//!
//! ```
//! use std::time::Duration;
//! use pgline_config::{Config, ConfigError, Profile, TlsMode};
//!
//! let config = Config::from_vars([
//!     ("NODE_ENV", "production"),
//!     ("DATABASE_URL", "postgres://pgline:s3cret@db1:5432,db2:5432/plant"),
//!     ("DB_SSL", "true"),
//!     ("DB_POOL_MAX", "30"),
//! ])?;
//! assert_eq!(config.profile, Profile::Production);
//! assert_eq!(config.database.hosts.len(), 2);
//! assert_eq!(config.database.tls, TlsMode::VerifyFull);
//! assert_eq!(config.pool.max_connections, 30);
//! assert_eq!(config.pool.acquire_timeout, Duration::from_secs(60)); // production default
//! assert!(!format!("{config:?}").contains("s3cret"));
//!
//! let pg: tokio_postgres::Config = config.to_tokio_postgres();
//! assert_eq!(pg.get_user(), Some("pgline"));
//!
//! let err = Config::from_vars([("DB_POOL_MAX", "abc")]).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     r#"DB_POOL_MAX: expected a whole number of connections from 1 to 10000, got "abc""#
//! );
//! # Ok::<(), ConfigError>(())
//! ```

mod auth;
mod conninfo;
mod credentials;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod https;
mod load;
mod model;
mod postgres;
mod reader;
mod replica;
mod secret;
mod sources;
mod tokens;
mod words;

pub use auth::AuthConfig;
pub use error::{ConfigError, Problem};
pub use https::HttpsConfig;
pub use model::{
    Config, DatabaseConfig, Endpoint, LogConfig, PoolConfig, ServerConfig, TelemetryConfig,
};
pub use postgres::{APPLICATION_NAME, MIGRATION_APPLICATION_NAME};
pub use replica::ReadPoolConfig;
pub use secret::{Secret, SecretFile};
pub use tokens::{NamedToken, TokenFile, TokenHash};
pub use words::{Backend, LogLevel, Profile, TargetSessionAttrs, TlsMode, UnknownWord};

//! The validated configuration: plain data with public fields.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::{
    AuthConfig, Backend, HttpsConfig, LogLevel, Profile, ReadPoolConfig, Secret, SecretFile,
    TargetSessionAttrs, TlsMode,
};

/// The whole validated configuration of a pgline process.
///
/// Build it with [`Config::from_env`] (real use), [`Config::from_vars`] /
/// [`Config::from_sources`] (tests, other sources) or [`Config::defaults`].
/// `Debug` never shows the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The profile the defaults came from (`NODE_ENV`, `APP_ENV` or `profile` in the file).
    pub profile: Profile,
    /// Where to connect and how to authenticate.
    pub database: DatabaseConfig,
    /// Pool sizes, timeouts and connection hygiene.
    pub pool: PoolConfig,
    /// The optional read pool on standbys (`DB_READ_HOSTS`); `None` sends
    /// every read to the primary.
    pub read_pool: Option<ReadPoolConfig>,
    /// Where `pgline-server` listens and which backend it uses.
    pub server: ServerConfig,
    /// Log level and the thresholds that trigger warnings.
    pub log: LogConfig,
    /// OpenTelemetry export.
    pub telemetry: TelemetryConfig,
    /// The TOML file that was read, if any.
    pub file: Option<PathBuf>,
}

/// Where the database is and how to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// The servers to try, in order (libpq multi-host); never empty.
    pub hosts: Vec<Endpoint>,
    /// The database name (`DB_NAME`).
    pub name: String,
    /// The user name (`DB_USER`).
    pub user: String,
    /// The password (`DB_PASSWORD`, or read from `DB_PASSWORD_FILE`), if any.
    pub password: Option<Secret>,
    /// The file the password was read from (`DB_PASSWORD_FILE`), if it was.
    pub password_file: Option<SecretFile>,
    /// The role that owns the schema and runs the migrations
    /// (`DB_MIGRATION_USER`); `None` means [`user`](Self::user).
    pub migration_user: Option<String>,
    /// The migration role's password (`DB_MIGRATION_PASSWORD`, or read from
    /// `DB_MIGRATION_PASSWORD_FILE`); only with `migration_user`.
    pub migration_password: Option<Secret>,
    /// The file the migration password was read from, if it was.
    pub migration_password_file: Option<SecretFile>,
    /// TLS use and certificate checks (`DB_SSL`).
    pub tls: TlsMode,
    /// A PEM file of CA certificates to trust instead of the system roots (`DB_SSL_ROOT_CERT`).
    pub ssl_root_cert: Option<PathBuf>,
    /// Which kind of server to accept when several hosts are listed.
    pub target_session_attrs: TargetSessionAttrs,
}

impl DatabaseConfig {
    /// Whether the server's certificate chain is checked: `verify-ca` and
    /// `verify-full`, and (as libpq does) `require` when a root certificate
    /// file is given.
    pub fn verifies_certificate(&self) -> bool {
        self.tls.verifies_certificate()
            || (self.tls == TlsMode::Require && self.ssl_root_cert.is_some())
    }
}

/// One database server: a host name, IP address or Unix-socket directory, and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Host name, IP address, or (starting with `/`) a Unix-socket directory.
    pub host: String,
    /// TCP port, or the socket file's port number for a Unix socket.
    pub port: u16,
}

impl Endpoint {
    /// An endpoint from a host and a port.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
        }
    }
}

impl fmt::Display for Endpoint {
    /// `host:port`, with an IPv6 address in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Pool sizes and timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Connections kept open even when idle (`DB_POOL_MIN`); at most `max_connections`.
    pub min_connections: u32,
    /// Upper bound on open connections (`DB_POOL_MAX`); at least 1.
    pub max_connections: u32,
    /// How long a caller waits for a connection before giving up (`DB_POOL_ACQUIRE_MS`).
    pub acquire_timeout: Duration,
    /// How long a connection above the minimum may sit idle before it is closed (`DB_POOL_IDLE_MS`).
    pub idle_timeout: Duration,
    /// Connections older than this are closed when returned, so none lives forever.
    pub max_lifetime: Duration,
    /// Bound on opening one connection, per resolved address.
    pub connect_timeout: Duration,
    /// Server-side `statement_timeout` for every statement.
    pub query_timeout: Duration,
    /// Whether TCP keep-alive probes are sent on idle connections.
    pub keepalive: bool,
    /// Idle time before the first keep-alive probe.
    pub keepalive_idle: Duration,
    /// A connection idle for longer than this is checked before it is handed
    /// out; zero checks on every checkout.
    pub validation_idle: Duration,
    /// Prepared statements cached per connection; 0 turns the cache off.
    pub statement_cache_size: u32,
    /// Warn when a connection is held longer than this; `None` turns the check off.
    pub leak_detection: Option<Duration>,
}

impl PoolConfig {
    /// The built-in pool settings of `profile`.
    pub fn defaults(profile: Profile) -> Self {
        const SECOND: Duration = Duration::from_secs(1);
        let (min, max, acquire, idle) = match profile {
            Profile::Development => (2, 10, 30 * SECOND, 10 * SECOND),
            Profile::Production => (5, 20, 60 * SECOND, 300 * SECOND),
            Profile::Test => (1, 5, 5 * SECOND, 10 * SECOND),
        };
        Self {
            min_connections: min,
            max_connections: max,
            acquire_timeout: acquire,
            idle_timeout: idle,
            max_lifetime: 30 * 60 * SECOND,
            connect_timeout: 10 * SECOND,
            query_timeout: 30 * SECOND,
            keepalive: true,
            keepalive_idle: 10 * SECOND,
            validation_idle: Duration::from_millis(500),
            statement_cache_size: 100,
            leak_detection: None,
        }
    }
}

/// Where `pgline-server` listens, what it accepts, and who may call it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address to bind (`HOST`), default `0.0.0.0`.
    pub host: String,
    /// Port to bind (`PORT`), default 3000.
    pub port: u16,
    /// Which pool backend the server runs on (`DB_BACKEND`).
    pub backend: Backend,
    /// Largest request body in bytes (`HTTP_MAX_BODY_BYTES`); larger ones get
    /// 413. Default 1 MiB.
    pub max_body_bytes: usize,
    /// Most panels one order may create (`MAX_PANELS_PER_ORDER`); more get
    /// 422. Default 1000.
    pub max_panels_per_order: usize,
    /// Who may call the API and the admin endpoints.
    pub auth: AuthConfig,
    /// HTTPS (`TLS_CERT_FILE` and `TLS_KEY_FILE`); `None` serves plain HTTP.
    pub https: Option<HttpsConfig>,
}

impl ServerConfig {
    /// `host:port`, ready for `TcpListener::bind` (IPv6 in brackets).
    pub fn listen_address(&self) -> String {
        Endpoint::new(self.host.clone(), self.port).to_string()
    }
}

/// Logging and the thresholds that make the pool log warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// The level (`LOG_LEVEL`).
    pub level: LogLevel,
    /// Filter directives (`RUST_LOG`); when set they win over `level`.
    pub filter: Option<String>,
    /// Statements slower than this are logged as slow.
    pub slow_query: Duration,
    /// A warning is logged when pool utilization reaches this percentage.
    pub utilization_warn_percent: u8,
}

impl LogConfig {
    /// The filter to install: `RUST_LOG`'s directives when set, else the level.
    pub fn directives(&self) -> &str {
        self.filter.as_deref().unwrap_or(self.level.as_str())
    }
}

/// OpenTelemetry export, from the standard `OTEL_*` variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// OTLP collector endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`), e.g. `http://collector:4317`.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported resource (`OTEL_SERVICE_NAME`).
    pub service_name: String,
    /// `OTEL_SDK_DISABLED=true` turns export off even with an endpoint.
    pub sdk_disabled: bool,
}

impl TelemetryConfig {
    /// Export is on when an endpoint is set and the SDK is not disabled.
    pub fn export_enabled(&self) -> bool {
        self.otlp_endpoint.is_some() && !self.sdk_disabled
    }
}

impl Config {
    /// The built-in defaults of `profile`, as if no file and no variable were
    /// given.
    ///
    /// The database section is the local development one (`postgres` as user
    /// and database on `localhost:5432`, no password, no TLS) for every
    /// profile: a loaded production configuration never uses it because
    /// production requires those settings explicitly.
    pub fn defaults(profile: Profile) -> Self {
        Self {
            profile,
            database: DatabaseConfig {
                hosts: vec![Endpoint::new(DEFAULT_HOST, DEFAULT_PORT)],
                name: DEFAULT_NAME.to_owned(),
                user: DEFAULT_USER.to_owned(),
                password: None,
                password_file: None,
                migration_user: None,
                migration_password: None,
                migration_password_file: None,
                tls: TlsMode::Disable,
                ssl_root_cert: None,
                target_session_attrs: TargetSessionAttrs::Any,
            },
            pool: PoolConfig::defaults(profile),
            read_pool: None,
            server: ServerConfig {
                host: "0.0.0.0".to_owned(),
                port: 3000,
                backend: Backend::Async,
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
                max_panels_per_order: DEFAULT_MAX_PANELS_PER_ORDER,
                auth: AuthConfig::default(),
                https: None,
            },
            log: LogConfig {
                level: LogLevel::Info,
                filter: None,
                slow_query: Duration::from_secs(1),
                utilization_warn_percent: 80,
            },
            telemetry: TelemetryConfig {
                otlp_endpoint: None,
                service_name: "pgline-server".to_owned(),
                sdk_disabled: false,
            },
            file: None,
        }
    }

    /// Things that are valid but probably not meant, for a start-up log or
    /// `--check-config`.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.profile == Profile::Production && !self.database.verifies_certificate() {
            warnings.push(format!(
                "production profile with DB_SSL={}: the database certificate is not checked",
                self.database.tls
            ));
        }
        if self.telemetry.otlp_endpoint.is_some() && self.telemetry.sdk_disabled {
            warnings.push(
                "OTEL_EXPORTER_OTLP_ENDPOINT is set but OTEL_SDK_DISABLED=true: nothing is exported"
                    .to_owned(),
            );
        }
        warnings.extend(self.https_warnings());
        let auth = &self.server.auth;
        if self.profile != Profile::Production && auth.station_tokens.is_none() {
            warnings.push(format!(
                "STATION_TOKENS_FILE is not set: station authentication is OFF ({} profile); \
                 any device that reaches the server can create orders and record events for any station",
                self.profile
            ));
        }
        let database = &self.database;
        for file in [&database.password_file, &database.migration_password_file]
            .into_iter()
            .flatten()
            .filter(|file| file.readable_by_others())
        {
            warnings.push(format!(
                "{}: {} is readable by group or others (mode {:04o}); restrict it with chmod 600 \
                 (Kubernetes: defaultMode 0400)",
                file.setting,
                file.path.display(),
                file.mode.unwrap_or_default()
            ));
        }
        for file in [&auth.station_tokens, &auth.admin_tokens]
            .into_iter()
            .flatten()
            .filter(|file| file.writable_by_others())
        {
            warnings.push(format!(
                "{}: {} is writable by group or others (mode {:04o}); whoever can write it can add a token; \
                 restrict it with chmod 644 or stricter",
                file.setting,
                file.path.display(),
                file.mode.unwrap_or_default()
            ));
        }
        warnings
    }
}

pub(crate) const DEFAULT_HOST: &str = "localhost";
pub(crate) const DEFAULT_PORT: u16 = 5432;
pub(crate) const DEFAULT_NAME: &str = "postgres";
pub(crate) const DEFAULT_USER: &str = "postgres";
pub(crate) const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
pub(crate) const DEFAULT_MAX_PANELS_PER_ORDER: usize = 1000;

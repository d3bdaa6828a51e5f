//! Reading the layered figment: every key parsed and checked against its
//! accepted form, every problem collected and named as the user wrote it.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use figment::value::Value;
use figment::{Figment, Profile as FigmentProfile};

use crate::error::Problem;
use crate::model::{
    DatabaseConfig, Endpoint, LogConfig, PoolConfig, ServerConfig, TelemetryConfig,
};
use crate::sources::{self, CONNECTION_STRING};
use crate::words::one_of;
use crate::{Backend, Config, ConfigError, LogLevel, Profile, TargetSessionAttrs, TlsMode};

/// Largest duration in milliseconds: PostgreSQL's limit for
/// `statement_timeout`, and far from any `Instant` overflow.
const MAX_MILLIS: u64 = i32::MAX as u64;
/// Largest pool size accepted; beyond it is a typo, not a pool.
const MAX_CONNECTIONS: u64 = 10_000;
/// Bounds of `HTTP_MAX_BODY_BYTES`: 1 KiB to 100 MiB.
const BODY_BYTES: std::ops::RangeInclusive<u64> = 1024..=100 * 1024 * 1024;
/// Bounds of `MAX_PANELS_PER_ORDER`.
const PANELS_PER_ORDER: std::ops::RangeInclusive<u64> = 1..=100_000;
/// The keys whose values are secrets and never repeated.
const SECRET_KEYS: [&str; 2] = ["database.password", "database.migration_password"];

/// A value for an error message: strings quoted, tables and lists by kind.
pub(crate) fn shown(value: &Value) -> String {
    match value {
        Value::String(_, s) => format!("{s:?}"),
        Value::Char(_, c) => format!("{:?}", c.to_string()),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => match (n.to_u128_lossy(), n.to_i128(), n.to_f64()) {
            (Some(u), _, _) => u.to_string(),
            (_, Some(i), _) => i.to_string(),
            (_, _, Some(f)) => f.to_string(),
            _ => "a number".to_owned(),
        },
        Value::Empty(..) => "nothing".to_owned(),
        Value::Dict(..) => "a table".to_owned(),
        Value::Array(..) => "a list".to_owned(),
    }
}

fn text(value: &Value) -> Option<&str> {
    value.as_str().map(str::trim).filter(|s| !s.is_empty())
}

fn whole(value: &Value) -> Option<u64> {
    match value {
        Value::Num(_, n) => n.to_u128_lossy().and_then(|n| u64::try_from(n).ok()),
        Value::String(_, s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn flag(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(_, b) => Some(*b),
        Value::String(_, s) if s.trim().eq_ignore_ascii_case("true") => Some(true),
        Value::String(_, s) if s.trim().eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn in_range(value: &Value, range: std::ops::RangeInclusive<u64>) -> Option<u64> {
    whole(value).filter(|n| range.contains(n))
}

/// A string with comma-separated items, or a list of items.
fn items(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(_, items) => items.clone(),
        Value::String(_, s) => s.split(',').map(|item| Value::from(item.trim())).collect(),
        other => vec![other.clone()],
    }
}

/// Every item parsed, or `None` if one fails or there are none.
fn all<T>(value: &Value, parse: impl Fn(&Value) -> Option<T>) -> Option<Vec<T>> {
    let parsed: Option<Vec<T>> = items(value).iter().map(parse).collect();
    parsed.filter(|items| !items.is_empty())
}

/// Where a value came from, as the user wrote it.
struct Origin {
    setting: String,
    /// The value must not be repeated: it comes from a connection string or is the password.
    opaque: bool,
}

/// Reads sections of the configuration out of a figment. A value that is
/// missing or invalid reads as its type's default and, when invalid, leaves a
/// problem behind; [`Reader::finish`] returns the configuration only when
/// there is none, so those placeholders are never seen.
pub(crate) struct Reader<'a> {
    figment: &'a Figment,
    problems: Vec<Problem>,
}

impl<'a> Reader<'a> {
    /// A reader that adds to the `problems` already found.
    pub(crate) fn new(figment: &'a Figment, problems: Vec<Problem>) -> Self {
        Self { figment, problems }
    }

    /// `config`, unless a problem was found.
    pub(crate) fn finish(self, config: Config) -> Result<Config, ConfigError> {
        match self.problems.is_empty() {
            true => Ok(config),
            false => Err(ConfigError::Invalid(self.problems)),
        }
    }

    fn find(&self, key: &str) -> Option<(Value, Origin)> {
        let value = self.figment.find_value(key).ok()?;
        let keys: Vec<&str> = key.split('.').collect();
        let origin = match self.figment.get_metadata(value.tag()) {
            Some(metadata) => Origin {
                setting: metadata.interpolate(&FigmentProfile::Default, &keys),
                opaque: metadata.source.as_ref().and_then(|s| s.custom())
                    == Some(CONNECTION_STRING)
                    || SECRET_KEYS.contains(&key),
            },
            None => Origin {
                setting: key.to_owned(),
                opaque: false,
            },
        };
        Some((value, origin))
    }

    /// Whether any source gives `key`.
    pub(crate) fn is_set(&self, key: &str) -> bool {
        self.find(key).is_some()
    }

    /// The setting as the user wrote it, for messages that involve two settings.
    pub(crate) fn setting(&self, key: &str) -> String {
        self.find(key)
            .map_or_else(|| key.to_owned(), |(_, origin)| origin.setting)
    }

    pub(crate) fn problem(&mut self, setting: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            setting: setting.into(),
            message: message.into(),
        });
    }

    /// The value at `key` parsed by `parse`; `None` when missing or invalid,
    /// the latter recorded as a problem. `expected` describes the accepted form.
    pub(crate) fn read<T>(
        &mut self,
        key: &str,
        expected: &str,
        parse: impl FnOnce(&Value) -> Option<T>,
    ) -> Option<T> {
        let (value, origin) = self.find(key)?;
        let parsed = parse(&value);
        if parsed.is_none() {
            let message = match origin.opaque {
                true => format!("expected {expected}"),
                false => format!("expected {expected}, got {}", shown(&value)),
            };
            self.problem(origin.setting, message);
        }
        parsed
    }

    fn word<T: FromStr>(&mut self, key: &str, words: &[&str]) -> Option<T> {
        self.read(key, &one_of(words), |v| text(v)?.parse().ok())
    }

    fn millis(&mut self, key: &str) -> Option<Duration> {
        let expected =
            format!("a duration in whole milliseconds from 1 to {MAX_MILLIS}, e.g. 30000");
        self.read(key, &expected, |v| in_range(v, 1..=MAX_MILLIS))
            .map(Duration::from_millis)
    }

    /// Milliseconds where 0 is allowed and means what `zero` says.
    fn millis_or_zero(&mut self, key: &str, zero: &str) -> Option<Duration> {
        let expected =
            format!("a duration in whole milliseconds from 0 to {MAX_MILLIS} (0 {zero})");
        self.read(key, &expected, |v| in_range(v, 0..=MAX_MILLIS))
            .map(Duration::from_millis)
    }

    fn port(&mut self, key: &str) -> Option<u16> {
        self.read(key, "a port number from 1 to 65535", port)
    }

    pub(crate) fn flag(&mut self, key: &str) -> Option<bool> {
        self.read(key, "true or false", flag)
    }

    pub(crate) fn text(&mut self, key: &str, expected: &str) -> Option<String> {
        self.read(key, expected, |v| text(v).map(str::to_owned))
    }

    /// A required setting of the production profile that nothing gave.
    fn require(&mut self, profile: Profile, key: &str, what: &str) {
        if profile == Profile::Production && self.find(key).is_none() {
            let var = sources::variable_for(key).unwrap_or(key);
            let parameter = crate::conninfo::parameter_for(key);
            self.problem(
                var,
                format!(
                    "required in the production profile: set {var} to {what}, \
                     or give {parameter} in DATABASE_URL, or {key} in the configuration file"
                ),
            );
        }
    }

    pub(crate) fn database(&mut self, profile: Profile) -> DatabaseConfig {
        self.require(profile, "database.host", "the database server's host name");
        self.require(profile, "database.name", "the database name");
        self.require(profile, "database.user", "the user name");
        if self.find("database.password_file").is_none() {
            self.require(
                profile,
                "database.password",
                "the user's password, or DB_PASSWORD_FILE to a file that holds it",
            );
        }
        self.require(profile, "database.ssl", "true (verify-full) or an sslmode");

        let hosts = self.read(
            "database.host",
            "a host name, IP address or socket directory, or a comma-separated list of them",
            |v| {
                all(v, |h| {
                    text(h)
                        .filter(|h| !h.contains(char::is_whitespace))
                        .map(str::to_owned)
                })
            },
        );
        let ports = self.read(
            "database.port",
            "a port number from 1 to 65535, or a comma-separated list with one per host",
            |v| all(v, port),
        );
        let hosts = match (hosts, ports) {
            (Some(hosts), Some(ports)) if ports.len() == 1 || ports.len() == hosts.len() => hosts
                .iter()
                .zip(ports.iter().cycle())
                .map(|(host, port)| Endpoint::new(host.clone(), *port))
                .collect(),
            (Some(hosts), Some(ports)) => {
                let message = format!(
                    "lists {} ports for {} hosts ({}); give one port for every host or one per host",
                    ports.len(),
                    hosts.len(),
                    self.setting("database.host"),
                );
                self.problem(self.setting("database.port"), message);
                Vec::new()
            }
            _ => Vec::new(),
        };

        let tls = self.read(
            "database.ssl",
            &format!(
                "true (= verify-full), false (= disable) or an sslmode: {}",
                one_of(TlsMode::WORDS)
            ),
            |v| match flag(v) {
                Some(true) => Some(TlsMode::VerifyFull),
                Some(false) => Some(TlsMode::Disable),
                None => text(v)?.parse().ok(),
            },
        );
        let (password, password_file) = self.secret(
            "database.password",
            "database.password_file",
            "the password",
        );
        let user = self.text("database.user", "a user name");
        let migration = self.migration(profile, user.as_deref());

        DatabaseConfig {
            hosts,
            name: self
                .text("database.name", "a database name")
                .unwrap_or_default(),
            user: user.unwrap_or_default(),
            password,
            password_file,
            migration_user: migration.user,
            migration_password: migration.password,
            migration_password_file: migration.password_file,
            tls: tls.unwrap_or(TlsMode::Disable),
            ssl_root_cert: self
                .text(
                    "database.ssl_root_cert",
                    "the path of a PEM file of CA certificates",
                )
                .map(PathBuf::from),
            target_session_attrs: self
                .word("database.target_session_attrs", TargetSessionAttrs::WORDS)
                .unwrap_or(TargetSessionAttrs::Any),
        }
    }

    pub(crate) fn pool(&mut self) -> PoolConfig {
        let max = self.read(
            "pool.max",
            &format!("a whole number of connections from 1 to {MAX_CONNECTIONS}"),
            |v| in_range(v, 1..=MAX_CONNECTIONS),
        );
        let min = self.read(
            "pool.min",
            &format!("a whole number of connections from 0 to {MAX_CONNECTIONS}"),
            |v| in_range(v, 0..=MAX_CONNECTIONS),
        );
        if let (Some(min), Some(max)) = (min, max)
            && min > max
        {
            let message = format!(
                "must not exceed the pool maximum ({} = {max}), got {min}",
                self.setting("pool.max")
            );
            self.problem(self.setting("pool.min"), message);
        }
        let count = |n: Option<u64>| n.and_then(|n| u32::try_from(n).ok()).unwrap_or_default();
        PoolConfig {
            min_connections: count(min),
            max_connections: count(max),
            acquire_timeout: self.millis("pool.acquire_timeout_ms").unwrap_or_default(),
            idle_timeout: self.millis("pool.idle_timeout_ms").unwrap_or_default(),
            max_lifetime: self.millis("pool.max_lifetime_ms").unwrap_or_default(),
            connect_timeout: self.millis("pool.connect_timeout_ms").unwrap_or_default(),
            query_timeout: self.millis("pool.query_timeout_ms").unwrap_or_default(),
            keepalive: self.flag("pool.keepalive").unwrap_or_default(),
            keepalive_idle: self.millis("pool.keepalive_idle_ms").unwrap_or_default(),
            validation_idle: self
                .millis_or_zero(
                    "pool.validation_idle_ms",
                    "checks every connection on checkout",
                )
                .unwrap_or_default(),
            statement_cache_size: count(self.read(
                "pool.statement_cache_size",
                "a whole number of statements from 0 to 100000 (0 turns the cache off)",
                |v| in_range(v, 0..=100_000),
            )),
            leak_detection: self
                .millis_or_zero("pool.leak_detection_ms", "turns the check off")
                .filter(|d| !d.is_zero()),
        }
    }

    pub(crate) fn server(&mut self) -> ServerConfig {
        let size = |n: Option<u64>| n.and_then(|n| usize::try_from(n).ok()).unwrap_or_default();
        let max_body_bytes = self.read(
            "server.max_body_bytes",
            &format!(
                "a size in bytes from {} to {} (100 MiB), e.g. 1048576",
                BODY_BYTES.start(),
                BODY_BYTES.end()
            ),
            |v| in_range(v, BODY_BYTES),
        );
        let max_panels_per_order = self.read(
            "server.max_panels_per_order",
            &format!(
                "a whole number of panels from {} to {}",
                PANELS_PER_ORDER.start(),
                PANELS_PER_ORDER.end()
            ),
            |v| in_range(v, PANELS_PER_ORDER),
        );
        ServerConfig {
            host: self
                .read(
                    "server.host",
                    "an address to listen on, such as 0.0.0.0, :: or localhost",
                    |v| {
                        text(v)
                            .filter(|h| !h.contains(char::is_whitespace))
                            .map(str::to_owned)
                    },
                )
                .unwrap_or_default(),
            port: self.port("server.port").unwrap_or_default(),
            backend: self
                .word("server.backend", Backend::WORDS)
                .unwrap_or(Backend::Async),
            max_body_bytes: size(max_body_bytes),
            max_panels_per_order: size(max_panels_per_order),
            auth: self.auth(),
            https: self.https(),
        }
    }

    pub(crate) fn log(&mut self) -> LogConfig {
        LogConfig {
            level: self
                .word("log.level", LogLevel::WORDS)
                .unwrap_or(LogLevel::Info),
            filter: self.text(
                "log.filter",
                "tracing filter directives such as info,pgline_async=debug",
            ),
            slow_query: self.millis("log.slow_query_ms").unwrap_or_default(),
            utilization_warn_percent: self
                .read(
                    "log.utilization_warn_percent",
                    "a whole percentage from 1 to 100",
                    |v| in_range(v, 1..=100).and_then(|n| u8::try_from(n).ok()),
                )
                .unwrap_or_default(),
        }
    }

    pub(crate) fn telemetry(&mut self) -> TelemetryConfig {
        TelemetryConfig {
            otlp_endpoint: self.read(
                "telemetry.otlp_endpoint",
                "an http:// or https:// URL such as http://collector:4317",
                |v| {
                    let url = url::Url::parse(text(v)?).ok()?;
                    let web = matches!(url.scheme(), "http" | "https") && url.has_host();
                    web.then(|| text(v).map(str::to_owned)).flatten()
                },
            ),
            service_name: self
                .text("telemetry.service_name", "a service name")
                .unwrap_or_default(),
            sdk_disabled: self.flag("telemetry.sdk_disabled").unwrap_or_default(),
        }
    }
}

fn port(value: &Value) -> Option<u16> {
    in_range(value, 1..=65535).and_then(|n| u16::try_from(n).ok())
}

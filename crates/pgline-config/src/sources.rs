//! Where settings come from: the table of keys and variables, and the figment
//! providers for defaults, the TOML file, the environment and connection
//! strings. Each provider's metadata names a key the way the user wrote it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider, Source};

use crate::error::Problem;
use crate::model::{Config, DEFAULT_HOST, DEFAULT_NAME, DEFAULT_PORT, DEFAULT_USER};
use crate::{ConfigError, conninfo};

/// Names the TOML file to read.
pub(crate) const CONFIG_FILE_VAR: &str = "PGLINE_CONFIG";
/// The profile variables, the first one set wins.
pub(crate) const PROFILE_VARS: [&str; 2] = ["NODE_ENV", "APP_ENV"];
/// The top-level file key that chooses the profile when no variable does.
pub(crate) const PROFILE_KEY: &str = "profile";

/// Every key of the file, with the variable that sets it, if one does.
pub(crate) const KEYS: &[(&str, Option<&str>)] = &[
    ("database.host", Some("DB_HOST")),
    ("database.port", Some("DB_PORT")),
    ("database.name", Some("DB_NAME")),
    ("database.user", Some("DB_USER")),
    ("database.password", Some("DB_PASSWORD")),
    ("database.password_file", Some("DB_PASSWORD_FILE")),
    ("database.ssl", Some("DB_SSL")),
    ("database.ssl_root_cert", Some("DB_SSL_ROOT_CERT")),
    (
        "database.target_session_attrs",
        Some("DB_TARGET_SESSION_ATTRS"),
    ),
    ("database.url", Some("DATABASE_URL")),
    ("database.migration_user", Some("DB_MIGRATION_USER")),
    ("database.migration_password", Some("DB_MIGRATION_PASSWORD")),
    (
        "database.migration_password_file",
        Some("DB_MIGRATION_PASSWORD_FILE"),
    ),
    ("pool.min", Some("DB_POOL_MIN")),
    ("pool.max", Some("DB_POOL_MAX")),
    ("pool.acquire_timeout_ms", Some("DB_POOL_ACQUIRE_MS")),
    ("pool.idle_timeout_ms", Some("DB_POOL_IDLE_MS")),
    ("pool.max_lifetime_ms", None),
    ("pool.connect_timeout_ms", None),
    ("pool.query_timeout_ms", None),
    ("pool.keepalive", None),
    ("pool.keepalive_idle_ms", None),
    ("pool.validation_idle_ms", None),
    ("pool.statement_cache_size", Some("DB_STATEMENT_CACHE_SIZE")),
    ("pool.leak_detection_ms", None),
    ("read_pool.hosts", Some("DB_READ_HOSTS")),
    ("read_pool.min", Some("DB_READ_POOL_MIN")),
    ("read_pool.max", Some("DB_READ_POOL_MAX")),
    (
        "read_pool.acquire_timeout_ms",
        Some("DB_READ_POOL_ACQUIRE_MS"),
    ),
    ("read_pool.fallback_ms", Some("DB_READ_FALLBACK_MS")),
    ("server.host", Some("HOST")),
    ("server.port", Some("PORT")),
    ("server.backend", Some("DB_BACKEND")),
    ("server.max_body_bytes", Some("HTTP_MAX_BODY_BYTES")),
    ("server.max_panels_per_order", Some("MAX_PANELS_PER_ORDER")),
    ("server.station_tokens_file", Some("STATION_TOKENS_FILE")),
    ("server.admin_token_file", Some("ADMIN_TOKEN_FILE")),
    ("server.admin_open", Some("ADMIN_OPEN")),
    ("server.tls_cert_file", Some("TLS_CERT_FILE")),
    ("server.tls_key_file", Some("TLS_KEY_FILE")),
    ("log.level", Some("LOG_LEVEL")),
    ("log.filter", Some("RUST_LOG")),
    ("log.slow_query_ms", None),
    ("log.utilization_warn_percent", None),
    (
        "telemetry.otlp_endpoint",
        Some("OTEL_EXPORTER_OTLP_ENDPOINT"),
    ),
    ("telemetry.service_name", Some("OTEL_SERVICE_NAME")),
    ("telemetry.sdk_disabled", Some("OTEL_SDK_DISABLED")),
];

/// The variable that sets `key`, if any.
pub(crate) fn variable_for(key: &str) -> Option<&'static str> {
    KEYS.iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, var)| *var)
}

/// Marks the metadata of connection-string layers: their values are never
/// repeated in errors.
pub(crate) const CONNECTION_STRING: &str = "connection string";

/// One figment provider: a dictionary in the default profile.
///
/// Figment's own profiles are not used: a value in a selected profile beats
/// the same key in the default profile whatever the merge order, which would
/// let profile defaults beat the file and the environment. Every layer lives
/// in the default profile, so merge order alone decides.
pub(crate) struct Layer {
    metadata: Metadata,
    dict: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

fn insert(dict: &mut Dict, key: &str, value: Value) {
    match key.split_once('.') {
        Some((section, rest)) => {
            let entry = dict
                .entry(section.to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
        None => {
            dict.insert(key.to_owned(), value);
        }
    }
}

/// The built-in values of `profile`, in file keys. In production the database
/// location, credentials and TLS mode have no default: they are required.
pub(crate) fn defaults(profile: crate::Profile) -> Layer {
    let config = Config::defaults(profile);
    let (pool, log, server, telemetry) =
        (&config.pool, &config.log, &config.server, &config.telemetry);
    let ms = |d: std::time::Duration| Value::from(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut dict = Dict::new();
    let mut set = |key: &str, value: Value| insert(&mut dict, key, value);
    set("database.port", Value::from(DEFAULT_PORT));
    set("database.target_session_attrs", Value::from("any"));
    if profile != crate::Profile::Production {
        set("database.host", Value::from(DEFAULT_HOST));
        set("database.name", Value::from(DEFAULT_NAME));
        set("database.user", Value::from(DEFAULT_USER));
        set("database.ssl", Value::from(config.database.tls.as_str()));
    }
    set("pool.min", Value::from(pool.min_connections));
    set("pool.max", Value::from(pool.max_connections));
    set("pool.acquire_timeout_ms", ms(pool.acquire_timeout));
    set("pool.idle_timeout_ms", ms(pool.idle_timeout));
    set("pool.max_lifetime_ms", ms(pool.max_lifetime));
    set("pool.connect_timeout_ms", ms(pool.connect_timeout));
    set("pool.query_timeout_ms", ms(pool.query_timeout));
    set("pool.keepalive", Value::from(pool.keepalive));
    set("pool.keepalive_idle_ms", ms(pool.keepalive_idle));
    set("pool.validation_idle_ms", ms(pool.validation_idle));
    set(
        "pool.statement_cache_size",
        Value::from(pool.statement_cache_size),
    );
    set(
        "pool.leak_detection_ms",
        pool.leak_detection.map_or(Value::from(0u64), ms),
    );
    set("server.host", Value::from(server.host.as_str()));
    set("server.port", Value::from(server.port));
    set("server.backend", Value::from(server.backend.as_str()));
    set(
        "server.max_body_bytes",
        Value::from(u64::try_from(server.max_body_bytes).unwrap_or(u64::MAX)),
    );
    set(
        "server.max_panels_per_order",
        Value::from(u64::try_from(server.max_panels_per_order).unwrap_or(u64::MAX)),
    );
    set("server.admin_open", Value::from(server.auth.admin_open));
    set("log.level", Value::from(log.level.as_str()));
    set("log.slow_query_ms", ms(log.slow_query));
    set(
        "log.utilization_warn_percent",
        Value::from(log.utilization_warn_percent),
    );
    set(
        "telemetry.service_name",
        Value::from(telemetry.service_name.as_str()),
    );
    set(
        "telemetry.sdk_disabled",
        Value::from(telemetry.sdk_disabled),
    );
    Layer {
        metadata: Metadata::named("pgline defaults").interpolater(|_: &Profile, keys: &[&str]| {
            format!("the default of {}", keys.join("."))
        }),
        dict,
    }
}

/// Reads and parses the TOML file at exactly `path` (a missing file is an
/// error, as with figment's `Toml::file_exact`).
///
/// The file is parsed here rather than by figment's `Toml` provider because
/// the toml crate's error text quotes the offending line, which may be the
/// password's.
pub(crate) fn read_file(path: &Path, named_by: Option<&'static str>) -> Result<Dict, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_owned(),
        named_by,
        source,
    })?;
    parse_file(&text, path)
}

/// Parses `text`, the content of the TOML file at `path`; errors give the
/// line and column, never the line's text.
pub(crate) fn parse_file(text: &str, path: &Path) -> Result<Dict, ConfigError> {
    toml::from_str::<Dict>(text).map_err(|error| {
        let offset = error.span().map_or(0, |span| span.start).min(text.len());
        let before = text.get(..offset).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        let message = error.message().trim().replace('\n', "; ");
        ConfigError::ParseFile {
            path: path.to_owned(),
            line,
            column,
            message,
        }
    })
}

/// The file's settings as a layer.
pub(crate) fn file(dict: &Dict, path: &Path) -> Layer {
    let shown = path.display().to_string();
    Layer {
        metadata: Metadata::from("TOML file", Source::File(path.to_owned())).interpolater(
            move |_: &Profile, keys: &[&str]| format!("{} in {shown}", keys.join(".")),
        ),
        dict: dict.clone(),
    }
}

/// Keys of the file that pgline does not know, each a problem.
pub(crate) fn unknown_file_keys(dict: &Dict, path: &Path) -> Vec<Problem> {
    let mut sections: Vec<&str> = KEYS
        .iter()
        .filter_map(|(k, _)| k.split_once('.'))
        .map(|(s, _)| s)
        .collect();
    sections.dedup();
    let mut problems = Vec::new();
    let mut problem = |setting: &str, message: String| {
        problems.push(Problem {
            setting: format!("{setting} in {}", path.display()),
            message,
        })
    };
    for (name, value) in dict {
        if name == PROFILE_KEY {
            continue;
        }
        if !sections.contains(&name.as_str()) {
            let tables: Vec<String> = sections.iter().map(|s| format!("[{s}]")).collect();
            problem(
                name,
                format!(
                    "unknown key; the file accepts {PROFILE_KEY} and the tables {}",
                    tables.join(", ")
                ),
            );
            continue;
        }
        let Value::Dict(_, entries) = value else {
            problem(
                name,
                format!(
                    "expected a table [{name}], got {}",
                    crate::reader::shown(value)
                ),
            );
            continue;
        };
        for key in entries.keys() {
            let full = format!("{name}.{key}");
            if !KEYS.iter().any(|(k, _)| *k == full) {
                let accepted: Vec<&str> = KEYS
                    .iter()
                    .filter_map(|(k, _)| k.strip_prefix(name.as_str())?.strip_prefix('.'))
                    .collect();
                problem(
                    &full,
                    format!("unknown key; [{name}] accepts {}", accepted.join(", ")),
                );
            }
        }
    }
    problems
}

/// The variables pgline reads, as a layer; an empty value counts as unset.
pub(crate) fn environment(vars: &BTreeMap<String, String>) -> Layer {
    let mut dict = Dict::new();
    for (key, var) in KEYS {
        if let Some(value) = var.and_then(|var| set_var(vars, var)) {
            insert(&mut dict, key, Value::from(value));
        }
    }
    Layer {
        metadata: Metadata::named("environment").interpolater(|_: &Profile, keys: &[&str]| {
            let key = keys.join(".");
            variable_for(&key).map_or(key, str::to_owned)
        }),
        dict,
    }
}

/// The value of `var` unless it is unset or blank.
pub(crate) fn set_var<'a>(vars: &'a BTreeMap<String, String>, var: &str) -> Option<&'a str> {
    vars.get(var)
        .map(String::as_str)
        .filter(|value| !value.trim().is_empty())
}

/// A connection string's parts as a layer, named `setting` (`DATABASE_URL`,
/// `database.url in /etc/pgline.toml`) in errors.
pub(crate) fn connection_string(text: &str, setting: &str) -> Result<Layer, Problem> {
    let entries = conninfo::parse(text).map_err(|message| Problem {
        setting: setting.to_owned(),
        message,
    })?;
    let mut dict = Dict::new();
    for (key, value) in entries {
        insert(&mut dict, key, value);
    }
    let setting = setting.to_owned();
    Ok(Layer {
        metadata: Metadata::named(setting.clone())
            .source(Source::Custom(CONNECTION_STRING.to_owned()))
            .interpolater(move |_: &Profile, keys: &[&str]| {
                format!("{setting} ({})", conninfo::parameter_for(&keys.join(".")))
            }),
        dict,
    })
}

/// The file named by `PGLINE_CONFIG`, if set.
pub(crate) fn config_file_var(vars: &BTreeMap<String, String>) -> Option<PathBuf> {
    set_var(vars, CONFIG_FILE_VAR).map(PathBuf::from)
}

use std::path::{Path, PathBuf};
use std::time::Duration;

use pgline_config::{
    Backend, Config, ConfigError, Endpoint, LogLevel, Profile, TargetSessionAttrs, TlsMode,
};

use crate::toml_file;

const FULL: &str = r#"
profile = "test"

[database]
host = ["db1", "db2"]
port = [5432, 5433]
name = "plant"
user = "pgline"
password = "from-file"
ssl = "verify-ca"
ssl_root_cert = "/etc/pgline/ca.pem"
target_session_attrs = "read-write"

[pool]
min = 3
max = 7
acquire_timeout_ms = 1000
idle_timeout_ms = 2000
max_lifetime_ms = 3000
validation_idle_ms = 0
statement_cache_size = 0
leak_detection_ms = 4000
connect_timeout_ms = 5000
query_timeout_ms = 6000
keepalive = false
keepalive_idle_ms = 7000

[server]
host = "127.0.0.1"
port = 8081
backend = "sync"

[log]
level = "debug"
filter = "pgline=trace"
slow_query_ms = 250
utilization_warn_percent = 90

[telemetry]
otlp_endpoint = "http://collector:4317"
service_name = "line-7"
sdk_disabled = true
"#;

fn with_file(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let file = toml_file(text);
    let path = file.path().to_str().expect("utf-8 temp path").to_owned();
    let mut all = vec![("PGLINE_CONFIG", path.as_str())];
    all.extend_from_slice(vars);
    Config::from_vars(all)
}

/// The error text, with the temporary file's path replaced by `FILE`.
fn file_err(text: &str, vars: &[(&str, &str)]) -> String {
    let file = toml_file(text);
    let path = file.path().to_str().expect("utf-8 temp path").to_owned();
    let mut all = vec![("PGLINE_CONFIG", path.as_str())];
    all.extend_from_slice(vars);
    match Config::from_vars(all) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(e) => e.to_string().replace(&path, "FILE"),
    }
}

#[test]
fn the_file_can_set_every_field() {
    let file = toml_file(FULL);
    let config = Config::from_sources(Vec::<(String, String)>::new(), Some(file.path())).unwrap();
    assert_eq!(config.profile, Profile::Test);
    assert_eq!(config.file.as_deref(), Some(file.path()));
    let db = &config.database;
    assert_eq!(
        db.hosts,
        vec![Endpoint::new("db1", 5432), Endpoint::new("db2", 5433)]
    );
    assert_eq!((db.name.as_str(), db.user.as_str()), ("plant", "pgline"));
    assert_eq!(db.password.as_ref().map(|p| p.expose()), Some("from-file"));
    assert_eq!(db.tls, TlsMode::VerifyCa);
    assert_eq!(
        db.ssl_root_cert.as_deref(),
        Some(Path::new("/etc/pgline/ca.pem"))
    );
    assert_eq!(db.target_session_attrs, TargetSessionAttrs::ReadWrite);
    let pool = &config.pool;
    let ms = Duration::from_millis;
    assert_eq!((pool.min_connections, pool.max_connections), (3, 7));
    assert_eq!(pool.acquire_timeout, ms(1000));
    assert_eq!(pool.idle_timeout, ms(2000));
    assert_eq!(pool.max_lifetime, ms(3000));
    assert_eq!(pool.validation_idle, Duration::ZERO);
    assert_eq!(pool.statement_cache_size, 0);
    assert_eq!(pool.leak_detection, Some(ms(4000)));
    assert_eq!(pool.connect_timeout, ms(5000));
    assert_eq!(pool.query_timeout, ms(6000));
    assert!(!pool.keepalive);
    assert_eq!(pool.keepalive_idle, ms(7000));
    assert_eq!(config.server.host, "127.0.0.1");
    assert_eq!(config.server.port, 8081);
    assert_eq!(config.server.backend, Backend::Sync);
    assert_eq!(config.log.level, LogLevel::Debug);
    assert_eq!(config.log.directives(), "pgline=trace");
    assert_eq!(config.log.slow_query, ms(250));
    assert_eq!(config.log.utilization_warn_percent, 90);
    assert_eq!(
        config.telemetry.otlp_endpoint.as_deref(),
        Some("http://collector:4317")
    );
    assert_eq!(config.telemetry.service_name, "line-7");
    assert!(config.telemetry.sdk_disabled);
}

#[test]
fn pgline_config_names_the_file() {
    let config = with_file("[pool]\nmax = 3\n", &[]).unwrap();
    assert_eq!(config.pool.max_connections, 3);
    assert!(config.file.is_some());
}

#[test]
fn environment_beats_the_file() {
    let config = with_file(
        FULL,
        &[
            ("NODE_ENV", "development"),
            ("DB_HOST", "envhost"),
            ("DB_PORT", "6000"),
            ("DB_PASSWORD", "from-env"),
            ("DB_SSL", "false"),
            ("DB_POOL_MAX", "9"),
            ("DB_POOL_ACQUIRE_MS", "1234"),
            ("PORT", "9000"),
            ("LOG_LEVEL", "warn"),
            ("RUST_LOG", "info"),
            ("DB_BACKEND", "async"),
            ("OTEL_SDK_DISABLED", "false"),
        ],
    )
    .unwrap();
    assert_eq!(config.profile, Profile::Development);
    assert_eq!(config.database.hosts, vec![Endpoint::new("envhost", 6000)]);
    assert_eq!(
        config.database.password.as_ref().map(|p| p.expose()),
        Some("from-env")
    );
    assert_eq!(config.database.tls, TlsMode::Disable);
    assert_eq!(config.pool.max_connections, 9);
    assert_eq!(config.pool.acquire_timeout, Duration::from_millis(1234));
    assert_eq!(config.server.port, 9000);
    assert_eq!(config.server.backend, Backend::Async);
    assert_eq!(config.log.level, LogLevel::Warn);
    assert_eq!(config.log.directives(), "info");
    assert!(!config.telemetry.sdk_disabled);
    // What the environment does not name comes from the file, not the defaults.
    assert_eq!(config.pool.min_connections, 3);
    assert_eq!(config.database.name, "plant");
}

#[test]
fn the_file_beats_the_profile_defaults() {
    // The production profile's pool max is 20; the file's 7 wins.
    let config = with_file(
        "[pool]\nmax = 7\n",
        &[
            ("NODE_ENV", "production"),
            ("DB_HOST", "db"),
            ("DB_NAME", "plant"),
            ("DB_USER", "pgline"),
            ("DB_PASSWORD", "pw"),
            ("DB_SSL", "true"),
        ],
    )
    .unwrap();
    assert_eq!(config.pool.max_connections, 7);
    assert_eq!(config.pool.min_connections, 5);
}

#[test]
fn file_url_overrides_file_parts_and_environment_overrides_both() {
    let text = "[database]\nhost = \"file-host\"\nname = \"file_db\"\nurl = \"postgres://url-host/url_db\"\n";
    let config = with_file(text, &[]).unwrap();
    assert_eq!(config.database.hosts[0].host, "url-host");
    assert_eq!(config.database.name, "url_db");
    let config = with_file(text, &[("DB_HOST", "env-host")]).unwrap();
    assert_eq!(config.database.hosts[0].host, "env-host");
    assert_eq!(config.database.name, "url_db");
}

#[test]
fn production_requirements_can_come_from_the_file() {
    let text = "profile = \"production\"\n[database]\nhost = \"db\"\nname = \"plant\"\nuser = \"u\"\npassword = \"pw\"\nssl = true\n";
    let config = with_file(text, &[]).unwrap();
    assert_eq!(config.profile, Profile::Production);
    assert_eq!(config.database.tls, TlsMode::VerifyFull);
}

#[test]
fn missing_file_is_an_error_naming_path_and_variable() {
    let error = Config::from_vars([("PGLINE_CONFIG", "/nonexistent/pgline.toml")]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot read configuration file /nonexistent/pgline.toml (named by PGLINE_CONFIG)"
    );
    let ConfigError::ReadFile { path, source, .. } = &error else {
        panic!("expected ReadFile, got {error:?}");
    };
    assert_eq!(path, &PathBuf::from("/nonexistent/pgline.toml"));
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);

    let error = Config::from_sources(
        Vec::<(String, String)>::new(),
        Some(Path::new("/nonexistent/x.toml")),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot read configuration file /nonexistent/x.toml"
    );
}

#[test]
fn from_sources_ignores_pgline_config() {
    let config =
        Config::from_sources([("PGLINE_CONFIG", "/nonexistent/pgline.toml")], None).unwrap();
    assert_eq!(config.file, None);
}

#[test]
fn unknown_keys_are_named_with_what_is_accepted() {
    assert_eq!(
        file_err("[pool]\nmaxx = 3\n", &[]),
        "pool.maxx in FILE: unknown key; [pool] accepts min, max, acquire_timeout_ms, idle_timeout_ms, \
         max_lifetime_ms, connect_timeout_ms, query_timeout_ms, keepalive, keepalive_idle_ms, \
         validation_idle_ms, statement_cache_size, leak_detection_ms"
    );
    assert_eq!(
        file_err("[databse]\nhost = \"x\"\n", &[]),
        "databse in FILE: unknown key; the file accepts profile and the tables [database], [pool], [read_pool], [server], [log], [telemetry]"
    );
    assert_eq!(
        file_err("pool = 3\n", &[]),
        "pool in FILE: expected a table [pool], got 3"
    );
}

#[test]
fn wrong_types_name_the_key_and_the_file() {
    assert_eq!(
        file_err("[pool]\nmax = \"abc\"\n", &[]),
        r#"pool.max in FILE: expected a whole number of connections from 1 to 10000, got "abc""#
    );
    assert_eq!(
        file_err("[pool]\nmax = true\n", &[]),
        "pool.max in FILE: expected a whole number of connections from 1 to 10000, got true"
    );
    assert_eq!(
        file_err("[pool]\nidle_timeout_ms = 1.5\n", &[]),
        "pool.idle_timeout_ms in FILE: expected a duration in whole milliseconds from 1 to 2147483647, e.g. 30000, got 1.5"
    );
    assert_eq!(
        file_err("[pool]\nkeepalive = \"maybe\"\n", &[]),
        r#"pool.keepalive in FILE: expected true or false, got "maybe""#
    );
    assert!(
        file_err("[database]\nhost = 5\n", &[])
            .starts_with("database.host in FILE: expected a host name")
    );
    assert_eq!(
        file_err("[database]\nhost = []\n", &[]),
        "database.host in FILE: expected a host name, IP address or socket directory, \
         or a comma-separated list of them, got a list"
    );
    assert!(
        file_err("[database]\nport = []\n", &[])
            .starts_with("database.port in FILE: expected a port number")
    );
    assert!(
        file_err("[server]\nport = -1\n", &[])
            .starts_with("server.port in FILE: expected a port number")
    );
    assert_eq!(
        file_err("profile = \"staging\"\n", &[]),
        r#"profile in FILE: expected development, production or test, got "staging""#
    );
    assert_eq!(
        file_err("[database]\nurl = 5\n", &[]),
        "database.url in FILE: expected a connection string, got 5"
    );
    assert_eq!(
        file_err("[log]\nutilization_warn_percent = 101\n", &[]),
        "log.utilization_warn_percent in FILE: expected a whole percentage from 1 to 100, got 101"
    );
}

#[test]
fn numbers_as_strings_are_accepted_in_the_file() {
    assert_eq!(
        with_file("[pool]\nmax = \"12\"\n", &[])
            .unwrap()
            .pool
            .max_connections,
        12
    );
    assert_eq!(
        with_file("[database]\nport = \"5432,5433\"\nhost = \"a,b\"\n", &[])
            .unwrap()
            .database
            .hosts
            .len(),
        2
    );
}

#[test]
fn min_above_max_across_sources_names_each_where_it_was_written() {
    assert_eq!(
        file_err("[pool]\nmin = 8\n", &[("DB_POOL_MAX", "4")]),
        "pool.min in FILE: must not exceed the pool maximum (DB_POOL_MAX = 4), got 8"
    );
}

#[test]
fn invalid_toml_gives_the_position_but_never_the_line() {
    let error = file_err(
        "[database]\nuser = \"u\"\npassword = \"hunter2\nname = \"x\"\n",
        &[],
    );
    assert!(
        error.starts_with("configuration file FILE is not valid TOML: "),
        "{error}"
    );
    assert!(error.contains("at line 3, column"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
}

#[test]
fn a_password_of_the_wrong_type_is_not_shown() {
    let error = file_err("[database]\npassword = 12345678\n", &[]);
    assert_eq!(error, "database.password in FILE: expected a string");
}

#[test]
fn environment_profile_beats_the_files() {
    let config = with_file("profile = \"production\"\n", &[("NODE_ENV", "test")]).unwrap();
    assert_eq!(config.profile, Profile::Test);
}

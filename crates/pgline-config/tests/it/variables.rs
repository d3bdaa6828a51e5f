use std::path::PathBuf;
use std::time::Duration;

use pgline_config::{Backend, Endpoint, LogLevel, TargetSessionAttrs, TlsMode};

use crate::ok;

#[test]
fn database_variables() {
    let config = ok(&[
        ("DB_HOST", "db.plant.internal"),
        ("DB_PORT", "6432"),
        ("DB_NAME", "plant"),
        ("DB_USER", "pgline"),
        ("DB_PASSWORD", "pw"),
        ("DB_SSL", "verify-ca"),
        ("DB_SSL_ROOT_CERT", "/etc/pgline/ca.pem"),
        ("DB_TARGET_SESSION_ATTRS", "read-write"),
    ]);
    let db = config.database;
    assert_eq!(db.hosts, vec![Endpoint::new("db.plant.internal", 6432)]);
    assert_eq!(db.name, "plant");
    assert_eq!(db.user, "pgline");
    assert_eq!(db.password.as_ref().map(|p| p.expose()), Some("pw"));
    assert_eq!(db.tls, TlsMode::VerifyCa);
    assert_eq!(db.ssl_root_cert, Some(PathBuf::from("/etc/pgline/ca.pem")));
    assert_eq!(db.target_session_attrs, TargetSessionAttrs::ReadWrite);
}

#[test]
fn db_ssl_true_false_and_every_sslmode_word() {
    let tls = |value: &str| ok(&[("DB_SSL", value)]).database.tls;
    assert_eq!(tls("true"), TlsMode::VerifyFull);
    assert_eq!(tls("TRUE"), TlsMode::VerifyFull);
    assert_eq!(tls("false"), TlsMode::Disable);
    assert_eq!(tls("disable"), TlsMode::Disable);
    assert_eq!(tls("prefer"), TlsMode::Prefer);
    assert_eq!(tls("require"), TlsMode::Require);
    assert_eq!(tls("verify-ca"), TlsMode::VerifyCa);
    assert_eq!(tls("verify-full"), TlsMode::VerifyFull);
}

#[test]
fn target_session_attrs_words() {
    let attrs = |value: &str| {
        ok(&[("DB_TARGET_SESSION_ATTRS", value)])
            .database
            .target_session_attrs
    };
    assert_eq!(attrs("any"), TargetSessionAttrs::Any);
    assert_eq!(attrs("read-write"), TargetSessionAttrs::ReadWrite);
    assert_eq!(attrs("read-only"), TargetSessionAttrs::ReadOnly);
}

#[test]
fn pool_variables() {
    let pool = ok(&[
        ("DB_POOL_MIN", "3"),
        ("DB_POOL_MAX", "12"),
        ("DB_POOL_ACQUIRE_MS", "1500"),
        ("DB_POOL_IDLE_MS", " 20000 "),
    ])
    .pool;
    assert_eq!((pool.min_connections, pool.max_connections), (3, 12));
    assert_eq!(pool.acquire_timeout, Duration::from_millis(1500));
    assert_eq!(pool.idle_timeout, Duration::from_secs(20));
}

#[test]
fn min_may_be_zero_and_equal_to_max() {
    let pool = ok(&[("DB_POOL_MIN", "0")]).pool;
    assert_eq!(pool.min_connections, 0);
    let pool = ok(&[("DB_POOL_MIN", "4"), ("DB_POOL_MAX", "4")]).pool;
    assert_eq!((pool.min_connections, pool.max_connections), (4, 4));
}

#[test]
fn server_variables() {
    let server = ok(&[
        ("HOST", "127.0.0.1"),
        ("PORT", "8080"),
        ("DB_BACKEND", "sync"),
    ])
    .server;
    assert_eq!(server.host, "127.0.0.1");
    assert_eq!(server.port, 8080);
    assert_eq!(server.backend, Backend::Sync);
    assert_eq!(server.listen_address(), "127.0.0.1:8080");
    assert_eq!(ok(&[("HOST", "::")]).server.listen_address(), "[::]:3000");
    assert_eq!(
        ok(&[("DB_BACKEND", "async")]).server.backend,
        Backend::Async
    );
}

#[test]
fn log_variables() {
    for (word, level) in [
        ("error", LogLevel::Error),
        ("warn", LogLevel::Warn),
        ("info", LogLevel::Info),
        ("debug", LogLevel::Debug),
        ("trace", LogLevel::Trace),
    ] {
        let log = ok(&[("LOG_LEVEL", word)]).log;
        assert_eq!(log.level, level);
        assert_eq!(log.directives(), word);
    }
    let log = ok(&[
        ("LOG_LEVEL", "debug"),
        ("RUST_LOG", "warn,pgline_async=trace"),
    ])
    .log;
    assert_eq!(log.level, LogLevel::Debug);
    assert_eq!(log.directives(), "warn,pgline_async=trace");
}

#[test]
fn telemetry_variables() {
    let telemetry = ok(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
        ("OTEL_SERVICE_NAME", "line-7"),
    ])
    .telemetry;
    assert_eq!(
        telemetry.otlp_endpoint.as_deref(),
        Some("http://collector:4317")
    );
    assert_eq!(telemetry.service_name, "line-7");
    assert!(!telemetry.sdk_disabled);
    assert!(telemetry.export_enabled());
}

#[test]
fn sdk_disabled_turns_export_off() {
    let config = ok(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4317"),
        ("OTEL_SDK_DISABLED", "true"),
    ]);
    assert!(config.telemetry.sdk_disabled);
    assert!(!config.telemetry.export_enabled());
    assert!(
        config
            .warnings()
            .iter()
            .any(|w| w.contains("OTEL_SDK_DISABLED"))
    );
    assert!(
        !ok(&[("OTEL_SDK_DISABLED", "true")])
            .telemetry
            .export_enabled()
    );
    assert!(!ok(&[("OTEL_SDK_DISABLED", "false")]).telemetry.sdk_disabled);
}

#[test]
fn empty_variables_count_as_unset() {
    let config = ok(&[
        ("DB_HOST", ""),
        ("DB_POOL_MAX", "  "),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
        ("DATABASE_URL", ""),
        ("PGLINE_CONFIG", ""),
    ]);
    assert_eq!(
        config.database.hosts,
        vec![Endpoint::new("localhost", 5432)]
    );
    assert_eq!(config.pool.max_connections, 10);
    assert_eq!(config.telemetry.otlp_endpoint, None);
}

#[test]
fn unrelated_variables_are_ignored() {
    ok(&[
        ("PATH", "/usr/bin"),
        ("DB_POOL_SIZE", "x"),
        ("HOSTNAME", "box"),
    ]);
}

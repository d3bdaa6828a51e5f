use std::time::Duration;

use pgline_config::{
    Backend, Config, Endpoint, LogLevel, PoolConfig, Profile, TargetSessionAttrs, TlsMode,
};

use crate::{PRODUCTION, err, ok};

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn development_is_the_default_profile_with_local_database() {
    let config = ok(&[]);
    assert_eq!(config.profile, Profile::Development);
    assert_eq!(config, Config::defaults(Profile::Development));
    let db = &config.database;
    assert_eq!(db.hosts, vec![Endpoint::new("localhost", 5432)]);
    assert_eq!(
        (db.name.as_str(), db.user.as_str()),
        ("postgres", "postgres")
    );
    assert_eq!(db.password, None);
    assert_eq!(db.tls, TlsMode::Disable);
    assert_eq!(db.ssl_root_cert, None);
    assert_eq!(db.target_session_attrs, TargetSessionAttrs::Any);
    assert_eq!(config.file, None);
}

#[test]
fn development_pool_defaults_are_the_seeds() {
    let pool = ok(&[("NODE_ENV", "development")]).pool;
    assert_eq!((pool.min_connections, pool.max_connections), (2, 10));
    assert_eq!(pool.acquire_timeout, 30 * SECOND);
    assert_eq!(pool.idle_timeout, 10 * SECOND);
}

#[test]
fn production_pool_defaults_are_the_seeds() {
    let config = ok(PRODUCTION);
    assert_eq!(config.profile, Profile::Production);
    let pool = config.pool;
    assert_eq!((pool.min_connections, pool.max_connections), (5, 20));
    assert_eq!(pool.acquire_timeout, 60 * SECOND);
    assert_eq!(pool.idle_timeout, 300 * SECOND);
}

#[test]
fn test_profile_is_small_and_quick() {
    let config = ok(&[("NODE_ENV", "test")]);
    assert_eq!(config.profile, Profile::Test);
    let pool = config.pool;
    assert_eq!((pool.min_connections, pool.max_connections), (1, 5));
    assert_eq!(pool.acquire_timeout, 5 * SECOND);
    assert_eq!(pool.idle_timeout, 10 * SECOND);
    assert_eq!(config.database.name, "postgres");
}

#[test]
fn settings_shared_by_every_profile() {
    for profile in [Profile::Development, Profile::Production, Profile::Test] {
        let config = Config::defaults(profile);
        let pool = &config.pool;
        assert_eq!(*pool, PoolConfig::defaults(profile));
        assert!(pool.keepalive);
        assert_eq!(pool.keepalive_idle, 10 * SECOND);
        assert_eq!(pool.query_timeout, 30 * SECOND);
        assert_eq!(pool.connect_timeout, 10 * SECOND);
        assert_eq!(pool.max_lifetime, 30 * 60 * SECOND);
        assert_eq!(pool.validation_idle, Duration::from_millis(500));
        assert_eq!(pool.statement_cache_size, 100);
        assert_eq!(pool.leak_detection, None);
        assert_eq!(config.log.level, LogLevel::Info);
        assert_eq!(config.log.filter, None);
        assert_eq!(config.log.slow_query, SECOND);
        assert_eq!(config.log.utilization_warn_percent, 80);
        assert_eq!(config.server.host, "0.0.0.0");
        assert_eq!(config.server.port, 3000);
        assert_eq!(config.server.backend, Backend::Async);
        assert_eq!(config.telemetry.otlp_endpoint, None);
        assert_eq!(config.telemetry.service_name, "pgline-server");
        assert!(!config.telemetry.sdk_disabled);
        assert!(!config.telemetry.export_enabled());
    }
}

#[test]
fn loaded_defaults_match_the_typed_defaults() {
    // The figment defaults layer is built from `Config::defaults`; loading
    // with nothing set must give the same values back.
    assert_eq!(ok(&[("NODE_ENV", "test")]), Config::defaults(Profile::Test));
    let production = ok(PRODUCTION);
    assert_eq!(production.pool, Config::defaults(Profile::Production).pool);
    assert_eq!(production.log, Config::defaults(Profile::Production).log);
    assert_eq!(
        production.server,
        Config::defaults(Profile::Production).server
    );
}

#[test]
fn app_env_is_read_and_node_env_wins() {
    assert_eq!(ok(&[("APP_ENV", "test")]).profile, Profile::Test);
    assert_eq!(
        ok(&[("NODE_ENV", "test"), ("APP_ENV", "production")]).profile,
        Profile::Test
    );
    // An empty NODE_ENV counts as unset.
    assert_eq!(
        ok(&[("NODE_ENV", ""), ("APP_ENV", "test")]).profile,
        Profile::Test
    );
}

#[test]
fn profile_words_ignore_case() {
    assert_eq!(ok(&[("NODE_ENV", "Test")]).profile, Profile::Test);
}

#[test]
fn unknown_profile_names_the_variable_used() {
    assert_eq!(
        err(&[("NODE_ENV", "staging")]),
        r#"NODE_ENV: expected development, production or test, got "staging""#
    );
    assert!(err(&[("APP_ENV", "prod")]).starts_with("APP_ENV: expected development"));
}

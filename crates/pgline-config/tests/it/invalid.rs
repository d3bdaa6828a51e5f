use pgline_config::ConfigError;

use crate::{err, load};

const COUNT: &str = "expected a whole number of connections from 1 to 10000";
const MILLIS: &str = "expected a duration in whole milliseconds from 1 to 2147483647, e.g. 30000";

#[test]
fn non_numbers_are_refused_with_the_accepted_form() {
    assert_eq!(
        err(&[("DB_POOL_MAX", "abc")]),
        format!(r#"DB_POOL_MAX: {COUNT}, got "abc""#)
    );
    assert_eq!(
        err(&[("DB_POOL_MIN", "two")]),
        r#"DB_POOL_MIN: expected a whole number of connections from 0 to 10000, got "two""#
    );
    assert_eq!(
        err(&[("DB_POOL_ACQUIRE_MS", "30s")]),
        format!(r#"DB_POOL_ACQUIRE_MS: {MILLIS}, got "30s""#)
    );
    assert_eq!(
        err(&[("DB_POOL_IDLE_MS", "1.5")]),
        format!(r#"DB_POOL_IDLE_MS: {MILLIS}, got "1.5""#)
    );
    assert_eq!(
        err(&[("PORT", "http")]),
        r#"PORT: expected a port number from 1 to 65535, got "http""#
    );
}

#[test]
fn zero_is_refused_where_it_makes_no_sense() {
    assert_eq!(
        err(&[("DB_POOL_MAX", "0")]),
        format!(r#"DB_POOL_MAX: {COUNT}, got "0""#)
    );
    assert_eq!(
        err(&[("DB_POOL_ACQUIRE_MS", "0")]),
        format!(r#"DB_POOL_ACQUIRE_MS: {MILLIS}, got "0""#)
    );
    assert_eq!(
        err(&[("DB_POOL_IDLE_MS", "0")]),
        format!(r#"DB_POOL_IDLE_MS: {MILLIS}, got "0""#)
    );
    assert!(err(&[("PORT", "0")]).starts_with("PORT: expected a port number"));
    assert!(err(&[("DB_PORT", "0")]).starts_with("DB_PORT: expected a port number"));
}

#[test]
fn negative_numbers_are_refused() {
    assert_eq!(
        err(&[("DB_POOL_MIN", "-1")]),
        r#"DB_POOL_MIN: expected a whole number of connections from 0 to 10000, got "-1""#
    );
    assert_eq!(
        err(&[("DB_POOL_MAX", "-5")]),
        format!(r#"DB_POOL_MAX: {COUNT}, got "-5""#)
    );
    assert_eq!(
        err(&[("DB_POOL_ACQUIRE_MS", "-100")]),
        format!(r#"DB_POOL_ACQUIRE_MS: {MILLIS}, got "-100""#)
    );
}

#[test]
fn out_of_range_numbers_are_refused() {
    assert_eq!(
        err(&[("PORT", "65536")]),
        r#"PORT: expected a port number from 1 to 65535, got "65536""#
    );
    assert!(
        err(&[("DB_PORT", "70000")]).starts_with("DB_PORT: expected a port number from 1 to 65535")
    );
    assert!(err(&[("DB_POOL_MAX", "99999999999")]).starts_with("DB_POOL_MAX: expected"));
    assert!(
        err(&[("DB_POOL_ACQUIRE_MS", "2147483648")]).starts_with("DB_POOL_ACQUIRE_MS: expected")
    );
}

#[test]
fn min_above_max_names_both() {
    assert_eq!(
        err(&[("DB_POOL_MIN", "10"), ("DB_POOL_MAX", "5")]),
        "DB_POOL_MIN: must not exceed the pool maximum (DB_POOL_MAX = 5), got 10"
    );
    // Against a profile default, the default is named.
    assert_eq!(
        err(&[("DB_POOL_MIN", "11")]),
        "DB_POOL_MIN: must not exceed the pool maximum (the default of pool.max = 10), got 11"
    );
}

#[test]
fn bad_words_list_the_accepted_ones() {
    assert_eq!(
        err(&[("DB_SSL", "yes")]),
        r#"DB_SSL: expected true (= verify-full), false (= disable) or an sslmode: disable, prefer, require, verify-ca or verify-full, got "yes""#
    );
    assert_eq!(
        err(&[("LOG_LEVEL", "verbose")]),
        r#"LOG_LEVEL: expected error, warn, info, debug or trace, got "verbose""#
    );
    assert_eq!(
        err(&[("DB_BACKEND", "threads")]),
        r#"DB_BACKEND: expected async or sync, got "threads""#
    );
    assert_eq!(
        err(&[("DB_TARGET_SESSION_ATTRS", "primary")]),
        r#"DB_TARGET_SESSION_ATTRS: expected any, read-write or read-only, got "primary""#
    );
    assert_eq!(
        err(&[("OTEL_SDK_DISABLED", "yes")]),
        r#"OTEL_SDK_DISABLED: expected true or false, got "yes""#
    );
}

#[test]
fn bad_hosts_and_endpoints() {
    assert!(err(&[("DB_HOST", "db1,,db2")]).starts_with("DB_HOST: expected a host name"));
    assert!(err(&[("HOST", "0.0.0.0 1")]).starts_with("HOST: expected an address to listen on"));
    assert_eq!(
        err(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")]),
        r#"OTEL_EXPORTER_OTLP_ENDPOINT: expected an http:// or https:// URL such as http://collector:4317, got "collector:4317""#
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let error = load(&[
        ("DB_POOL_MAX", "abc"),
        ("PORT", "99999"),
        ("LOG_LEVEL", "loud"),
    ])
    .unwrap_err();
    let settings: Vec<&str> = error
        .problems()
        .iter()
        .map(|p| p.setting.as_str())
        .collect();
    assert_eq!(settings, ["DB_POOL_MAX", "PORT", "LOG_LEVEL"]);
    let text = error.to_string();
    assert!(
        text.starts_with("3 configuration problems:\n  DB_POOL_MAX: "),
        "{text}"
    );
    assert!(text.contains("\n  PORT: expected a port number"), "{text}");
    assert!(matches!(error, ConfigError::Invalid(_)));
}

#[test]
fn messages_are_lowercase_without_trailing_period() {
    let text = err(&[
        ("DB_POOL_MAX", "abc"),
        ("NODE_ENV", "staging"),
        ("DB_SSL", "x"),
    ]);
    for line in text.lines() {
        let message = line.trim().split_once(": ").map_or(line, |(_, m)| m);
        assert!(!message.ends_with('.'), "{line}");
        assert!(!message.starts_with(char::is_uppercase), "{line}");
    }
}

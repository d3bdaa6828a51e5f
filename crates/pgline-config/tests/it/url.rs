use std::time::Duration;

use pgline_config::{Endpoint, TargetSessionAttrs, TlsMode};

use crate::{err, load, ok};

#[test]
fn url_form() {
    let config = ok(&[(
        "DATABASE_URL",
        "postgresql://pgline:p%40ss@db1:6432/plant?sslmode=require&target_session_attrs=read-only&connect_timeout=3",
    )]);
    let db = &config.database;
    assert_eq!(db.hosts, vec![Endpoint::new("db1", 6432)]);
    assert_eq!(db.name, "plant");
    assert_eq!(db.user, "pgline");
    assert_eq!(db.password.as_ref().map(|p| p.expose()), Some("p@ss"));
    assert_eq!(db.tls, TlsMode::Require);
    assert_eq!(db.target_session_attrs, TargetSessionAttrs::ReadOnly);
    assert_eq!(config.pool.connect_timeout, Duration::from_secs(3));
}

#[test]
fn postgres_scheme_and_node_style_ssl() {
    let db = ok(&[("DATABASE_URL", "postgres://u@db/plant?ssl=true")]).database;
    assert_eq!(db.tls, TlsMode::VerifyFull);
    assert_eq!(db.password, None);
}

#[test]
fn key_value_form() {
    let db = ok(&[(
        "DATABASE_URL",
        "host=db1,db2 port=5432,5433 dbname=plant user=pgline password='a b' sslmode=verify-full",
    )])
    .database;
    assert_eq!(
        db.hosts,
        vec![Endpoint::new("db1", 5432), Endpoint::new("db2", 5433)]
    );
    assert_eq!(db.name, "plant");
    assert_eq!(db.password.as_ref().map(|p| p.expose()), Some("a b"));
    assert_eq!(db.tls, TlsMode::VerifyFull);
}

#[test]
fn url_parts_override_db_variables_and_the_rest_stay() {
    let db = ok(&[
        ("DB_HOST", "from-var"),
        ("DB_PORT", "1111"),
        ("DB_NAME", "var_db"),
        ("DB_USER", "var_user"),
        ("DB_PASSWORD", "var_pw"),
        ("DB_SSL", "require"),
        ("DATABASE_URL", "postgres://url_user@from-url/url_db"),
    ])
    .database;
    // Named in the URL: host, user, dbname. Not named: port, password, sslmode.
    assert_eq!(db.hosts, vec![Endpoint::new("from-url", 1111)]);
    assert_eq!(db.user, "url_user");
    assert_eq!(db.name, "url_db");
    assert_eq!(db.password.as_ref().map(|p| p.expose()), Some("var_pw"));
    assert_eq!(db.tls, TlsMode::Require);
}

#[test]
fn url_port_overrides_db_port() {
    let db = ok(&[("DB_PORT", "1111"), ("DATABASE_URL", "postgres://db:2222")]).database;
    assert_eq!(db.hosts, vec![Endpoint::new("db", 2222)]);
}

#[test]
fn bad_url_values_are_named_by_part_and_never_echoed() {
    let error = err(&[("DATABASE_URL", "postgres://u:hunter2@db:99999/x")]);
    assert_eq!(
        error,
        "DATABASE_URL (port): expected a port number from 1 to 65535, or a comma-separated list with one per host"
    );
    let error = err(&[("DATABASE_URL", "postgres://u:hunter2@db/x?sslmode=hunter2")]);
    assert!(
        error.starts_with("DATABASE_URL (sslmode): expected true"),
        "{error}"
    );
    assert!(!error.contains("hunter2"), "{error}");
}

#[test]
fn unparsable_urls_never_show_the_password() {
    for url in [
        "mysql://u:hunter2@db/x",
        "postgres://u:hun/ter2@db/x",
        "postgres://u:hun?ter2@db/x",
        "postgres://u:hunter2%G1@db/x",
        "postgres://u:hunter2@db/x?connect_timeout=soon",
        "postgres://u:hunter2@db/x?passwrd=hunter2",
        "host=db password='hunter2",
        "hunter2",
    ] {
        let error = err(&[("DATABASE_URL", url)]);
        assert!(error.starts_with("DATABASE_URL"), "{url}: {error}");
        assert!(
            !error.contains("hunter2") && !error.contains("ter2"),
            "{url}: {error}"
        );
    }
}

#[test]
fn unsupported_libpq_parameters_are_named() {
    assert!(
        err(&[("DATABASE_URL", "postgres://db?application_name=x")])
            .contains("parameter application_name is not supported")
    );
}

#[test]
fn url_errors_are_collected_with_others() {
    let error = load(&[("DATABASE_URL", "nonsense"), ("DB_POOL_MAX", "x")]).unwrap_err();
    assert_eq!(error.problems().len(), 2);
}

use std::time::Duration;

use pgline_config::{APPLICATION_NAME, TlsMode};
use tokio_postgres::config::{Host, SslMode, TargetSessionAttrs};

use crate::{PRODUCTION, ok};

#[test]
fn conversion_carries_every_connection_setting() {
    let mut vars = PRODUCTION.to_vec();
    vars.extend([
        ("DB_HOST", "db1,db2"),
        ("DB_PORT", "5432,5433"),
        ("DB_TARGET_SESSION_ATTRS", "read-write"),
    ]);
    let pg = ok(&vars).to_tokio_postgres();
    assert_eq!(
        pg.get_hosts(),
        [Host::Tcp("db1".to_owned()), Host::Tcp("db2".to_owned())]
    );
    assert_eq!(pg.get_ports(), [5432, 5433]);
    assert_eq!(pg.get_dbname(), Some("plant"));
    assert_eq!(pg.get_user(), Some("pgline"));
    assert_eq!(pg.get_password(), Some(&b"hunter2-secret"[..]));
    assert_eq!(pg.get_connect_timeout(), Some(&Duration::from_secs(10)));
    assert!(pg.get_keepalives());
    assert_eq!(pg.get_keepalives_idle(), Duration::from_secs(10));
    assert_eq!(pg.get_application_name(), Some(APPLICATION_NAME));
    assert_eq!(pg.get_application_name(), Some("pgline"));
    assert_eq!(pg.get_options(), Some("-c statement_timeout=30000"));
    assert_eq!(pg.get_target_session_attrs(), TargetSessionAttrs::ReadWrite);
    assert_eq!(pg.get_ssl_mode(), SslMode::Require);
}

#[test]
fn file_settings_reach_the_conversion() {
    let file = crate::toml_file(
        "[pool]\nconnect_timeout_ms = 2500\nquery_timeout_ms = 1500\nkeepalive = false\nkeepalive_idle_ms = 60000\n",
    );
    let config =
        pgline_config::Config::from_sources(Vec::<(String, String)>::new(), Some(file.path()))
            .unwrap();
    let pg = config.to_tokio_postgres();
    assert_eq!(pg.get_connect_timeout(), Some(&Duration::from_millis(2500)));
    assert_eq!(pg.get_options(), Some("-c statement_timeout=1500"));
    assert!(!pg.get_keepalives());
    assert_eq!(pg.get_keepalives_idle(), Duration::from_secs(60));
}

#[test]
fn ssl_modes_and_no_password() {
    let ssl = |value: &str| ok(&[("DB_SSL", value)]).to_tokio_postgres().get_ssl_mode();
    assert_eq!(ssl("disable"), SslMode::Disable);
    assert_eq!(ssl("prefer"), SslMode::Prefer);
    assert_eq!(ssl("require"), SslMode::Require);
    assert_eq!(ssl("verify-ca"), SslMode::Require);
    assert_eq!(ssl("true"), SslMode::Require);
    let pg = ok(&[]).to_tokio_postgres();
    assert_eq!(pg.get_password(), None);
    assert_eq!(pg.get_hosts(), [Host::Tcp("localhost".to_owned())]);
    assert_eq!(pg.get_ports(), [5432]);
    assert_eq!(pg.get_target_session_attrs(), TargetSessionAttrs::Any);
    assert_eq!(
        ok(&[("DB_SSL", "verify-full")]).database.tls,
        TlsMode::VerifyFull
    );
}

#[cfg(unix)]
#[test]
fn socket_directory_becomes_a_unix_host() {
    let pg = ok(&[("DB_HOST", "/var/run/postgresql")]).to_tokio_postgres();
    assert_eq!(pg.get_hosts(), [Host::Unix("/var/run/postgresql".into())]);
}

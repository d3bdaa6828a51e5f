use pgline_config::{Endpoint, TargetSessionAttrs};

use crate::{err, ok};

#[test]
fn several_hosts_share_one_port() {
    let hosts = ok(&[("DB_HOST", "db1, db2,db3"), ("DB_PORT", "6432")])
        .database
        .hosts;
    assert_eq!(
        hosts,
        vec![
            Endpoint::new("db1", 6432),
            Endpoint::new("db2", 6432),
            Endpoint::new("db3", 6432)
        ]
    );
}

#[test]
fn one_port_per_host() {
    let hosts = ok(&[("DB_HOST", "db1,db2"), ("DB_PORT", "5432,5433")])
        .database
        .hosts;
    assert_eq!(
        hosts,
        vec![Endpoint::new("db1", 5432), Endpoint::new("db2", 5433)]
    );
}

#[test]
fn port_count_must_match_host_count() {
    assert_eq!(
        err(&[("DB_HOST", "db1,db2,db3"), ("DB_PORT", "5432,5433")]),
        "DB_PORT: lists 2 ports for 3 hosts (DB_HOST); give one port for every host or one per host"
    );
}

#[test]
fn url_with_several_hosts_and_target_session_attrs() {
    let db = ok(&[(
        "DATABASE_URL",
        "postgresql://db1:5432,db2:5433,[2001:db8::1]/plant?target_session_attrs=read-write",
    )])
    .database;
    assert_eq!(
        db.hosts,
        vec![
            Endpoint::new("db1", 5432),
            Endpoint::new("db2", 5433),
            Endpoint::new("2001:db8::1", 5432)
        ]
    );
    assert_eq!(db.hosts[2].to_string(), "[2001:db8::1]:5432");
    assert_eq!(db.target_session_attrs, TargetSessionAttrs::ReadWrite);
}

#[test]
fn url_hosts_without_ports_take_db_port() {
    let db = ok(&[
        ("DB_PORT", "6000"),
        ("DATABASE_URL", "postgres://db1,db2/plant"),
    ])
    .database;
    assert_eq!(
        db.hosts,
        vec![Endpoint::new("db1", 6000), Endpoint::new("db2", 6000)]
    );
}

#[test]
fn unix_socket_directory() {
    let hosts = ok(&[("DB_HOST", "/var/run/postgresql")]).database.hosts;
    assert_eq!(hosts, vec![Endpoint::new("/var/run/postgresql", 5432)]);
}

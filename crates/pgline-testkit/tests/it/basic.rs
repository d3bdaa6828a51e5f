//! Starting servers, querying them, settings, timing, and the blocking API.

use std::time::{Duration, Instant};

use pgline_testkit::{PgServer, TestkitError};

#[test]
fn server_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<PgServer>();
    check::<TestkitError>();
}

#[tokio::test]
async fn start_and_query() {
    let server = PgServer::start().await.expect("start postgres");
    assert_eq!(server.host(), "127.0.0.1");
    assert_eq!(
        server.url("app"),
        format!("postgres://postgres@127.0.0.1:{}/app", server.port())
    );
    let config = server.config("postgres");
    assert_eq!(config.get_ports(), &[server.port()]);
    assert_eq!(config.get_user(), Some("postgres"));
    assert!(server.pid().is_some());

    assert_eq!(server.query_scalar_i64("SELECT 1 + 1").await.unwrap(), 2);
    assert_eq!(
        server
            .query_scalar_i64("SHOW max_connections")
            .await
            .unwrap(),
        200
    );
    let client = server.connect("postgres").await.unwrap();
    for (setting, expected) in [
        ("fsync", "off"),
        ("synchronous_commit", "off"),
        ("full_page_writes", "off"),
        ("listen_addresses", "127.0.0.1"),
        ("server_encoding", "UTF8"),
    ] {
        let row = client
            .query_one(&format!("SHOW {setting}"), &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), expected, "{setting}");
    }
    let row = client.query_one("SELECT current_user", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "postgres");
    assert!(
        server
            .log_tail(50)
            .contains("database system is ready to accept connections"),
        "log: {}",
        server.log_tail(50)
    );
    assert!(
        server
            .socket_dir()
            .starts_with(server.data_dir().parent().unwrap())
    );
}

#[tokio::test]
async fn builder_settings_apply() {
    let server = PgServer::builder()
        .max_connections(7)
        .config("work_mem", "1234kB")
        .config("application_name", "from builder")
        .start()
        .await
        .expect("start postgres");
    assert_eq!(
        server
            .query_scalar_i64("SHOW max_connections")
            .await
            .unwrap(),
        7
    );
    let client = server.connect("postgres").await.unwrap();
    let row = client.query_one("SHOW work_mem", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "1234kB");
}

#[tokio::test]
async fn query_errors_carry_the_server_message() {
    let server = PgServer::shared();
    let err = server
        .execute("SELECT * FROM no_such_table")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("no_such_table"), "{text}");
    assert!(text.contains("does not exist"), "{text}");
    let err = server.query_scalar_i64("SELECT 'x'").await.unwrap_err();
    assert!(err.to_string().contains("not an integer"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_concurrently() {
    let (a, b) = tokio::join!(PgServer::start(), PgServer::start());
    let (a, b) = (a.expect("start a"), b.expect("start b"));
    assert_ne!(a.port(), b.port());
    assert_ne!(a.data_dir(), b.data_dir());
    a.execute("CREATE TABLE only_in_a (x int)").await.unwrap();
    assert_eq!(
        a.query_scalar_i64("SELECT count(*) FROM pg_class WHERE relname = 'only_in_a'")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        b.query_scalar_i64("SELECT count(*) FROM pg_class WHERE relname = 'only_in_a'")
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn startup_time_is_printed() {
    let mut times = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let server = PgServer::start().await.expect("start postgres");
        let elapsed = started.elapsed();
        assert_eq!(server.query_scalar_i64("SELECT 1").await.unwrap(), 1);
        let dropped = Instant::now();
        drop(server);
        times.push((elapsed, dropped.elapsed()));
    }
    for (i, (start, drop)) in times.iter().enumerate() {
        println!("pgline-testkit: server {i}: started in {start:?}, dropped in {drop:?}");
    }
    // Not asserted (machines differ); a sanity bound only.
    assert!(times.iter().all(|(s, _)| *s < Duration::from_secs(30)));
}

#[test]
fn blocking_api_from_plain_threads() {
    let handle = std::thread::spawn(|| {
        let server = PgServer::start_blocking().expect("start postgres");
        server
            .execute_blocking("CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2), (3)")
            .unwrap();
        assert_eq!(
            server
                .query_scalar_i64_blocking("SELECT sum(x) FROM t")
                .unwrap(),
            6
        );
        let db = server.fresh_database_blocking().unwrap();
        assert!(db.starts_with("pgline_test_"));
        // config() and url() are plain data: no runtime involved.
        let config = server.config(&db);
        assert_eq!(config.get_dbname(), Some(db.as_str()));
        assert!(server.url(&db).ends_with(&format!("/{db}")));
        server.stop_blocking();
        assert!(server.pid().is_none());
        assert!(server.query_scalar_i64_blocking("SELECT 1").is_err());
        server.restart_blocking().unwrap();
        assert_eq!(
            server
                .query_scalar_i64_blocking("SELECT count(*) FROM t")
                .unwrap(),
            3
        );
    });
    handle.join().expect("thread");
}

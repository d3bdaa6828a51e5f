//! The fault proxy in front of a real server.

use std::time::{Duration, Instant};

use pgline_testkit::{FaultProxy, PgServer};

async fn connect_via(proxy: &FaultProxy) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config = PgServer::shared().config_via(proxy.port(), "postgres");
    config.connect_timeout(Duration::from_secs(1));
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_latency_stall_cut_and_refuse() {
    let server = PgServer::shared();
    let proxy = FaultProxy::start(([127, 0, 0, 1], server.port()).into())
        .await
        .unwrap();

    let client = connect_via(&proxy).await.unwrap();
    assert_eq!(
        client
            .query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    assert_eq!(proxy.open_connections(), 1);

    proxy.set_latency(Duration::from_millis(100));
    let started = Instant::now();
    client.query_one("SELECT 1", &[]).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "latency in each direction"
    );

    proxy.stall();
    let stalled = tokio::time::timeout(
        Duration::from_millis(300),
        client.query_one("SELECT 1", &[]),
    )
    .await;
    assert!(stalled.is_err(), "a stalled proxy forwarded a query");
    let new = tokio::time::timeout(Duration::from_millis(300), connect_via(&proxy)).await;
    assert!(
        !matches!(new, Ok(Ok(_))),
        "a stalled proxy let a new connection through"
    );

    proxy.pass();
    proxy.cut_all();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(client.is_closed() || client.query_one("SELECT 1", &[]).await.is_err());

    proxy.refuse(true);
    assert!(connect_via(&proxy).await.is_err());
    proxy.refuse(false);
    let again = connect_via(&proxy).await.unwrap();
    again.query_one("SELECT 1", &[]).await.unwrap();
}

//! Hot standby and promotion.

use std::time::{Duration, Instant};

use pgline_testkit::PgServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_replicates_and_can_be_promoted() {
    let primary = PgServer::start().await.unwrap();
    primary
        .execute("CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let standby = primary.start_standby().await.unwrap();
    assert_ne!(standby.port(), primary.port());
    assert_eq!(
        standby
            .query_scalar_i64("SELECT pg_is_in_recovery()::int")
            .await
            .unwrap(),
        1
    );
    primary.execute("INSERT INTO t VALUES (2)").await.unwrap();
    let started = Instant::now();
    loop {
        let n = standby
            .query_scalar_i64("SELECT count(*) FROM t")
            .await
            .unwrap();
        if n == 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "standby did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        standby.execute("INSERT INTO t VALUES (3)").await.is_err(),
        "a standby accepted a write"
    );
    primary.kill9().await.unwrap();
    let started = Instant::now();
    standby.promote().await.unwrap();
    println!("promoted in {:?}", started.elapsed());
    standby.execute("INSERT INTO t VALUES (3)").await.unwrap();
    assert_eq!(
        standby
            .query_scalar_i64("SELECT count(*) FROM t")
            .await
            .unwrap(),
        3
    );
}

//! The per-process shared server, from several runtimes and from plain threads.

use pgline_testkit::PgServer;

#[test]
fn shared_from_two_runtimes_and_sync_code() {
    let threads: Vec<_> = (0..2)
        .map(|i| {
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let server = PgServer::shared();
                    let db = server.fresh_database().await.unwrap();
                    let client = server.connect(&db).await.unwrap();
                    client
                        .batch_execute(&format!("CREATE TABLE t{i} (x int)"))
                        .await
                        .unwrap();
                    assert_eq!(server.query_scalar_i64("SELECT 7").await.unwrap(), 7);
                    server.port()
                })
            })
        })
        .collect();
    let ports: Vec<u16> = threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    assert_eq!(ports[0], ports[1]);
    // And from synchronous code, after those runtimes are gone.
    let server = PgServer::shared();
    assert_eq!(server.port(), ports[0]);
    assert_eq!(server.query_scalar_i64_blocking("SELECT 8").unwrap(), 8);
}

#[tokio::test]
async fn shared_inside_a_current_thread_runtime() {
    let server = PgServer::shared();
    assert_eq!(server.query_scalar_i64("SELECT 9").await.unwrap(), 9);
    // The blocking helpers work here too (they block this thread meanwhile).
    assert_eq!(server.query_scalar_i64_blocking("SELECT 10").unwrap(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_inside_a_multi_thread_runtime() {
    let server = PgServer::shared();
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            tokio::spawn(async move {
                PgServer::shared()
                    .query_scalar_i64(&format!("SELECT {i}"))
                    .await
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap().unwrap(), i as i64);
    }
    assert!(server.pid().is_some());
}

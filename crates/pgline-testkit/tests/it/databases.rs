//! create_database and fresh_database.

use pgline_testkit::PgServer;

#[tokio::test]
async fn create_and_fresh_databases() {
    let server = PgServer::shared();
    let named = format!("pgline_named_{}", std::process::id());
    server.create_database(&named).await.unwrap();
    let err = server.create_database(&named).await.unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");

    let a = server.fresh_database().await.unwrap();
    let b = server.fresh_database().await.unwrap();
    assert_ne!(a, b);
    let count = server
        .query_scalar_i64(&format!(
            "SELECT count(*) FROM pg_database WHERE datname IN ('{named}', '{a}', '{b}')"
        ))
        .await
        .unwrap();
    assert_eq!(count, 3);

    // Each database is separate.
    let ca = server.connect(&a).await.unwrap();
    ca.batch_execute("CREATE TABLE here (x int)").await.unwrap();
    let cb = server.connect(&b).await.unwrap();
    assert!(cb.batch_execute("SELECT * FROM here").await.is_err());
    let row = cb
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), b);
}

#[tokio::test]
async fn odd_database_names_are_quoted() {
    let server = PgServer::shared();
    let name = format!("Odd \"name\" {}", std::process::id());
    server.create_database(&name).await.unwrap();
    let client = server.connect(&name).await.unwrap();
    let row = client
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), name);
}

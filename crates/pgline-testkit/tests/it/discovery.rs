//! Binary discovery and the message when PostgreSQL is missing.

use pgline_testkit::PgServer;

#[tokio::test]
async fn missing_binaries_say_how_to_install() {
    let empty = tempfile::tempdir().unwrap();
    let err = PgServer::builder()
        .bin_dir(empty.path())
        .start()
        .await
        .expect_err("no binaries in an empty folder");
    let text = err.to_string();
    assert!(text.contains("apt-get install postgresql"), "{text}");
    assert!(text.contains(&empty.path().display().to_string()), "{text}");
    assert!(text.contains("initdb"), "{text}");
}

#[test]
fn missing_binaries_blocking() {
    let empty = tempfile::tempdir().unwrap();
    let err = PgServer::builder()
        .bin_dir(empty.path().join("nowhere"))
        .start_blocking()
        .expect_err("no binaries");
    assert!(
        err.to_string().contains("apt-get install postgresql"),
        "{err}"
    );
}

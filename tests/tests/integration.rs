//! The seed's ten-point test runs in the test suite too.
#![allow(clippy::unwrap_used, missing_docs)]

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ten_points_pass() {
    assert_eq!(
        pgline_tests::integration::run().await,
        0,
        "see the FAIL lines above"
    );
}

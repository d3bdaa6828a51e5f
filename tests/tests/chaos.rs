//! The fast subset of the fault suite (`cargo xtask chaos` runs all of it).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use pgline_tests::chaos;

async fn run(name: &str) {
    let scenarios: Vec<_> = chaos::all()
        .into_iter()
        .filter(|(n, _)| n.contains(name))
        .collect();
    assert_eq!(scenarios.len(), 1, "no scenario named {name}");
    let failed = chaos::run(&scenarios, Duration::from_secs(120)).await;
    assert_eq!(
        failed, 0,
        "chaos scenario `{name}` failed (its line above says why)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_backends_never_reach_callers() {
    run("pg_terminate_backend").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_gives_clean_errors_and_recovers() {
    run("max_connections").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_stall_never_hangs_a_caller() {
    run("stall").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhaustion_gives_only_timeouts_in_fifo_order() {
    run("exhaustion").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_storm_never_leaks_a_dirty_connection() {
    run("cancellation storm").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_orders_survive_a_crash_and_none_is_half_written() {
    run("crash consistency").await;
}

//! Sizes, validation, events, broken and expired connections, restarts, close.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgline_core::{ErrorKind, PoolEvent, RemoveReason};
use pgline_sync::{PoolOptions, SyncManager, SyncPool};
use pgline_testkit::PgServer;

use crate::common::{eventually, pool, pool_on, pool_with};

fn recorder() -> (Arc<Mutex<Vec<PoolEvent>>>, PoolOptions) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let options = PoolOptions::new(0, 1).with_listener(Arc::new(move |e: &PoolEvent| {
        sink.lock().unwrap().push(e.clone());
    }));
    (events, options)
}

#[test]
fn events_are_emitted_for_connect_acquire_release_remove() {
    let (events, options) = recorder();
    let pool = pool_with(options);
    pool.query_one("SELECT 1", &[]).unwrap();
    pool.close(Duration::from_secs(1));
    let events = events.lock().unwrap().clone();
    let names: Vec<_> = events.iter().map(PoolEvent::name).collect();
    assert_eq!(
        names,
        ["connect", "acquire", "release", "remove"],
        "{events:?}"
    );
    let ids: Vec<u64> = events
        .iter()
        .map(|e| match e {
            PoolEvent::Connect { connection_id, .. }
            | PoolEvent::Acquire { connection_id, .. }
            | PoolEvent::Release { connection_id, .. }
            | PoolEvent::Remove { connection_id, .. } => *connection_id,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert!(
        ids[0] > 0 && ids.iter().all(|id| *id == ids[0]),
        "{events:?}"
    );
    assert!(matches!(
        events[3],
        PoolEvent::Remove {
            reason: RemoveReason::Closed,
            ..
        }
    ));
}

#[test]
fn min_idle_is_what_was_asked_not_max() {
    let pool = pool(2, 8);
    std::thread::sleep(Duration::from_millis(200));
    let s = pool.stats();
    assert_eq!(s.total, 2, "{s:?}");
    assert_eq!(s.idle, 2, "{s:?}");
    assert_eq!((s.min, s.max), (2, 8));
}

#[test]
fn validation_skips_recently_used_connections_only() {
    let pool =
        pool_with(PoolOptions::new(1, 1).with_validation_threshold(Duration::from_millis(200)));
    for _ in 0..20 {
        pool.query_one("SELECT 1", &[]).unwrap();
    }
    let v = pool.validation_stats();
    assert_eq!(v.checked, 0, "{v:?}");
    assert!(v.skipped >= 20, "{v:?}");
    std::thread::sleep(Duration::from_millis(250));
    pool.query_one("SELECT 1", &[]).unwrap();
    assert_eq!(pool.validation_stats().checked, 1);

    let always = pool_with(PoolOptions::new(1, 1).with_validation_threshold(Duration::ZERO));
    for _ in 0..5 {
        always.query_one("SELECT 1", &[]).unwrap();
    }
    assert_eq!(always.validation_stats().checked, 5);
}

#[test]
fn terminated_backends_are_never_handed_out() {
    let pool = pool_with(PoolOptions::new(3, 3).with_validation_threshold(Duration::ZERO));
    let db: String = pool
        .query_one("SELECT current_database()", &[])
        .unwrap()
        .get(0);
    let held: Vec<_> = (0..3).map(|_| pool.get().unwrap()).collect();
    drop(held);
    PgServer::shared()
        .execute_blocking(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
        ))
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..6 {
        let row = pool.query_one("SELECT 1", &[]);
        assert!(
            row.is_ok(),
            "a terminated connection was handed out: {row:?}"
        );
    }
    let s = pool.stats();
    assert!(s.closed_total.broken >= 3, "{s:?}");
    assert!(s.errors_total >= 3, "validation failures count: {s:?}");
}

#[test]
fn connections_past_their_lifetime_are_closed_on_return() {
    let pool =
        pool_with(PoolOptions::new(0, 1).with_max_lifetime(Some(Duration::from_millis(300))));
    let first: i32 = pool
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let conn = pool.get().unwrap();
    std::thread::sleep(Duration::from_millis(350));
    drop(conn);
    let second: i32 = pool
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    assert_ne!(first, second);
    assert_eq!(pool.stats().closed_total.lifetime, 1, "{:?}", pool.stats());
}

#[test]
fn close_refuses_waiters_and_closes_everything() {
    let pool = pool(2, 2);
    let db: String = pool
        .query_one("SELECT current_database()", &[])
        .unwrap()
        .get(0);
    let a = pool.get().unwrap();
    let b = pool.get().unwrap();
    let p = pool.clone();
    let waiter = std::thread::spawn(move || {
        let started = Instant::now();
        let err = p.get().unwrap_err();
        (err, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(100));
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        drop(a);
        drop(b);
    });
    let report = pool.close(Duration::from_secs(5));
    releaser.join().unwrap();
    let (err, waited) = waiter.join().unwrap();
    assert_eq!(err.kind(), &ErrorKind::PoolClosed, "{err}");
    assert!(waited < Duration::from_secs(2), "refused late: {waited:?}");
    assert_eq!(report.refused_waiters, 1, "{report:?}");
    assert_eq!(report.closed_after_return, 2, "{report:?}");
    assert_eq!(report.still_in_use, 0, "{report:?}");
    let err = pool.query_one("SELECT 1", &[]).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::PoolClosed);
    assert!(pool.is_closed());
    let s = pool.stats();
    assert_eq!((s.total, s.in_use), (0, 0), "{s:?}");
    assert_eq!(s.closed_total.closed, 2, "{s:?}");
    assert!(eventually(Duration::from_secs(2), || {
        PgServer::shared()
            .query_scalar_i64_blocking(&format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}'"
            ))
            .unwrap()
            == 0
    }));
    // Closing again is harmless.
    let again = pool.close(Duration::from_millis(100));
    assert_eq!(again.still_in_use, 0);
}

#[test]
fn initialize_fails_clearly_when_the_database_is_unreachable() {
    let mut config = PgServer::shared().config("postgres");
    config.port(1); // nothing listens there
    let started = Instant::now();
    let pool = SyncPool::new(
        SyncManager::new(config, None, 10),
        PoolOptions::new(1, 2).with_acquire_timeout(Duration::from_millis(500)),
    )
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "new() blocked"
    );
    let err = pool.initialize().unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    let text = err.to_string();
    assert!(text.contains("could not open 1 connections"), "{text}");
    assert!(text.contains("could not connect"), "{text}");
    assert!(err.trips_breaker());
    let err = pool.query("SELECT 1", &[]).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(err.to_string().contains("last connection error"), "{err}");
    assert!(pool.stats().errors_total >= 1);
}

#[test]
fn tls_modes_that_need_a_connector_are_refused_without_one() {
    let config = pgline_config::Config::from_vars([("DB_SSL", "require")]).unwrap();
    let err = SyncManager::from_config(&config, None).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Rejected);
    assert!(err.to_string().contains("DB_SSL=require"), "{err}");
    let config = pgline_config::Config::from_vars([("DB_SSL", "prefer")]).unwrap();
    assert!(SyncManager::from_config(&config, None).is_ok());
}

#[test]
fn the_pool_recovers_after_a_server_restart() {
    let server = PgServer::start_blocking().unwrap();
    let pool = pool_on(
        &server,
        "postgres",
        PoolOptions::new(2, 4).with_acquire_timeout(Duration::from_secs(2)),
    );
    pool.query_one("SELECT 1", &[]).unwrap();
    server.stop_blocking();
    assert!(
        pool.query_one("SELECT 1", &[]).is_err(),
        "query succeeded with the server down"
    );
    server.restart_blocking().unwrap();
    let started = Instant::now();
    assert!(
        eventually(Duration::from_secs(10), || pool
            .query_one("SELECT 1", &[])
            .is_ok()),
        "pool did not recover after restart"
    );
    println!("recovered {:?} after restart", started.elapsed());
}

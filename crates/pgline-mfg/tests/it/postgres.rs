//! PostgreSQL-only tests: migrations, the schema's own constraints, and how
//! database errors are classified.

use std::time::Duration;

use pgline_async::{PgManager, PgPool, PoolOptions};
use pgline_core::{Database, DbError};
use pgline_mfg::{
    DomainError, EventType, MIGRATIONS, ManufacturingStore, MemoryStore, NewEvent, NewOrder,
    NewPanel, PanelStatus, PgStore, Store, migrate,
};

use crate::common::{async_pool_on, async_store, fresh_database, sync_pool_on};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_apply_once() {
    let db = fresh_database().await;
    // Two instances starting together: separate pools on the same database.
    let (a, b) = (async_pool_on(&db, 2).await, async_pool_on(&db, 2).await);
    let (ra, rb) = tokio::join!(migrate(&a), migrate(&b));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let mut applied = [ra.applied.clone(), rb.applied.clone()].concat();
    applied.sort_unstable();
    let all: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(
        applied, all,
        "every migration applied exactly once: {ra:?} {rb:?}"
    );
    assert_eq!(ra.version, rb.version);

    let recorded: i64 = a
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, i64::try_from(MIGRATIONS.len()).unwrap());
    let stations: i64 = a
        .query_one("SELECT count(*) FROM stations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stations, 8, "seeded once");

    // Re-running is a no-op.
    let again = migrate(&b).await.unwrap();
    assert!(again.applied.is_empty(), "{again:?}");
    assert_eq!(again.version, ra.version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_race_safely_across_backends() {
    // One instance on the async backend, one on the sync backend, started
    // together (on tasks of their own: the sync one blocks its thread while
    // it waits for the lock).
    for _ in 0..3 {
        let db = fresh_database().await;
        let a = async_pool_on(&db, 2).await;
        let s = sync_pool_on(&db, 2);
        let ta = tokio::spawn(async move { migrate(&a).await });
        let ts = tokio::spawn(async move { migrate(&s).await });
        let (ra, rs) = (ta.await.unwrap().unwrap(), ts.await.unwrap().unwrap());
        let mut applied = [ra.applied, rs.applied].concat();
        applied.sort_unstable();
        let all: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert_eq!(applied, all);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_enforces_the_rules_itself() {
    let store = async_store().await;
    let db = store.database();
    store
        .create_panel(&NewPanel::new("P-1", "Solar"))
        .await
        .unwrap();

    // Statements that bypass the store still cannot store what it refuses.
    for sql in [
        "UPDATE panels SET status = 'LOST' WHERE barcode = 'P-1'",
        "INSERT INTO panels (barcode, panel_type) VALUES ('bad barcode', 'Solar')",
        "INSERT INTO panels (barcode, panel_type) VALUES ('P-2', '')",
        "INSERT INTO barcode_events (barcode, event_type, station) VALUES ('P-1', 'DANCED', 'ST-01')",
        "INSERT INTO barcode_events (barcode, event_type) VALUES ('P-1', 'SCANNED')",
        "INSERT INTO barcode_events (barcode, event_type, station) VALUES ('NOPE', 'SCANNED', 'ST-01')",
        "INSERT INTO stations (id, name) VALUES ('STATION-9', 'x')",
        "INSERT INTO manufacturing_orders (order_number, panel_type, status) VALUES ('MO-1', 'x', 'FAILED')",
    ] {
        let err = db.execute(sql, &[]).await.unwrap_err();
        let code = err.code().map(|c| c.code().to_string());
        assert!(
            code.as_deref().is_some_and(|c| c.starts_with("23")),
            "{sql}: {err}"
        );
        let domain = DomainError::from(err);
        assert!(
            matches!(domain, DomainError::Database(_)),
            "a bypassed rule is a database error, not the caller's: {domain:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_and_foreign_key_violations_are_classified_by_constraint() {
    let store = async_store().await;
    let db = store.database();
    store
        .create_order(&NewOrder::new("MO-1", "Solar", ["P-1"]))
        .await
        .unwrap();
    let cases = [
        (
            "INSERT INTO panels (barcode, panel_type) VALUES ('P-1', 'Solar')",
            "panel barcode",
        ),
        (
            "INSERT INTO manufacturing_orders (order_number, panel_type) VALUES ('MO-1', 'Solar')",
            "order number",
        ),
    ];
    for (sql, subject) in cases {
        let err = db.execute(sql, &[]).await.unwrap_err();
        assert!(err.is_unique_violation(), "{err}");
        match DomainError::from(err) {
            DomainError::Conflict { what } => assert_eq!(what, subject),
            other => panic!("{sql}: {other:?}"),
        }
    }
    let err = db
        .execute(
            "INSERT INTO barcode_events (barcode, event_type, station) VALUES ('P-1', 'SCANNED', 'ST-77')",
            &[],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(DomainError::from(err), DomainError::Validation { ref field, .. } if field == "station")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stations_added_to_the_table_are_accepted() {
    let store = async_store().await;
    store
        .database()
        .execute(
            "INSERT INTO stations (id, name) VALUES ('ST-09', 'Rework')",
            &[],
        )
        .await
        .unwrap();
    store
        .create_panel(&NewPanel::new("P-1", "Solar"))
        .await
        .unwrap();
    let recorded = store
        .record_event("P-1", &NewEvent::new(EventType::Scanned, "ST-09"))
        .await
        .unwrap();
    assert_eq!(recorded.status, PanelStatus::InProgress);
    let figures = store.figures().await.unwrap();
    assert_eq!(figures.events_last_hour.len(), 9);
    assert_eq!(figures.events_last_hour[8].events, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_unavailable_not_a_client_error() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config: tokio_postgres::Config =
        format!("host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=1")
            .parse()
            .unwrap();
    let options = PoolOptions::new(0, 2).with_acquire_timeout(Duration::from_millis(500));
    let pool = PgPool::new(PgManager::new(config, None, 0), options).unwrap();
    let store = PgStore::new(pool);

    let migrated = store.migrate().await;
    assert!(
        matches!(migrated, Err(DomainError::Unavailable(_))),
        "{migrated:?}"
    );
    let err = store.figures().await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(!err.is_client_error());
    assert_eq!(err.to_string(), "database unavailable", "no internals");
    let inner: &DbError = pgline_core::TransactionError::as_db_error(&err).unwrap();
    assert!(inner.trips_breaker(), "{inner}");

    // Validation still happens first: bad input never waits for the database.
    let bad = store.create_panel(&NewPanel::new("", "Solar")).await;
    assert!(
        matches!(bad, Err(DomainError::Validation { .. })),
        "{bad:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_time_store_choice_delegates_and_reports_degraded_mode() {
    let pg: Store<PgPool> = Store::from(async_store().await);
    let memory: Store<PgPool> = Store::from(MemoryStore::new());
    assert!(!pg.is_degraded());
    assert!(memory.is_degraded());
    for store in [&pg, &memory] {
        store
            .create_order(&NewOrder::new("MO-1", "Solar", ["P-1"]))
            .await
            .unwrap();
        store
            .record_event("P-1", &NewEvent::new(EventType::Scanned, "ST-01"))
            .await
            .unwrap();
        let order = store.order("MO-1").await.unwrap();
        assert_eq!(order.panels[0].status, PanelStatus::InProgress);
        assert_eq!(store.limits().max_panels_per_order, 1000);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_runs_on_a_shared_handle_across_tasks() {
    // Futures are Send: handlers on a multi-threaded runtime can spawn them.
    let store = std::sync::Arc::new(async_store().await);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = std::sync::Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let barcode = format!("S-{i}");
            store
                .create_panel(&NewPanel::new(barcode.as_str(), "Solar"))
                .await?;
            store
                .record_event(
                    &barcode,
                    &NewEvent::new(EventType::Scanned, format!("ST-0{}", i % 8 + 1)),
                )
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let figures = store.figures().await.unwrap();
    assert_eq!(figures.panels.in_progress, 8);
    assert!(figures.events_last_hour.iter().all(|a| a.events == 1));
}

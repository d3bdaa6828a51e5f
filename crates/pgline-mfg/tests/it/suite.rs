//! The domain suite: every function takes a fresh, empty store and must pass
//! on every implementation of `ManufacturingStore`.

use std::future::Future;

use pgline_mfg::{
    DomainError, EventType, ManufacturingStore, NewEvent, NewOrder, NewPanel, OrderStatus,
    PanelStatus,
};

/// Runs `n` calls at once, each on a task of its own with a clone of the
/// store: real parallelism on every backend (the sync backend's statements
/// block the thread that polls them, so futures sharing one task would run
/// one after the other).
async fn in_parallel<S, T, F, Fut>(store: &S, n: usize, f: F) -> Vec<T>
where
    S: Clone,
    F: Fn(S, usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|i| tokio::spawn(f(store.clone(), i))).collect();
    let mut results = Vec::with_capacity(n);
    for task in tasks {
        results.push(task.await.expect("task finished"));
    }
    results
}

fn station(i: usize) -> String {
    format!("ST-{:02}", i % 8 + 1)
}

const ALL_EVENTS: [EventType; 4] = EventType::STATION_EVENTS;

fn event(event_type: EventType, station: &str) -> NewEvent {
    NewEvent::new(event_type, station)
}

fn raw_event(event_type: &str, station: &str) -> NewEvent {
    NewEvent {
        event_type: event_type.to_string(),
        station: station.to_string(),
    }
}

fn assert_timestamp(value: &str) {
    // 2025-11-27T16:54:03.123456Z
    let b = value.as_bytes();
    assert_eq!(b.len(), 27, "{value:?}");
    assert!(
        b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T'
            && b[13] == b':'
            && b[19] == b'.'
            && b[26] == b'Z',
        "{value:?}"
    );
}

fn assert_validation<T: std::fmt::Debug>(result: Result<T, DomainError>, expected_field: &str) {
    match result {
        Err(DomainError::Validation { field, message }) => {
            assert_eq!(field, expected_field, "{message}");
            assert!(!message.is_empty());
        }
        other => panic!("expected a validation error on {expected_field}, got {other:?}"),
    }
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, DomainError>, name: &str) {
    match result {
        Err(DomainError::NotFound { what }) => assert!(what.contains(name), "{what}"),
        other => panic!("expected not found ({name}), got {other:?}"),
    }
}

fn conflict_subject<T: std::fmt::Debug>(result: Result<T, DomainError>) -> String {
    match result {
        Err(DomainError::Conflict { what }) => what,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

async fn event_count<S: ManufacturingStore>(store: &S, barcode: &str) -> usize {
    store.panel_events(barcode, 1000).await.unwrap().len()
}

/// Brings a new panel `barcode` to `status` through valid events.
async fn panel_in<S: ManufacturingStore>(store: &S, barcode: &str, status: PanelStatus) {
    store
        .create_panel(&NewPanel::new(barcode, "Solar"))
        .await
        .unwrap();
    let path: &[EventType] = match status {
        PanelStatus::Pending => &[],
        PanelStatus::InProgress => &[EventType::Scanned],
        PanelStatus::Completed => &[EventType::Scanned, EventType::Completed],
        PanelStatus::Failed => &[EventType::Failed],
    };
    for e in path {
        store
            .record_event(barcode, &event(*e, "ST-01"))
            .await
            .unwrap();
    }
    assert_eq!(store.panel(barcode).await.unwrap().status, status);
}

pub async fn creates_an_order_with_its_panels<S: ManufacturingStore>(store: &S) {
    let created = store
        .create_order(&NewOrder::new(
            "MO-1001",
            "Solar 60-cell",
            ["P-3", "P-1", "P-2"],
        ))
        .await
        .unwrap();
    assert_eq!(created.order_number, "MO-1001");
    assert_eq!(created.panel_type, "Solar 60-cell");
    assert_eq!(created.status, OrderStatus::Pending);
    assert_timestamp(&created.created_at);
    let barcodes: Vec<&str> = created.panels.iter().map(|p| p.barcode.as_str()).collect();
    assert_eq!(barcodes, ["P-1", "P-2", "P-3"], "panels sorted by barcode");
    assert!(
        created
            .panels
            .iter()
            .all(|p| p.status == PanelStatus::Pending)
    );

    let read = store.order("MO-1001").await.unwrap();
    assert_eq!(read, created, "the lookup returns what creation returned");

    let panel = store.panel("P-2").await.unwrap();
    assert_eq!(panel.order_number.as_deref(), Some("MO-1001"));
    assert_eq!(panel.panel_type, "Solar 60-cell");
    assert_eq!(panel.status, PanelStatus::Pending);
    assert_eq!(panel.created_at, created.created_at);

    let events = store.panel_events("P-2", 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, EventType::PanelCreated);
    assert_eq!(events[0].station, None);
    assert_eq!(events[0].barcode, "P-2");
}

pub async fn duplicate_order_number_is_a_conflict_naming_it<S: ManufacturingStore>(store: &S) {
    store
        .create_order(&NewOrder::new("MO-1", "Solar", ["A-1"]))
        .await
        .unwrap();
    let what = conflict_subject(
        store
            .create_order(&NewOrder::new("MO-1", "Solar", ["B-1", "B-2"]))
            .await,
    );
    assert!(what.contains("order MO-1"), "{what}");
    assert_not_found(store.panel("B-1").await, "B-1");
    assert_not_found(store.panel("B-2").await, "B-2");
    assert_eq!(store.figures().await.unwrap().orders, 1);
}

pub async fn duplicate_barcode_is_a_conflict_and_writes_nothing<S: ManufacturingStore>(store: &S) {
    store
        .create_order(&NewOrder::new("MO-1", "Solar", ["A", "B"]))
        .await
        .unwrap();
    store
        .create_panel(&NewPanel::new("LOOSE", "Solar"))
        .await
        .unwrap();

    // The second order's middle panel is taken: nothing of it may remain.
    let what = conflict_subject(
        store
            .create_order(&NewOrder::new("MO-2", "Solar", ["C", "B", "D"]))
            .await,
    );
    assert_eq!(what, "panel B");
    assert_not_found(store.order("MO-2").await, "MO-2");
    assert_not_found(store.panel("C").await, "C");
    assert_not_found(store.panel("D").await, "D");

    // Several taken: all named.
    let what = conflict_subject(
        store
            .create_order(&NewOrder::new("MO-3", "Solar", ["LOOSE", "A", "E"]))
            .await,
    );
    assert_eq!(what, "panels A, LOOSE");

    // A standalone panel colliding with an order's panel.
    let what = conflict_subject(store.create_panel(&NewPanel::new("A", "Other")).await);
    assert_eq!(what, "panel A");
    assert_eq!(store.panel("A").await.unwrap().panel_type, "Solar");

    let figures = store.figures().await.unwrap();
    assert_eq!(figures.orders, 1);
    assert_eq!(figures.panels.total(), 3);
    assert_eq!(event_count(store, "A").await, 1, "no second PANEL_CREATED");
}

pub async fn duplicate_barcodes_in_one_request_are_refused_before_storage<S: ManufacturingStore>(
    store: &S,
) {
    let result = store
        .create_order(&NewOrder::new("MO-1", "Solar", ["A", "B", "A"]))
        .await;
    match &result {
        Err(DomainError::Validation { message, .. }) => {
            assert!(message.contains('A'), "names the barcode: {message}");
        }
        other => panic!("{other:?}"),
    }
    assert_validation(result, "panels[2].barcode");
    assert_not_found(store.order("MO-1").await, "MO-1");
    assert_not_found(store.panel("B").await, "B");
}

pub async fn panels_per_order_are_limited<S: ManufacturingStore>(store: &S) {
    let max = store.limits().max_panels_per_order;
    assert_validation(
        store
            .create_order(&NewOrder::new("MO-0", "Solar", Vec::<String>::new()))
            .await,
        "panels",
    );
    let too_many: Vec<String> = (0..=max).map(|i| format!("X-{i:05}")).collect();
    assert_validation(
        store
            .create_order(&NewOrder::new("MO-X", "Solar", too_many))
            .await,
        "panels",
    );
    assert_not_found(store.panel("X-00000").await, "X-00000");

    let exactly_max: Vec<String> = (0..max).map(|i| format!("M-{i:05}")).collect();
    let order = store
        .create_order(&NewOrder::new("MO-MAX", "Solar", exactly_max))
        .await
        .unwrap();
    assert_eq!(order.panels.len(), max);
    let figures = store.figures().await.unwrap();
    assert_eq!(figures.panels.pending, u64::try_from(max).unwrap());
}

pub async fn creating_a_panel_records_panel_created<S: ManufacturingStore>(store: &S) {
    let panel = store
        .create_panel(&NewPanel::new("P-0001", "Solar"))
        .await
        .unwrap();
    assert_eq!(panel.barcode, "P-0001");
    assert_eq!(panel.status, PanelStatus::Pending);
    assert_eq!(panel.order_number, None);
    assert_timestamp(&panel.created_at);
    assert_eq!(panel.updated_at, panel.created_at);
    assert_eq!(store.panel("P-0001").await.unwrap(), panel);

    let events = store.panel_events("P-0001", 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, EventType::PanelCreated);
    assert_eq!(events[0].station, None);
    assert_eq!(events[0].created_at, panel.created_at);
}

pub async fn scans_move_a_panel_through_production<S: ManufacturingStore>(store: &S) {
    store
        .create_panel(&NewPanel::new("P-1", "Solar"))
        .await
        .unwrap();
    let steps = [
        (
            EventType::Scanned,
            "ST-01",
            PanelStatus::Pending,
            PanelStatus::InProgress,
        ),
        (
            EventType::Scanned,
            "ST-02",
            PanelStatus::InProgress,
            PanelStatus::InProgress,
        ),
        (
            EventType::Passed,
            "ST-03",
            PanelStatus::InProgress,
            PanelStatus::InProgress,
        ),
        (
            EventType::Completed,
            "ST-08",
            PanelStatus::InProgress,
            PanelStatus::Completed,
        ),
    ];
    for (event_type, station, from, to) in steps {
        let recorded = store
            .record_event("P-1", &event(event_type, station))
            .await
            .unwrap();
        assert_eq!(recorded.barcode, "P-1");
        assert_eq!(recorded.event_type, event_type);
        assert_eq!(recorded.station, station);
        assert_eq!(recorded.previous_status, from, "{event_type}");
        assert_eq!(recorded.status, to, "{event_type}");
        assert_timestamp(&recorded.created_at);
        assert_eq!(store.panel("P-1").await.unwrap().status, to);
    }
    let events = store.panel_events("P-1", 100).await.unwrap();
    let seen: Vec<(EventType, Option<&str>)> = events
        .iter()
        .map(|e| (e.event_type, e.station.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            (EventType::PanelCreated, None),
            (EventType::Scanned, Some("ST-01")),
            (EventType::Scanned, Some("ST-02")),
            (EventType::Passed, Some("ST-03")),
            (EventType::Completed, Some("ST-08")),
        ]
    );
    let limited = store.panel_events("P-1", 2).await.unwrap();
    assert_eq!(limited, events[..2], "the limit keeps the oldest");
    let done = store
        .panels_by_status(PanelStatus::Completed, 10)
        .await
        .unwrap();
    assert_eq!(done.len(), 1);
    assert!(done[0].updated_at >= done[0].created_at);
}

pub async fn transitions_follow_the_table_and_refusals_record_nothing<S: ManufacturingStore>(
    store: &S,
) {
    use EventType::{Completed, Failed, Passed, Scanned};
    use PanelStatus as P;
    // (status, event, status after or None when refused)
    let table: [(PanelStatus, EventType, Option<PanelStatus>); 16] = [
        (P::Pending, Scanned, Some(P::InProgress)),
        (P::Pending, Passed, None),
        (P::Pending, Failed, Some(P::Failed)),
        (P::Pending, Completed, None),
        (P::InProgress, Scanned, Some(P::InProgress)),
        (P::InProgress, Passed, Some(P::InProgress)),
        (P::InProgress, Failed, Some(P::Failed)),
        (P::InProgress, Completed, Some(P::Completed)),
        (P::Completed, Scanned, None),
        (P::Completed, Passed, None),
        (P::Completed, Failed, None),
        (P::Completed, Completed, None),
        (P::Failed, Scanned, None),
        (P::Failed, Passed, None),
        (P::Failed, Failed, None),
        (P::Failed, Completed, None),
    ];
    for (i, (from, event_type, expected)) in table.into_iter().enumerate() {
        let barcode = format!("T-{i:02}");
        panel_in(store, &barcode, from).await;
        let before = event_count(store, &barcode).await;
        let result = store
            .record_event(&barcode, &event(event_type, "ST-04"))
            .await;
        match expected {
            Some(to) => {
                let recorded = result.unwrap();
                assert_eq!((recorded.previous_status, recorded.status), (from, to));
                assert_eq!(event_count(store, &barcode).await, before + 1);
            }
            None => {
                match result {
                    Err(DomainError::InvalidTransition { from: f, event: e }) => {
                        assert_eq!((f, e), (from, event_type));
                    }
                    other => panic!("{from} + {event_type}: expected a refusal, got {other:?}"),
                }
                assert_eq!(
                    event_count(store, &barcode).await,
                    before,
                    "nothing recorded"
                );
                assert_eq!(store.panel(&barcode).await.unwrap().status, from);
            }
        }
    }
    assert_eq!(ALL_EVENTS.len(), 4);
}

pub async fn unknown_barcodes_and_orders_are_not_found<S: ManufacturingStore>(store: &S) {
    assert_not_found(
        store
            .record_event("NOPE-1", &event(EventType::Scanned, "ST-01"))
            .await,
        "NOPE-1",
    );
    assert_not_found(store.panel("NOPE-1").await, "NOPE-1");
    assert_not_found(store.panel_events("NOPE-1", 10).await, "NOPE-1");
    assert_not_found(store.order("MO-404").await, "MO-404");
}

pub async fn stations_and_event_types_are_validated<S: ManufacturingStore>(store: &S) {
    store
        .create_panel(&NewPanel::new("P-1", "Solar"))
        .await
        .unwrap();
    for station in ["ST-1", "ST-", "st-01", "ST-0x", "ST-01 ", "", "ST-01'; --"] {
        assert_validation(
            store
                .record_event("P-1", &event(EventType::Scanned, station))
                .await,
            "station",
        );
    }
    // Well formed but not in the stations table; checked before the panel.
    assert_validation(
        store
            .record_event("P-1", &event(EventType::Scanned, "ST-99"))
            .await,
        "station",
    );
    assert_validation(
        store
            .record_event("NOPE", &event(EventType::Scanned, "ST-99"))
            .await,
        "station",
    );
    for event_type in ["DANCED", "scanned", "", "PANEL_CREATED", "SCANNED\0"] {
        assert_validation(
            store
                .record_event("P-1", &raw_event(event_type, "ST-01"))
                .await,
            "event_type",
        );
    }
    assert_eq!(event_count(store, "P-1").await, 1, "nothing recorded");
    assert_eq!(
        store.panel("P-1").await.unwrap().status,
        PanelStatus::Pending
    );
}

pub async fn malformed_input_is_refused_before_storage<S: ManufacturingStore>(store: &S) {
    let long = "X".repeat(65);
    let bad_identifiers = [
        "",
        long.as_str(),
        "P\0",
        "P\u{1}",
        "P\n1",
        "P 1",
        "P/1",
        "'; DROP TABLE panels; --",
        "Ω-1",
    ];
    for bad in bad_identifiers {
        assert_validation(
            store.create_panel(&NewPanel::new(bad, "Solar")).await,
            "barcode",
        );
        assert_validation(
            store
                .create_order(&NewOrder::new(bad, "Solar", ["OK-1"]))
                .await,
            "order_number",
        );
        assert_validation(
            store
                .create_order(&NewOrder::new("MO-1", "Solar", ["OK-1", bad]))
                .await,
            "panels[1].barcode",
        );
        assert_validation(store.panel(bad).await, "barcode");
        assert_validation(store.panel_events(bad, 1).await, "barcode");
        assert_validation(store.order(bad).await, "order_number");
        assert_validation(
            store
                .record_event(bad, &event(EventType::Scanned, "ST-01"))
                .await,
            "barcode",
        );
    }
    let long_type = "é".repeat(65);
    for bad in [
        "",
        long_type.as_str(),
        "nul\0inside",
        "line\nbreak",
        "bidi\u{202E}override",
        " leading",
        "trailing\t",
    ] {
        assert_validation(
            store.create_panel(&NewPanel::new("OK-1", bad)).await,
            "panel_type",
        );
        assert_validation(
            store
                .create_order(&NewOrder::new("MO-1", bad, ["OK-1"]))
                .await,
            "panel_type",
        );
    }
    assert_validation(
        store.panels_by_status(PanelStatus::Pending, 0).await,
        "limit",
    );
    assert_validation(store.panel_events("OK-1", 0).await, "limit");
    let figures = store.figures().await.unwrap();
    assert_eq!(figures.orders, 0);
    assert_eq!(figures.panels.total(), 0);

    // The longest accepted values fit the schema too.
    let max = "Y".repeat(64);
    let max_type = "é".repeat(64);
    store
        .create_order(&NewOrder::new(
            max.as_str(),
            max_type.as_str(),
            [max.as_str()],
        ))
        .await
        .unwrap();
    assert_eq!(store.order(&max).await.unwrap().panel_type, max_type);
}

pub async fn sql_looking_panel_types_are_stored_verbatim<S: ManufacturingStore>(store: &S) {
    let hostile = [
        "'; DROP TABLE panels; --",
        "Robert'); DROP TABLE panels;--",
        "x' OR '1'='1",
        "$1 \\ \" ; -- /* */",
        "Ünïcödé ☀ panel",
    ];
    for (i, panel_type) in hostile.into_iter().enumerate() {
        let barcode = format!("H-{i}");
        let created = store
            .create_panel(&NewPanel::new(barcode.as_str(), panel_type))
            .await
            .unwrap();
        assert_eq!(created.panel_type, panel_type);
        assert_eq!(store.panel(&barcode).await.unwrap().panel_type, panel_type);
        let order_number = format!("MO-H{i}");
        store
            .create_order(&NewOrder::new(
                order_number.as_str(),
                panel_type,
                [format!("HO-{i}")],
            ))
            .await
            .unwrap();
        assert_eq!(
            store.order(&order_number).await.unwrap().panel_type,
            panel_type
        );
    }
    // Everything is still there.
    let figures = store.figures().await.unwrap();
    assert_eq!(figures.panels.pending, 10);
    assert_eq!(figures.orders, 5);
}

pub async fn lists_panels_by_status_with_a_limit<S: ManufacturingStore>(store: &S) {
    for i in 1..=5 {
        store
            .create_panel(&NewPanel::new(format!("L-{i}"), "Solar"))
            .await
            .unwrap();
    }
    for barcode in ["L-2", "L-4"] {
        store
            .record_event(barcode, &event(EventType::Scanned, "ST-01"))
            .await
            .unwrap();
    }
    let barcodes = |panels: Vec<pgline_mfg::Panel>| -> Vec<String> {
        panels.into_iter().map(|p| p.barcode).collect()
    };
    let pending = store
        .panels_by_status(PanelStatus::Pending, 10)
        .await
        .unwrap();
    assert!(pending.iter().all(|p| p.status == PanelStatus::Pending));
    assert_eq!(barcodes(pending), ["L-1", "L-3", "L-5"], "oldest first");
    let first_two = store
        .panels_by_status(PanelStatus::Pending, 2)
        .await
        .unwrap();
    assert_eq!(barcodes(first_two), ["L-1", "L-3"]);
    let started = store
        .panels_by_status(PanelStatus::InProgress, 10)
        .await
        .unwrap();
    assert_eq!(barcodes(started), ["L-2", "L-4"]);
    assert!(
        store
            .panels_by_status(PanelStatus::Failed, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let max = store.limits().max_page_size;
    assert!(
        store
            .panels_by_status(PanelStatus::Pending, max)
            .await
            .is_ok()
    );
    assert_validation(
        store.panels_by_status(PanelStatus::Pending, max + 1).await,
        "limit",
    );
    assert_validation("WAITING".parse::<PanelStatus>(), "status");
}

pub async fn order_status_follows_its_panels<S: ManufacturingStore>(store: &S) {
    store
        .create_order(&NewOrder::new("MO-7", "Solar", ["A", "B"]))
        .await
        .unwrap();
    let status = |s: &'static str| async move { store.order(s).await.unwrap().status };
    assert_eq!(status("MO-7").await, OrderStatus::Pending);
    store
        .record_event("A", &event(EventType::Scanned, "ST-01"))
        .await
        .unwrap();
    assert_eq!(status("MO-7").await, OrderStatus::InProgress);
    store
        .record_event("A", &event(EventType::Completed, "ST-02"))
        .await
        .unwrap();
    assert_eq!(
        status("MO-7").await,
        OrderStatus::InProgress,
        "B is still pending"
    );
    store
        .record_event("B", &event(EventType::Failed, "ST-02"))
        .await
        .unwrap();
    let order = store.order("MO-7").await.unwrap();
    assert_eq!(order.status, OrderStatus::Completed, "every panel finished");
    let panels: Vec<(&str, PanelStatus)> = order
        .panels
        .iter()
        .map(|p| (p.barcode.as_str(), p.status))
        .collect();
    assert_eq!(
        panels,
        [("A", PanelStatus::Completed), ("B", PanelStatus::Failed)]
    );
}

pub async fn figures_count_orders_panels_and_station_activity<S: ManufacturingStore>(store: &S) {
    let empty = store.figures().await.unwrap();
    assert_eq!(empty.orders, 0);
    assert_eq!(empty.panels.total(), 0);
    let stations: Vec<&str> = empty
        .events_last_hour
        .iter()
        .map(|a| a.station.as_str())
        .collect();
    assert_eq!(
        stations,
        [
            "ST-01", "ST-02", "ST-03", "ST-04", "ST-05", "ST-06", "ST-07", "ST-08"
        ]
    );
    assert!(empty.events_last_hour.iter().all(|a| a.events == 0));

    store
        .create_order(&NewOrder::new("MO-1", "Solar", ["A", "B"]))
        .await
        .unwrap();
    store
        .create_order(&NewOrder::new("MO-2", "Solar", ["C"]))
        .await
        .unwrap();
    store
        .create_panel(&NewPanel::new("D", "Solar"))
        .await
        .unwrap();
    for (barcode, event_type, station) in [
        ("A", EventType::Scanned, "ST-01"),
        ("B", EventType::Scanned, "ST-01"),
        ("B", EventType::Completed, "ST-03"),
        ("C", EventType::Failed, "ST-03"),
    ] {
        store
            .record_event(barcode, &event(event_type, station))
            .await
            .unwrap();
    }
    // A refused event is not activity.
    assert!(
        store
            .record_event("C", &event(EventType::Scanned, "ST-05"))
            .await
            .is_err()
    );

    let figures = store.figures().await.unwrap();
    assert_eq!(figures.orders, 2);
    assert_eq!(figures.panels.pending, 1);
    assert_eq!(figures.panels.in_progress, 1);
    assert_eq!(figures.panels.completed, 1);
    assert_eq!(figures.panels.failed, 1);
    assert_eq!(figures.panels.get(PanelStatus::Failed), 1);
    let activity: Vec<(&str, u64)> = figures
        .events_last_hour
        .iter()
        .map(|a| (a.station.as_str(), a.events))
        .collect();
    assert_eq!(
        activity,
        [
            ("ST-01", 2),
            ("ST-02", 0),
            ("ST-03", 2),
            ("ST-04", 0),
            ("ST-05", 0),
            ("ST-06", 0),
            ("ST-07", 0),
            ("ST-08", 0),
        ],
        "PANEL_CREATED has no station and is not station activity"
    );
}

pub async fn concurrent_events_on_one_panel_apply_one_at_a_time<
    S: ManufacturingStore + Clone + 'static,
>(
    store: &S,
) {
    // Several rounds, because a missing lock only shows when the race is lost.
    for round in 0..6 {
        concurrent_events_round(store, &format!("C-{round}")).await;
    }
}

async fn concurrent_events_round<S: ManufacturingStore + Clone + 'static>(
    store: &S,
    barcode: &str,
) {
    // Eight stations scan a pending panel at once: exactly one moves it.
    store
        .create_panel(&NewPanel::new(barcode, "Solar"))
        .await
        .unwrap();
    let scans = in_parallel(store, 8, |s, i| {
        let (barcode, e) = (barcode.to_string(), event(EventType::Scanned, &station(i)));
        async move { s.record_event(&barcode, &e).await }
    })
    .await;
    let moved = scans
        .iter()
        .map(|r| r.as_ref().unwrap())
        .filter(|r| r.previous_status == PanelStatus::Pending)
        .count();
    assert_eq!(moved, 1, "{scans:?}");
    assert_eq!(event_count(store, barcode).await, 9);

    // Completions and failures race: exactly one wins, the rest see its result.
    let racers = in_parallel(store, 8, |s, i| {
        let kind = if i % 2 == 0 {
            EventType::Completed
        } else {
            EventType::Failed
        };
        let (barcode, e) = (barcode.to_string(), event(kind, &station(i)));
        async move { s.record_event(&barcode, &e).await }
    })
    .await;
    let winners: Vec<_> = racers.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{racers:?}");
    let final_status = winners[0].status;
    for r in &racers {
        if let Err(e) = r {
            assert!(
                matches!(e, DomainError::InvalidTransition { from, .. } if *from == final_status),
                "{e:?}"
            );
        }
    }
    assert_eq!(store.panel(barcode).await.unwrap().status, final_status);
    assert_eq!(event_count(store, barcode).await, 10);
}

pub async fn concurrent_events_on_one_order_leave_the_right_status<
    S: ManufacturingStore + Clone + 'static,
>(
    store: &S,
) {
    // Eight stations finish the eight panels of an order at once: whoever
    // commits last must see every other panel finished.
    for round in 0..4 {
        let order_number = format!("MO-R{round}");
        let barcode = move |i: usize| format!("R{round}-{i}");
        store
            .create_order(&NewOrder::new(
                order_number.as_str(),
                "Solar",
                (0..8).map(barcode),
            ))
            .await
            .unwrap();
        let started = in_parallel(store, 8, |s, i| {
            let e = event(EventType::Scanned, &station(i));
            async move { s.record_event(&barcode(i), &e).await }
        })
        .await;
        assert!(started.iter().all(Result::is_ok), "{started:?}");
        assert_eq!(
            store.order(&order_number).await.unwrap().status,
            OrderStatus::InProgress
        );
        let finished = in_parallel(store, 8, |s, i| {
            let kind = if i == 0 {
                EventType::Failed
            } else {
                EventType::Completed
            };
            let e = event(kind, &station(i));
            async move { s.record_event(&barcode(i), &e).await }
        })
        .await;
        assert!(finished.iter().all(Result::is_ok), "{finished:?}");
        assert_eq!(
            store.order(&order_number).await.unwrap().status,
            OrderStatus::Completed,
            "round {round}"
        );
    }
}

pub async fn concurrent_orders_sharing_barcodes_never_half_exist<
    S: ManufacturingStore + Clone + 'static,
>(
    store: &S,
) {
    // Six orders, each with two barcodes of its own and two shared ones (in
    // varying request order): exactly one order can be created.
    let orders: Vec<NewOrder> = (0..6)
        .map(|i| {
            let mut barcodes = vec![format!("OWN-{i}-A"), "SHARED-1".to_string()];
            barcodes.push(format!("OWN-{i}-B"));
            if i % 2 == 0 {
                barcodes.insert(0, "SHARED-2".to_string());
            } else {
                barcodes.push("SHARED-2".to_string());
            }
            NewOrder::new(format!("MO-{i}"), "Solar", barcodes)
        })
        .collect();
    let results = in_parallel(store, orders.len(), |s, i| {
        let order = orders[i].clone();
        async move { s.create_order(&order).await }
    })
    .await;
    let created: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_ok())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(created.len(), 1, "{results:?}");
    for (i, result) in results.iter().enumerate() {
        let number = format!("MO-{i}");
        if created.contains(&i) {
            assert_eq!(store.order(&number).await.unwrap().panels.len(), 4);
        } else {
            assert!(
                matches!(result, Err(DomainError::Conflict { what }) if what.contains("SHARED")),
                "{result:?}"
            );
            assert_not_found(store.order(&number).await, &number);
            for own in ["A", "B"] {
                let barcode = format!("OWN-{i}-{own}");
                assert_not_found(store.panel(&barcode).await, &barcode);
            }
        }
    }
    let figures = store.figures().await.unwrap();
    assert_eq!(figures.orders, 1);
    assert_eq!(figures.panels.total(), 4);
}

pub async fn json_has_the_contract_field_names<S: ManufacturingStore>(store: &S) {
    let order = store
        .create_order(&NewOrder::new("MO-J", "Solar", ["J-1"]))
        .await
        .unwrap();
    let json = serde_json::to_value(&order).unwrap();
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "order_number",
        "panel_type",
        "status",
        "created_at",
        "panels",
    ] {
        assert!(keys.contains(&key), "{key} in {json}");
    }
    assert_eq!(json["status"], "PENDING");
    assert_eq!(
        json["panels"],
        serde_json::json!([{"barcode": "J-1", "status": "PENDING"}])
    );

    let recorded = store
        .record_event("J-1", &event(EventType::Scanned, "ST-01"))
        .await
        .unwrap();
    let json = serde_json::to_value(&recorded).unwrap();
    assert_eq!(json["event_type"], "SCANNED");
    assert_eq!(json["status"], "IN_PROGRESS");
    assert_eq!(json["previous_status"], "PENDING");
    assert_eq!(json["barcode"], "J-1");

    let figures = serde_json::to_value(store.figures().await.unwrap()).unwrap();
    assert_eq!(figures["orders"], 1);
    assert_eq!(figures["panels"]["in_progress"], 1);
    assert_eq!(figures["events_last_hour"][0]["station"], "ST-01");
    assert_eq!(figures["events_last_hour"][0]["events"], 1);

    // Requests deserialize from the HTTP contract's bodies.
    let request: NewOrder = serde_json::from_value(serde_json::json!({
        "order_number": "MO-K", "panel_type": "Solar", "panels": [{"barcode": "K-1"}]
    }))
    .unwrap();
    store.create_order(&request).await.unwrap();
    let request: NewEvent =
        serde_json::from_value(serde_json::json!({"event_type": "SCANNED", "station": "ST-02"}))
            .unwrap();
    store.record_event("K-1", &request).await.unwrap();
}

//! The contract suite: what every `pgline_core::Database` handle promises,
//! written once and generic over the trait, run against every backend.
//!
//! Each backend is one line at the bottom: `contract!(name, factory)`
//! generates a module `name` with every test below, once on tokio's
//! multi-thread runtime and once on a current-thread runtime (the sync
//! backend must not panic or deadlock on either). A factory takes a [`Spec`]
//! (sizes, acquire timeout, an event listener) and returns a ready handle on
//! a fresh database of the shared test server.
//!
//! `cargo test -p pgline-tests --test contract` prints one line per test and
//! backend (`test sync_pool::current_thread::acquire_timeout ... ok`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgline_core::{
    Database, DbError, ErrorKind, PoolEvent, PoolListener, RemoveReason, Session, TransactionError,
};
use pgline_testkit::PgServer;

// ---------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------

/// What a test asks of a backend factory.
#[derive(Clone)]
pub struct Spec {
    pub min: u32,
    pub max: u32,
    pub acquire_timeout: Duration,
    pub listener: Option<Arc<dyn PoolListener>>,
}

impl Spec {
    fn new(min: u32, max: u32) -> Self {
        Self {
            min,
            max,
            acquire_timeout: Duration::from_secs(10),
            listener: None,
        }
    }

    fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    fn listener(mut self, listener: Arc<dyn PoolListener>) -> Self {
        self.listener = Some(listener);
        self
    }
}

/// The async pool of `pgline-async`.
async fn make_async_pool(spec: Spec) -> pgline_async::PgPool {
    use pgline_async::{PgManager, PgPool, PoolOptions};
    let server = PgServer::shared();
    let db = server.fresh_database().await.expect("fresh database");
    let mut options =
        PoolOptions::new(spec.min, spec.max).with_acquire_timeout(spec.acquire_timeout);
    if let Some(listener) = spec.listener {
        options = options.with_listener(listener);
    }
    let pool =
        PgPool::new(PgManager::new(server.config(&db), None, 100), options).expect("valid options");
    pool.initialize().await.expect("pool initializes");
    pool
}

/// The r2d2-based pool of `pgline-sync`, used through its async adapter.
async fn make_sync_pool(spec: Spec) -> pgline_sync::SyncPool {
    use pgline_sync::{PoolOptions, SyncManager, SyncPool};
    let server = PgServer::shared();
    let db = server.fresh_database().await.expect("fresh database");
    let mut options =
        PoolOptions::new(spec.min, spec.max).with_acquire_timeout(spec.acquire_timeout);
    if let Some(listener) = spec.listener {
        options = options.with_listener(listener);
    }
    let pool = SyncPool::new(SyncManager::new(server.config(&db), None, 100), options)
        .expect("valid options");
    // Blocks until `min` connections are open (leaving the runtime first).
    pool.initialize().expect("pool initializes");
    pool
}

/// The resilience settings the decorated backends run with (defaults).
fn resilience() -> pgline_resilience::ResilienceOptions {
    pgline_resilience::ResilienceOptions::default()
}

/// `Resilient<PgPool>`: breaker and retry in front of the async pool.
async fn make_resilient_async_pool(
    spec: Spec,
) -> pgline_resilience::Resilient<pgline_async::PgPool> {
    pgline_resilience::Resilient::new(make_async_pool(spec).await, resilience())
}

/// `Resilient<SyncPool>`: breaker and retry in front of the sync pool.
async fn make_resilient_sync_pool(
    spec: Spec,
) -> pgline_resilience::Resilient<pgline_sync::SyncPool> {
    pgline_resilience::Resilient::new(make_sync_pool(spec).await, resilience())
}

/// `Traced<PgPool>`: spans and statement metrics around the async pool.
async fn make_traced_async_pool(spec: Spec) -> pgline_telemetry::Traced<pgline_async::PgPool> {
    pgline_telemetry::Traced::new(make_async_pool(spec).await, "contract", "127.0.0.1", 5432)
}

/// `Resilient<Traced<SyncPool>>`: the server's full stack on the sync pool.
async fn make_resilient_traced_sync_pool(
    spec: Spec,
) -> pgline_resilience::Resilient<pgline_telemetry::Traced<pgline_sync::SyncPool>> {
    pgline_resilience::Resilient::new(
        pgline_telemetry::Traced::new(make_sync_pool(spec).await, "contract", "127.0.0.1", 5432),
        resilience(),
    )
}

/// A backend factory: any `async fn(Spec) -> impl Database`.
trait MakeDb {
    type Db: Database;
    fn make(&self, spec: Spec) -> impl Future<Output = Self::Db>;
}

impl<F, Fut, D> MakeDb for F
where
    F: Fn(Spec) -> Fut,
    Fut: Future<Output = D>,
    D: Database,
{
    type Db = D;
    fn make(&self, spec: Spec) -> impl Future<Output = D> {
        self(spec)
    }
}

macro_rules! contract {
    ($backend:ident, $make:ident) => {
        mod $backend {
            contract!(@flavor $make, multi_thread, (flavor = "multi_thread", worker_threads = 2));
            contract!(@flavor $make, current_thread, (flavor = "current_thread"));
        }
    };
    (@flavor $make:ident, $flavor:ident, $runtime:tt) => {
        mod $flavor {
            contract!(@tests $make, $runtime,
                parameterized_queries,
                execute_counts,
                transaction_commits,
                transaction_rolls_back_on_error,
                transaction_rolls_back_on_panic,
                transaction_rolls_back_on_cancellation,
                session_passed_to_helpers,
                statistics_stay_consistent,
                events_in_order,
                acquire_timeout_when_all_held,
                close_refuses_new_work,
            );
        }
    };
    (@tests $make:ident, $runtime:tt, $($test:ident),* $(,)?) => {
        $(
            #[tokio::test $runtime]
            async fn $test() {
                crate::$test(crate::$make).await;
            }
        )*
    };
}

// Adding a backend is adding a line.
contract!(async_pool, make_async_pool);
contract!(sync_pool, make_sync_pool);
contract!(resilient_async_pool, make_resilient_async_pool);
contract!(resilient_sync_pool, make_resilient_sync_pool);
contract!(traced_async_pool, make_traced_async_pool);
contract!(resilient_traced_sync_pool, make_resilient_traced_sync_pool);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Polls `check` until it holds or `bound` passes.
async fn eventually(bound: Duration, mut check: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    loop {
        if check() {
            return true;
        }
        if started.elapsed() > bound {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn count<D: Database>(db: &D, table: &str) -> i64 {
    db.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

/// Sessions of the handle's database left idle inside a transaction.
async fn idle_in_transaction<D: Database>(db: &D) -> i64 {
    db.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// After a rollback that happened off the caller's path (panic,
/// cancellation): the connection comes back, clean, and nothing was written.
async fn assert_rolled_back<D: Database>(db: &D, table: &str) {
    assert!(
        eventually(Duration::from_secs(5), || db.stats().in_use == 0).await,
        "connection not returned: {:?}",
        db.stats()
    );
    assert_eq!(count(db, table).await, 0, "rolled-back rows survived");
    assert_eq!(
        idle_in_transaction(db).await,
        0,
        "a session is stuck in a transaction"
    );
}

/// A domain error passing through transactions unchanged.
#[derive(Debug)]
enum StationError {
    Db(DbError),
    OutOfTolerance(i32),
}

impl From<DbError> for StationError {
    fn from(e: DbError) -> Self {
        StationError::Db(e)
    }
}

impl TransactionError for StationError {
    fn as_db_error(&self) -> Option<&DbError> {
        match self {
            StationError::Db(e) => Some(e),
            StationError::OutOfTolerance(_) => None,
        }
    }
}

/// Records every event a handle emits.
fn recorder() -> (Arc<Mutex<Vec<PoolEvent>>>, Arc<dyn PoolListener>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let listener = Arc::new(move |e: &PoolEvent| sink.lock().unwrap().push(e.clone()));
    (events, listener)
}

fn connection_id(event: &PoolEvent) -> Option<u64> {
    match event {
        PoolEvent::Connect { connection_id, .. }
        | PoolEvent::Acquire { connection_id, .. }
        | PoolEvent::Release { connection_id, .. }
        | PoolEvent::Remove { connection_id, .. } => Some(*connection_id),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// The contract
// ---------------------------------------------------------------------------

/// Parameters travel as values, never as SQL: text that looks like SQL
/// injection is stored and matched verbatim.
async fn parameterized_queries(make: impl MakeDb) {
    let db = make.make(Spec::new(1, 2)).await;
    db.batch_execute("CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL)")
        .await
        .unwrap();
    let hostile = [
        "Robert'); DROP TABLE notes; --",
        "' OR '1'='1",
        "$1",
        "\\'; SELECT pg_sleep(10); --",
        "panel \"ST-01\" ✓ ü",
        "%_*",
        "",
    ];
    for (id, body) in (0i32..).zip(hostile) {
        let n = db
            .execute(
                "INSERT INTO notes (id, body) VALUES ($1, $2)",
                &[&id, &body],
            )
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
    for (id, body) in (0i32..).zip(hostile) {
        let row = db
            .query_one("SELECT id FROM notes WHERE body = $1", &[&body])
            .await
            .unwrap();
        assert_eq!(row.get::<_, i32>(0), id, "{body:?}");
    }
    let stored: Vec<String> = db
        .query("SELECT body FROM notes ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored, hostile);
    assert_eq!(
        count(&db, "notes").await,
        hostile.len() as i64,
        "the table survived"
    );

    // Typed parameters and NULL.
    let none: Option<String> = None;
    let row = db
        .query_one(
            "SELECT $1::int8 + 1, $2::float8 * 2, NOT $3::bool, $4::text IS NULL",
            &[&41i64, &1.25f64, &false, &none],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 42);
    assert_eq!(row.get::<_, f64>(1), 2.5);
    assert!(row.get::<_, bool>(2));
    assert!(row.get::<_, bool>(3));
    assert_eq!(db.stats().in_use, 0);
}

/// `execute` returns affected rows; `query_one`/`query_opt` check row counts.
async fn execute_counts(make: impl MakeDb) {
    let db = make.make(Spec::new(1, 2)).await;
    db.batch_execute("CREATE TABLE t (v int)").await.unwrap();
    let n = db
        .execute("INSERT INTO t SELECT generate_series(1, $1)", &[&3i32])
        .await
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(
        db.execute("UPDATE t SET v = v * 10 WHERE v > $1", &[&1i32])
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        db.execute("DELETE FROM t WHERE v = $1", &[&99i32])
            .await
            .unwrap(),
        0
    );
    assert_eq!(db.execute("SELECT * FROM t", &[]).await.unwrap(), 3);
    db.batch_execute("INSERT INTO t VALUES (100); INSERT INTO t VALUES (101)")
        .await
        .unwrap();
    assert_eq!(count(&db, "t").await, 5);
    let err = db
        .query_one("SELECT v FROM t WHERE v < 0", &[])
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::UnexpectedRowCount { got: 0, .. }),
        "{err}"
    );
    let err = db.query_opt("SELECT v FROM t", &[]).await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::UnexpectedRowCount { got: 5, .. }),
        "{err}"
    );
    assert!(
        db.query_opt("SELECT v FROM t WHERE v = 1", &[])
            .await
            .unwrap()
            .is_some()
    );
}

/// `Ok` commits, and the closure's value comes back.
async fn transaction_commits(make: impl MakeDb) {
    let db = make.make(Spec::new(1, 2)).await;
    db.batch_execute("CREATE TABLE t (v int PRIMARY KEY)")
        .await
        .unwrap();
    let inserted: u64 = db
        .transaction(|tx| {
            Box::pin(async move {
                let a = tx.execute("INSERT INTO t VALUES (1)", &[]).await?;
                let b = tx.execute("INSERT INTO t VALUES (2), (3)", &[]).await?;
                Ok::<_, DbError>(a + b)
            })
        })
        .await
        .unwrap();
    assert_eq!(inserted, 3);
    assert_eq!(count(&db, "t").await, 3);
    assert_eq!(idle_in_transaction(&db).await, 0);
    assert_eq!(db.stats().in_use, 0);
}

/// `Err` rolls back, whether a statement failed or the domain said no, and
/// the error comes back unchanged.
async fn transaction_rolls_back_on_error(make: impl MakeDb) {
    let db = make.make(Spec::new(1, 2)).await;
    db.batch_execute("CREATE TABLE t (v int PRIMARY KEY)")
        .await
        .unwrap();
    db.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap();

    let err = db
        .transaction(|tx| {
            Box::pin(async move {
                tx.execute("INSERT INTO t VALUES (2)", &[]).await?;
                tx.execute("INSERT INTO t VALUES (1)", &[]).await // duplicate
            })
        })
        .await
        .unwrap_err();
    assert!(err.is_unique_violation(), "{err}");
    assert!(!err.trips_breaker());

    let err = db
        .transaction(|tx| {
            Box::pin(async move {
                tx.execute("INSERT INTO t VALUES (3)", &[]).await?;
                Err::<(), _>(StationError::OutOfTolerance(7))
            })
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StationError::OutOfTolerance(7)), "{err:?}");
    assert!(err.as_db_error().is_none());

    // A statement error inside a domain-typed transaction stays visible.
    let err = db
        .transaction(|tx| {
            Box::pin(async move {
                tx.execute("INSERT INTO t VALUES (4)", &[]).await?;
                tx.execute("INSERT INTO missing_table VALUES (1)", &[])
                    .await?;
                Ok::<_, StationError>(())
            })
        })
        .await
        .unwrap_err();
    let inner = err.as_db_error().expect("a database error");
    assert_eq!(inner.code(), Some(&pgline_core::SqlState::UNDEFINED_TABLE));

    assert_eq!(
        count(&db, "t").await,
        1,
        "only the row committed before survives"
    );
    assert_eq!(idle_in_transaction(&db).await, 0);
    assert_eq!(db.stats().in_use, 0);
}

/// A panic inside the closure rolls back; the connection is clean for the
/// next user (or discarded) and the handle keeps working.
async fn transaction_rolls_back_on_panic(make: impl MakeDb) {
    let db = Arc::new(make.make(Spec::new(1, 1)).await);
    db.batch_execute("CREATE TABLE t (v int)").await.unwrap();
    let db2 = Arc::clone(&db);
    let joined = tokio::spawn(async move {
        let _: Result<(), DbError> = db2
            .transaction(|tx| {
                Box::pin(async move {
                    tx.execute("INSERT INTO t VALUES (1)", &[]).await?;
                    panic!("station controller bug");
                })
            })
            .await;
    })
    .await;
    assert!(joined.unwrap_err().is_panic());
    assert_rolled_back(&*db, "t").await;
    db.transaction(|tx| Box::pin(async move { tx.execute("INSERT INTO t VALUES (2)", &[]).await }))
        .await
        .unwrap();
    assert_eq!(count(&*db, "t").await, 1);
}

/// Dropping the transaction future (a timeout, `select!`, an aborted task)
/// rolls back.
async fn transaction_rolls_back_on_cancellation(make: impl MakeDb) {
    let db = make.make(Spec::new(1, 1)).await;
    db.batch_execute("CREATE TABLE t (v int)").await.unwrap();
    let (inserted_tx, inserted_rx) = tokio::sync::oneshot::channel::<()>();
    let inserted_tx = Mutex::new(Some(inserted_tx));
    tokio::select! {
        _ = db.transaction(|tx| {
            let signal = inserted_tx.lock().unwrap().take();
            Box::pin(async move {
                tx.execute("INSERT INTO t VALUES (1)", &[]).await?;
                if let Some(signal) = signal {
                    let _ = signal.send(());
                }
                // Cancelled here, holding the connection mid-transaction.
                std::future::pending::<()>().await;
                Ok::<_, DbError>(())
            })
        }) => panic!("the transaction cannot finish"),
        _ = inserted_rx => {}
    }
    assert_rolled_back(&db, "t").await;

    // And with a timeout around a transaction that is slow between statements.
    let timed_out = tokio::time::timeout(
        Duration::from_millis(200),
        db.transaction(|tx| {
            Box::pin(async move {
                tx.execute("INSERT INTO t VALUES (2)", &[]).await?;
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok::<_, DbError>(())
            })
        }),
    )
    .await;
    assert!(timed_out.is_err());
    assert_rolled_back(&db, "t").await;
}

async fn add_item(tx: &mut dyn Session, name: &str, qty: i32) -> Result<i32, DbError> {
    let row = tx
        .query_one(
            "INSERT INTO items (name, qty) VALUES ($1, $2) RETURNING id",
            &[&name, &qty],
        )
        .await?;
    Ok(row.get(0))
}

async fn bump(tx: &mut dyn Session, id: i32, by: i32) -> Result<u64, DbError> {
    let n = tx
        .execute("UPDATE items SET qty = qty + $2 WHERE id = $1", &[&id, &by])
        .await?;
    // A helper calling a helper with the same session.
    audit(tx, id).await?;
    Ok(n)
}

async fn audit(tx: &mut dyn Session, id: i32) -> Result<(), DbError> {
    tx.execute("INSERT INTO audit (item) VALUES ($1)", &[&id])
        .await?;
    Ok(())
}

async fn total_qty(tx: &mut dyn Session) -> Result<i64, DbError> {
    Ok(tx
        .query_opt("SELECT sum(qty)::int8 FROM items", &[])
        .await?
        .map_or(0, |row| row.get(0)))
}

/// The session can be passed to helper functions, runs several statements,
/// sees its own writes, and nobody else sees them before commit.
async fn session_passed_to_helpers(make: impl MakeDb) {
    let db = Arc::new(make.make(Spec::new(1, 3)).await);
    db.batch_execute(
        "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, qty int NOT NULL);
         CREATE TABLE audit (item int NOT NULL)",
    )
    .await
    .unwrap();
    let outside = Arc::clone(&db);
    let (total, seen_outside) = db
        .transaction(|tx| {
            let outside = Arc::clone(&outside);
            Box::pin(async move {
                let panel = add_item(tx, "panel", 2).await?;
                add_item(tx, "frame", 3).await?;
                assert_eq!(bump(tx, panel, 5).await?, 1);
                let total = total_qty(tx).await?;
                // Another connection of the same handle sees nothing yet.
                let seen: i64 = outside
                    .query_one("SELECT count(*) FROM items", &[])
                    .await?
                    .get(0);
                tx.batch_execute(
                    "UPDATE items SET name = upper(name); UPDATE audit SET item = item",
                )
                .await?;
                Ok::<_, DbError>((total, seen))
            })
        })
        .await
        .unwrap();
    assert_eq!(total, 10, "reads its own writes");
    assert_eq!(seen_outside, 0, "uncommitted rows leaked");
    let names: Vec<String> = db
        .query("SELECT name FROM items ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, ["PANEL", "FRAME"]);
    assert_eq!(count(&*db, "audit").await, 1);
}

/// Statistics after each step: gauges back at rest, counters moved by
/// exactly the acquires made, `created - closed = total` at rest.
async fn statistics_stay_consistent(make: impl MakeDb) {
    let (events, listener) = recorder();
    let db = make.make(Spec::new(1, 3).listener(listener)).await;
    let s = db.stats();
    assert_eq!((s.min, s.max), (1, 3), "{s:?}");
    assert!(s.total >= 1 && s.total <= 3, "{s:?}");
    assert_eq!((s.in_use, s.waiting), (0, 0), "{s:?}");
    assert!(s.created_total >= 1, "{s:?}");
    assert_eq!(s.utilization_percent, 0.0);
    assert_eq!(s.acquire_timeouts_total, 0);

    let mut before = s;
    let steps: [(&str, usize); 6] = [
        ("create", 1),
        ("query", 1),
        ("commit", 1),
        ("rollback", 1),
        ("sql error", 1),
        ("health", 1),
    ];
    for (step, acquires) in steps {
        match step {
            "create" => db.batch_execute("CREATE TABLE t (v int)").await.unwrap(),
            "query" => {
                db.query("SELECT * FROM t", &[]).await.unwrap();
            }
            "commit" => {
                db.transaction(|tx| {
                    Box::pin(async move { tx.execute("INSERT INTO t VALUES (1)", &[]).await })
                })
                .await
                .unwrap();
            }
            "rollback" => {
                let _ = db
                    .transaction(|tx| {
                        Box::pin(async move { tx.execute("INSERT INTO t VALUES ('x')", &[]).await })
                    })
                    .await
                    .unwrap_err();
            }
            "sql error" => {
                db.query("SELEC 1", &[]).await.unwrap_err();
            }
            _ => assert!(db.health(Duration::from_secs(5)).await.healthy),
        }
        assert!(
            eventually(Duration::from_secs(5), || db.stats().in_use == 0).await,
            "{step}: {:?}",
            db.stats()
        );
        let after = db.stats();
        assert_eq!(
            after.acquired_total,
            before.acquired_total + acquires as u64,
            "{step}: {after:?}"
        );
        assert_eq!(after.waiting, 0, "{step}: {after:?}");
        assert!(after.total <= after.max, "{step}: {after:?}");
        assert_eq!(
            after.errors_total,
            before.errors_total,
            "{step}: statement errors are not pool errors; events: {:?}",
            events.lock().unwrap()
        );
        assert_eq!(after.acquire_timeouts_total, 0, "{step}");
        assert!(
            after.wait_time_total_us >= before.wait_time_total_us,
            "{step}"
        );
        assert!(
            after.wait_time_max_us <= after.wait_time_total_us,
            "{step}: {after:?}"
        );
        assert_eq!(after.utilization_percent, 0.0, "{step}");
        before = after;
    }
    assert!(
        eventually(Duration::from_secs(5), || {
            let s = db.stats();
            s.created_total - s.closed_total.total() == u64::from(s.total)
        })
        .await,
        "created - closed != open: {:?}",
        db.stats()
    );
}

/// A listener given at construction sees connect, acquire, release, remove
/// in order, for the same connection.
async fn events_in_order(make: impl MakeDb) {
    let (events, listener) = recorder();
    let db = make.make(Spec::new(0, 1).listener(listener)).await;
    db.query_one("SELECT 1", &[]).await.unwrap();
    db.query_one("SELECT 2", &[]).await.unwrap();
    db.close(Duration::from_secs(2)).await;
    let events = events.lock().unwrap().clone();
    let names: Vec<_> = events.iter().map(PoolEvent::name).collect();
    assert_eq!(
        names,
        [
            "connect", "acquire", "release", "acquire", "release", "remove"
        ],
        "{events:?}"
    );
    let ids: Vec<_> = events.iter().filter_map(connection_id).collect();
    assert_eq!(ids.len(), events.len());
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one connection: {events:?}"
    );
    assert!(
        matches!(
            events.last(),
            Some(PoolEvent::Remove {
                reason: RemoveReason::Closed,
                ..
            })
        ),
        "{events:?}"
    );
}

/// With every connection held, a further call fails with an acquire timeout
/// that says so; the held connections are unaffected.
async fn acquire_timeout_when_all_held(make: impl MakeDb) {
    let db = Arc::new(
        make.make(Spec::new(0, 2).acquire_timeout(Duration::from_millis(300)))
            .await,
    );
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let (held_tx, mut held_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let holders: Vec<_> = (0..2)
        .map(|_| {
            let (db, release_rx, held_tx) = (Arc::clone(&db), release_rx.clone(), held_tx.clone());
            tokio::spawn(async move {
                db.transaction(|tx| {
                    let (mut release, held) = (release_rx.clone(), held_tx.clone());
                    Box::pin(async move {
                        let row = tx.query_one("SELECT 1", &[]).await?;
                        let _ = held.send(());
                        let _ = release.wait_for(|go| *go).await;
                        Ok::<i32, DbError>(row.get(0))
                    })
                })
                .await
            })
        })
        .collect();
    for _ in 0..2 {
        held_rx.recv().await.unwrap();
    }
    let s = db.stats();
    assert_eq!(s.in_use, 2, "{s:?}");
    assert_eq!(s.utilization_percent, 100.0);

    let started = Instant::now();
    let err = db.query("SELECT 1", &[]).await.unwrap_err();
    let waited = started.elapsed();
    assert!(err.is_timeout(), "{err}");
    assert!(err.is_transient() && err.trips_breaker(), "{err}");
    match err.kind() {
        ErrorKind::AcquireTimeout { in_use, max, .. } => {
            assert_eq!((*in_use, *max), (2, 2), "{err}")
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    let s = db.stats();
    assert_eq!(s.acquire_timeouts_total, 1, "{s:?}");
    assert!(s.errors_total >= 1, "{s:?}");
    assert_eq!(s.waiting, 0, "{s:?}");

    release_tx.send(true).unwrap();
    for h in holders {
        assert_eq!(h.await.unwrap().unwrap(), 1);
    }
    assert!(eventually(Duration::from_secs(5), || db.stats().in_use == 0).await);
    db.query_one("SELECT 1", &[]).await.unwrap();
}

/// `close` waits for connections in use, closes everything, and every later
/// call fails with `PoolClosed`.
async fn close_refuses_new_work(make: impl MakeDb) {
    let db = Arc::new(make.make(Spec::new(1, 2)).await);
    db.query_one("SELECT 1", &[]).await.unwrap();
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let (held_tx, mut held_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let holder = {
        let db = Arc::clone(&db);
        tokio::spawn(async move {
            db.transaction(|tx| {
                let (mut release, held) = (release_rx.clone(), held_tx.clone());
                Box::pin(async move {
                    tx.query("SELECT 1", &[]).await?;
                    let _ = held.send(());
                    let _ = release.wait_for(|go| *go).await;
                    Ok::<_, DbError>(())
                })
            })
            .await
        })
    };
    held_rx.recv().await.unwrap();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = release_tx.send(true);
    });
    let report = db.close(Duration::from_secs(5)).await;
    assert_eq!(report.still_in_use, 0, "{report:?}");
    assert_eq!(report.closed_after_return, 1, "{report:?}");
    assert_eq!(report.refused_waiters, 0, "{report:?}");
    assert!(report.elapsed_ms < 4000, "{report:?}");
    holder
        .await
        .unwrap()
        .expect("work started before close finishes");

    let closed = |e: &DbError| matches!(e.kind(), ErrorKind::PoolClosed);
    assert!(closed(&db.query("SELECT 1", &[]).await.unwrap_err()));
    assert!(closed(&db.execute("SELECT 1", &[]).await.unwrap_err()));
    assert!(closed(&db.batch_execute("SELECT 1").await.unwrap_err()));
    let err = db
        .transaction(|tx| Box::pin(async move { tx.execute("SELECT 1", &[]).await }))
        .await
        .unwrap_err();
    assert!(closed(&err), "{err}");
    assert!(err.is_permanent());
    let health = db.health(Duration::from_secs(1)).await;
    assert!(!health.healthy, "{health:?}");
    assert!(
        health.error.as_deref().unwrap_or("").contains("closed"),
        "{health:?}"
    );

    assert!(
        eventually(Duration::from_secs(2), || {
            let s = db.stats();
            s.total == 0 && s.in_use == 0
        })
        .await,
        "{:?}",
        db.stats()
    );
    let s = db.stats();
    assert!(s.closed_total.closed >= 1, "{s:?}");
    assert_eq!(
        s.created_total,
        s.closed_total.total(),
        "every connection opened was closed: {s:?}"
    );
    // Closing again is harmless.
    let again = db.close(Duration::from_millis(100)).await;
    assert_eq!(again.still_in_use, 0);
}

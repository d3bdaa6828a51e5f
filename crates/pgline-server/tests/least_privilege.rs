//! Least privilege in the database: the roles of docs/operations.md, created
//! with the SQL printed there, on a throwaway server. The owner migrates; the
//! runtime role serves the whole API and cannot drop, alter, truncate or
//! create tables (SQLSTATE 42501), nor migrate.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use common::{call, pool};
use pgline_mfg::{PgStore, Store};
use pgline_server::{AppState, app};
use pgline_testkit::PgServer;
use serde_json::json;
use tokio_postgres::error::SqlState;

/// The operations guide, whose SQL this test runs.
const OPERATIONS: &str = include_str!("../../../docs/operations.md");
const SECTION: &str = "## Database roles: least privilege";

/// The ```sql blocks of the least-privilege section, in order.
fn documented_sql() -> Vec<String> {
    let section = OPERATIONS
        .split(SECTION)
        .nth(1)
        .unwrap_or_else(|| panic!("docs/operations.md has no section {SECTION:?}"));
    let section = section.split("\n## ").next().unwrap_or_default();
    section
        .split("```sql\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap_or_default().to_owned())
        .collect()
}

/// `sql` with the documented names (`pgline_owner`, `pgline_app`, `plant`)
/// replaced, whole identifiers only.
fn renamed(sql: &str, names: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let replacement = names.iter().find(|(from, _)| *from == word.as_str());
        out.push_str(replacement.map_or(word.as_str(), |(_, to)| to));
        word.clear();
    };
    for c in sql.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Runs each statement of `sql` on its own (`CREATE DATABASE` cannot run in
/// the implicit transaction of a multi-statement query).
async fn run_statements(client: &tokio_postgres::Client, sql: &str) {
    let without_comments: String = sql
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    for statement in without_comments.split(';') {
        let statement = statement.trim();
        if !statement.is_empty() {
            client
                .batch_execute(statement)
                .await
                .unwrap_or_else(|e| panic!("documented SQL failed: {statement}: {e}"));
        }
    }
}

async fn connect_as(config: tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

async fn assert_refused(client: &tokio_postgres::Client, sql: &str) {
    let error = client
        .batch_execute(sql)
        .await
        .expect_err(&format!("the runtime role may run {sql}"));
    assert_eq!(
        error.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{sql}: {error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_role_serves_the_api_and_cannot_change_the_schema() {
    let server = PgServer::shared();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let suffix = format!("{}_{nanos}", std::process::id());
    let (owner, runtime, database) = (
        format!("lp_owner_{suffix}"),
        format!("lp_app_{suffix}"),
        format!("lp_plant_{suffix}"),
    );
    let names = [
        ("pgline_owner", owner.as_str()),
        ("pgline_app", runtime.as_str()),
        ("plant", database.as_str()),
    ];
    let blocks = documented_sql();
    assert_eq!(
        blocks.len(),
        3,
        "docs/operations.md: expected the SQL of steps 1 to 3"
    );

    // Step 1 and 2, as the superuser.
    let admin = server.connect("postgres").await.unwrap();
    run_statements(&admin, &renamed(&blocks[0], &names)).await;
    let admin_in_db = server.connect(&database).await.unwrap();
    run_statements(&admin_in_db, &renamed(&blocks[1], &names)).await;

    // The owner migrates; then step 3 (it needs the tables).
    let mut owner_config = server.config(&database);
    owner_config.user(&owner);
    let owner_db = pool(owner_config.clone()).await;
    let report = pgline_mfg::migrate(&owner_db).await.unwrap();
    assert_eq!(report.applied, [1]);
    run_statements(&admin_in_db, &renamed(&blocks[2], &names)).await;

    // The runtime role serves the whole API.
    let mut runtime_config = server.config(&database);
    runtime_config.user(&runtime);
    let runtime_db = pool(runtime_config.clone()).await;
    let store = PgStore::new(runtime_db.clone());
    let app = app(AppState::new(runtime_db.clone(), Store::Postgres(store)));
    let order = json!({"order_number": "MO-LP", "panel_type": "FR4",
        "panels": [{"barcode": "LP-1"}, {"barcode": "LP-2"}, {"barcode": "LP-3"}]});
    let answer = call(&app, "POST", "/api/orders", Some(&order), None).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let answer = call(&app, "POST", "/api/orders", Some(&order), None).await;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.body);
    let panel = json!({"barcode": "LP-9", "panel_type": "x'); DROP TABLE panels; --"});
    let answer = call(&app, "POST", "/api/panels", Some(&panel), None).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    for (barcode, event, station) in [
        ("LP-1", "SCANNED", "ST-01"),
        ("LP-1", "PASSED", "ST-02"),
        ("LP-1", "COMPLETED", "ST-03"),
        ("LP-2", "FAILED", "ST-04"),
        ("LP-3", "SCANNED", "ST-05"),
    ] {
        let body = json!({"event_type": event, "station": station});
        let uri = format!("/api/panels/{barcode}/events");
        let answer = call(&app, "POST", &uri, Some(&body), None).await;
        assert_eq!(
            answer.status,
            StatusCode::CREATED,
            "{uri} {event}: {}",
            answer.body
        );
    }
    let unknown = json!({"event_type": "SCANNED", "station": "ST-99"});
    let answer = call(
        &app,
        "POST",
        "/api/panels/LP-3/events",
        Some(&unknown),
        None,
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        answer.body
    );
    let answer = call(&app, "GET", "/api/orders/MO-LP", None, None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["status"], "IN_PROGRESS", "{}", answer.body);
    for status in ["PENDING", "IN_PROGRESS", "COMPLETED", "FAILED"] {
        let uri = format!("/api/panels?status={status}");
        let answer = call(&app, "GET", &uri, None, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{uri}: {}", answer.body);
        assert_eq!(
            answer.body.as_array().unwrap().len(),
            1,
            "{uri}: {}",
            answer.body
        );
    }
    let answer = call(&app, "GET", "/status", None, None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["database"]["healthy"], true, "{}", answer.body);
    assert_eq!(answer.body["manufacturing"]["orders"], 1, "{}", answer.body);
    for path in ["/health", "/ready", "/health/database", "/metrics", "/live"] {
        let answer = call(&app, "GET", path, None, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
    }

    // ... and cannot change the schema.
    let runtime_client = connect_as(runtime_config.clone()).await;
    for sql in [
        "DROP TABLE panels",
        "ALTER TABLE panels ADD COLUMN x int",
        "ALTER TABLE panels DROP CONSTRAINT panels_barcode_format",
        "TRUNCATE panels",
        "CREATE TABLE intruder (x int)",
        "CREATE INDEX intruder_idx ON panels (panel_type)",
        "DROP TABLE schema_migrations",
        "CREATE SCHEMA intruder",
        // Step 3: the history is append-only, the stations read-only.
        "DELETE FROM barcode_events",
        "UPDATE barcode_events SET station = 'ST-02'",
        "INSERT INTO stations (id, name) VALUES ('ST-66', 'rogue')",
    ] {
        assert_refused(&runtime_client, sql).await;
    }
    // Nor migrate: pgline-server must migrate as the owner.
    let error = pgline_mfg::migrate(&runtime_db).await.unwrap_err();
    assert!(
        format!("{error:?}").contains("42501") || format!("{error}").contains("permission denied"),
        "{error:?}"
    );

    // Default privileges cover what future migrations create.
    let owner_client = connect_as(owner_config).await;
    owner_client
        .batch_execute("CREATE TABLE later_migration (id serial PRIMARY KEY, note text)")
        .await
        .unwrap();
    runtime_client
        .batch_execute("INSERT INTO later_migration (note) VALUES ('ok'); UPDATE later_migration SET note = 'still ok'")
        .await
        .unwrap();
    assert_refused(&runtime_client, "DROP TABLE later_migration").await;
    let tables: i64 = runtime_client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = $1",
            &[&owner],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 6, "every table belongs to the owner");
}

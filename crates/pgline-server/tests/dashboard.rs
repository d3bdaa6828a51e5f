//! The dashboard in headless Chromium: it renders with live numbers, and a
//! screenshot is saved under `target/`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use pgline_async::{PgManager, PgPool, PoolOptions};
use pgline_mfg::{ManufacturingStore, NewEvent, NewOrder, PgStore, Store};
use pgline_resilience::{ResilienceOptions, Resilient};
use pgline_server::{AppState, breaker_view, serve};
use pgline_testkit::PgServer;

fn chromium() -> PathBuf {
    for candidate in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            let path = PathBuf::from(dir).join(candidate);
            if path.is_file() {
                return path;
            }
        }
    }
    panic!(
        "headless Chromium is needed for the dashboard test and was not found on PATH; \
         install it with `apt-get install chromium` (.ci/run does this on CI machines)"
    );
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

fn run_chromium(args: &[String]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    let mut command = Command::new(chromium());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args);
    command.output().expect("chromium runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_renders_live_numbers_in_headless_chromium() {
    let server = PgServer::shared();
    let name = server.fresh_database().await.unwrap();
    let pool = PgPool::new(
        PgManager::new(server.config(&name), None, 100),
        PoolOptions::new(2, 8),
    )
    .unwrap();
    pool.initialize().await.unwrap();
    let db = Arc::new(Resilient::new(pool, ResilienceOptions::default()));
    let store = PgStore::new(db.clone());
    store.migrate().await.unwrap();
    for i in 0..3 {
        store
            .create_order(&NewOrder::new(
                format!("MO-{i}"),
                "FR4",
                [format!("P-{i}-A"), format!("P-{i}-B")],
            ))
            .await
            .unwrap();
        store
            .record_event(
                &format!("P-{i}-A"),
                &NewEvent::new(pgline_mfg::EventType::Scanned, "ST-03"),
            )
            .await
            .unwrap();
    }
    let breaker = db.breaker().clone();
    let mut state = AppState::new(db.clone(), Store::Postgres(store));
    state.breaker = Some(Arc::new(move || breaker_view(&breaker)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = pgline_config::Config::defaults(pgline_config::Profile::Test);
    let serving = tokio::spawn(async move {
        serve(&config, Some(listener), state, async move {
            let _ = stopped.await;
        })
        .await
    });

    let dom_args = vec![
        "--virtual-time-budget=5000".to_string(),
        "--dump-dom".to_string(),
        url.clone(),
    ];
    let output = tokio::task::spawn_blocking(move || run_chromium(&dom_args))
        .await
        .unwrap();
    let dom = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        dom.contains(r#"id="db">healthy<"#),
        "database not shown healthy:\n{dom}"
    );
    assert!(
        dom.contains(r#"id="breaker">closed<"#),
        "breaker state missing:\n{dom}"
    );
    assert!(
        dom.contains(r#"id="orders">3<"#),
        "order count missing:\n{dom}"
    );
    assert!(
        dom.contains("<td>ST-03</td><td>3</td>"),
        "station activity missing:\n{dom}"
    );
    assert!(
        dom.contains("data-updated="),
        "the page never refreshed from /status:\n{dom}"
    );

    let shot = target_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let shot_args = vec![
        "--virtual-time-budget=5000".to_string(),
        "--window-size=1280,900".to_string(),
        format!("--screenshot={}", shot.display()),
        url,
    ];
    let output = tokio::task::spawn_blocking(move || run_chromium(&shot_args))
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "chromium screenshot failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10_000,
        "screenshot {} is missing or empty ({size} bytes)",
        shot.display()
    );
    println!("dashboard screenshot: {}", shot.display());

    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}

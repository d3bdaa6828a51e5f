//! `init` installs the process-wide subscriber, so it gets a test binary of
//! its own. With a collector that is not listening, the service runs on and
//! the failure is reported in one warn line.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "it/common.rs"]
#[allow(dead_code)]
mod common;

use std::time::{Duration, Instant};

use pgline_async::PoolOptions;
use pgline_core::Database;
use pgline_telemetry::{LogFormat, TelemetryError, Traced, init_with_writer};
use tracing::Instrument as _;

use common::{Capture, bounded, fresh_config};

const VALUE: &str = "param-Platypus-9981";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_is_reported_once_and_the_service_runs_on() {
    bounded("the init test", async {
        // A port nobody listens on.
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let config = fresh_config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{dead}")),
            ("LOG_LEVEL", "debug".to_owned()),
        ])
        .await;
        let logs = Capture::default();
        let guard = init_with_writer(&config, LogFormat::Json, logs.clone()).unwrap();
        assert_eq!(
            guard.telemetry().endpoint(),
            Some(format!("http://{dead}").as_str())
        );

        let options = PoolOptions::from_config(&config.pool)
            .with_listener(guard.telemetry().pool_listener("init"));
        let pool = common::pool(&config, options).await;
        let stats = pool.clone();
        guard.metrics().register_pool("init", move || stats.stats());
        let db = Traced::from_config(pool.clone(), &config).with_metrics(guard.metrics());

        let started = Instant::now();
        for station in 0..200 {
            db.query("SELECT $1::text", &[&VALUE])
                .instrument(tracing::info_span!("station request", station))
                .await
                .unwrap();
        }
        println!(
            "200 traced statements with an unreachable collector: {:?}",
            started.elapsed()
        );

        // Both exports fail (the SDK says so to the caller), twice over.
        for _ in 0..2 {
            let flushed = tokio::task::block_in_place(|| guard.telemetry().force_flush());
            assert!(flushed.is_err(), "nothing listens at {dead}");
            db.execute("SELECT 1", &[]).await.unwrap();
        }
        let shutdown = std::time::Instant::now();
        let _ = guard.shutdown().await;
        println!(
            "shutdown with an unreachable collector: {:?}",
            shutdown.elapsed()
        );
        pool.close(Duration::from_secs(5)).await;

        let text = logs.text();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        let field = |line: &serde_json::Value, key: &str| {
            line.get(key)
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let export_warnings: Vec<_> = lines
            .iter()
            .filter(|l| {
                field(l, "level") == "WARN" && field(l, "target") == "pgline_telemetry::export"
            })
            .collect();
        assert_eq!(
            export_warnings.len(),
            1,
            "one warn line about export in:\n{text}"
        );
        println!("the export warning: {}", export_warnings[0]);
        if std::env::var_os("PGLINE_SHOW_LOGS").is_some() {
            println!("{text}");
        }
        assert!(field(export_warnings[0], "message").contains("OpenTelemetry export failed"));
        assert!(
            lines
                .iter()
                .all(|l| !field(l, "target").starts_with("opentelemetry")),
            "the SDK's own logs stay out:\n{text}"
        );
        assert!(
            lines
                .iter()
                .any(|l| field(l, "message") == "exporting traces and metrics over OTLP/gRPC")
        );
        let finished = lines
            .iter()
            .filter(|l| field(l, "message") == "statement finished")
            .count();
        assert!(
            finished >= 200,
            "every statement's duration at debug: {finished}"
        );
        // tokio-postgres logs parameter values at debug: kept out unless asked for.
        assert!(!text.contains(VALUE), "a parameter value leaked:\n{text}");

        // The global subscriber is taken.
        let again = init_with_writer(&config, LogFormat::Json, Capture::default());
        assert!(matches!(again, Err(TelemetryError::SubscriberInstalled(_))));
    })
    .await;
}

//! Spans and metrics reach an OTLP collector with the conventions' attributes
//! and the right parent/child links.

use std::collections::BTreeSet;
use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use pgline_async::PoolOptions;
use pgline_core::{Database, DbError};
use pgline_telemetry::{LogFormat, Telemetry, Traced};
use pgline_testkit::otlp::{Receiver, attr};
use tracing::Instrument as _;
use tracing::instrument::WithSubscriber as _;

use crate::common::{Capture, bounded, dispatch, fresh_config, pool, serial};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn named<'a>(spans: &'a [(String, Span)], name: &str) -> Vec<&'a Span> {
    spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.name == name)
        .collect()
}

fn one<'a>(spans: &'a [(String, Span)], name: &str) -> &'a Span {
    let found = named(spans, name);
    assert_eq!(
        found.len(),
        1,
        "expected one span named {name:?}, got {}: {:?}",
        found.len(),
        spans.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
    );
    found[0]
}

/// A caller's trace: version, trace id, parent span id, sampled.
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn by_text<'a>(spans: &'a [(String, Span)], text: &str) -> &'a Span {
    spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| attr(&s.attributes, "db.query.text").as_deref() == Some(text))
        .unwrap_or_else(|| {
            let all: Vec<_> = spans
                .iter()
                .map(|(_, s)| (&s.name, attr(&s.attributes, "db.query.text")))
                .collect();
            panic!("no span with db.query.text {text:?} in {all:#?}")
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_and_transactions_arrive_as_linked_spans_with_metrics() {
    bounded("the OTLP test", async {
        let _serial = serial().await;
        let (receiver, addr) = Receiver::start().await.unwrap();
        let config = fresh_config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}")),
            ("OTEL_SERVICE_NAME", "pgline-it".to_owned()),
        ])
        .await;
        let db_name = config.database.name.clone();
        // Every acquire gets a span (by default only waits of 1 ms and more).
        let telemetry = Telemetry::builder(&config.telemetry)
            .acquire_span_threshold(Duration::ZERO)
            .build()
            .unwrap();
        assert!(telemetry.is_tracing());
        let logs = Capture::default();
        let subscriber = dispatch(
            telemetry
                .subscriber(&config.log, LogFormat::Text, logs.clone())
                .unwrap(),
        );

        let pool_name = "it-otlp";
        let pool = pool(
            &config,
            PoolOptions::new(1, 4).with_listener(telemetry.pool_listener(pool_name)),
        )
        .await;
        let stats = pool.clone();
        telemetry
            .metrics()
            .register_pool(pool_name, move || stats.stats());
        telemetry.metrics().register_breaker(pool_name, || 0);
        let db = Traced::from_config(pool.clone(), &config).with_metrics(telemetry.metrics());

        // The request's span is made under the subscriber, like a server's would be.
        let work = async {
            let request =
                tracing::info_span!("station request", otel.kind = "server", station = "ST-01");
            // The station sent its own trace context: the request continues it.
            let mut headers = http::HeaderMap::new();
            headers.insert("traceparent", http::HeaderValue::from_static(TRACEPARENT));
            assert!(pgline_telemetry::set_parent_from_headers(
                &request, &headers
            ));
            async {
                db.batch_execute(
                    "CREATE TABLE panels (barcode text PRIMARY KEY, status text NOT NULL)",
                )
                .await
                .unwrap();
                db.execute(
                    "INSERT INTO panels (barcode, status) VALUES ($1, $2)",
                    &[&"P-OTLP-1", &"PENDING"],
                )
                .await
                .unwrap();
                let row = db
                    .query_one(
                        "SELECT status FROM panels WHERE barcode = $1",
                        &[&"P-OTLP-1"],
                    )
                    .await
                    .unwrap();
                assert_eq!(row.get::<_, String>(0), "PENDING");
                let duplicate = db
                    .execute(
                        "INSERT INTO panels (barcode, status) VALUES ($1, $2)",
                        &[&"P-OTLP-1", &"PENDING"],
                    )
                    .await
                    .unwrap_err();
                assert!(duplicate.is_unique_violation());
                db.transaction(|tx| {
                    Box::pin(async move {
                        tx.execute(
                            "UPDATE panels SET status = 'IN_PROGRESS' WHERE barcode = $1",
                            &[&"P-OTLP-1"],
                        )
                        .await?;
                        tx.query("SELECT count(*) FROM panels", &[]).await?;
                        Ok::<_, DbError>(())
                    })
                })
                .await
                .unwrap();
            }
            .instrument(request)
            .await
        };
        work.with_subscriber(subscriber).await;

        let telemetry = tokio::task::spawn_blocking(move || {
            telemetry.force_flush().unwrap();
            telemetry
        })
        .await
        .unwrap();

        let spans = receiver.spans();
        assert!(spans.iter().all(|(service, _)| service == "pgline-it"));
        let root = one(&spans, "station request");
        let trace_id = root.trace_id.clone();
        assert_eq!(
            hex(&trace_id),
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "the caller's trace"
        );
        assert_eq!(
            hex(&root.parent_span_id),
            "00f067aa0ba902b7",
            "the caller's span"
        );
        // Connections are opened by the pool's own tasks: each `connect` is
        // a trace of its own. Everything else is the request's.
        let connects = named(&spans, "connect");
        assert!(!connects.is_empty(), "the pool's first connection");
        for connect in &connects {
            assert_eq!(
                attr(&connect.attributes, "db.client.connection.pool.name").as_deref(),
                Some(pool_name)
            );
            assert!(connect.end_time_unix_nano >= connect.start_time_unix_nano);
        }
        assert!(
            spans
                .iter()
                .all(|(_, s)| s.trace_id == trace_id || s.name == "connect"),
            "one station request is one trace"
        );

        // Statements outside the transaction: children of the request.
        let select = by_text(&spans, "SELECT status FROM panels WHERE barcode = $1");
        assert_eq!(select.name, format!("SELECT {db_name}"));
        assert_eq!(select.parent_span_id, root.span_id);
        assert_eq!(select.kind, SpanKind::Client as i32);
        let a = |key| attr(&select.attributes, key);
        assert_eq!(a("db.system.name").as_deref(), Some("postgresql"));
        assert_eq!(a("db.namespace").as_deref(), Some(db_name.as_str()));
        assert_eq!(a("db.operation.name").as_deref(), Some("SELECT"));
        assert_eq!(
            a("db.query.text").as_deref(),
            Some("SELECT status FROM panels WHERE barcode = $1")
        );
        assert_eq!(a("server.address").as_deref(), Some("127.0.0.1"));
        assert_eq!(
            a("server.port"),
            Some(pgline_testkit::PgServer::shared().port().to_string())
        );
        assert_eq!(a("error.type"), None);
        assert_eq!(a("db.response.status_code"), None);

        let create = one(&spans, &format!("CREATE {db_name}"));
        assert_eq!(create.parent_span_id, root.span_id);

        let inserts = named(&spans, &format!("INSERT {db_name}"));
        assert_eq!(inserts.len(), 2);
        let failed: Vec<_> = inserts
            .iter()
            .filter(|s| attr(&s.attributes, "error.type").is_some())
            .collect();
        assert_eq!(failed.len(), 1, "one INSERT failed");
        let failed = failed[0];
        assert_eq!(
            attr(&failed.attributes, "db.response.status_code").as_deref(),
            Some("23505")
        );
        assert_eq!(
            attr(&failed.attributes, "error.type").as_deref(),
            Some("23505")
        );
        let status = failed.status.as_ref().unwrap();
        assert_eq!(status.code, StatusCode::Error as i32);
        assert!(status.message.contains("23505"), "{}", status.message);

        // The transaction: a child of the request; its statements, children of it.
        let transaction = one(&spans, &format!("TRANSACTION {db_name}"));
        assert_eq!(transaction.parent_span_id, root.span_id);
        assert_eq!(
            attr(&transaction.attributes, "db.operation.name").as_deref(),
            Some("TRANSACTION")
        );
        let update = one(&spans, &format!("UPDATE {db_name}"));
        assert_eq!(update.parent_span_id, transaction.span_id);
        let count = by_text(&spans, "SELECT count(*) FROM panels");
        assert_eq!(count.parent_span_id, transaction.span_id);

        // Acquire spans: one per borrowed connection, a child of the statement
        // or transaction that waited.
        let pooled: BTreeSet<_> = spans
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.kind == SpanKind::Client as i32 && s.parent_span_id == root.span_id)
            .map(|s| s.span_id.clone())
            .collect();
        assert_eq!(pooled.len(), 5, "CREATE, two INSERTs, SELECT, TRANSACTION");
        let acquires = named(&spans, "acquire");
        let parents: BTreeSet<_> = acquires.iter().map(|a| a.parent_span_id.clone()).collect();
        assert_eq!(
            (acquires.len(), parents),
            (pooled.len(), pooled),
            "one acquire under each pooled operation"
        );
        for acquire in &acquires {
            assert_eq!(
                attr(&acquire.attributes, "db.client.connection.pool.name").as_deref(),
                Some(pool_name)
            );
            assert!(acquire.end_time_unix_nano >= acquire.start_time_unix_nano);
        }

        // Metrics.
        let names: BTreeSet<String> = receiver.metrics().into_iter().map(|m| m.name).collect();
        for expected in [
            "db.client.operation.duration",
            "db.client.connection.count",
            "db.client.connection.idle.max",
            "db.client.connection.idle.min",
            "db.client.connection.max",
            "db.client.connection.pending_requests",
            "db.client.connection.timeouts",
            "db.client.connection.create_time",
            "db.client.connection.wait_time",
            "db.client.connection.use_time",
            "pgline.breaker.state",
        ] {
            assert!(
                names.contains(expected),
                "{expected} missing from {names:?}"
            );
        }

        // Logs: each statement's duration at debug only when asked for.
        assert!(!logs.text().contains("statement finished"));

        tokio::task::spawn_blocking(move || telemetry.shutdown())
            .await
            .unwrap()
            .unwrap();
        pool.close(Duration::from_secs(5)).await;
    })
    .await;
}

/// Telemetry exports on threads of its own: flushing, and dropping the
/// guard, from a current-thread runtime's only thread completes (it used to
/// need the caller's runtime, and would have deadlocked).
#[test]
fn flushing_from_a_current_thread_runtime_completes() {
    // The collector on a runtime of its own.
    let collector = tokio::runtime::Runtime::new().unwrap();
    let (receiver, addr) = collector.block_on(Receiver::start()).unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let config = pgline_config::Config::from_vars([
                ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}")),
                ("OTEL_SERVICE_NAME", "pgline-current-thread".to_owned()),
            ])
            .unwrap();
            let telemetry = Telemetry::builder(&config.telemetry)
                .without_metric_export()
                .build()
                .unwrap();
            let subscriber = dispatch(
                telemetry
                    .subscriber(&config.log, LogFormat::Text, Capture::default())
                    .unwrap(),
            );
            async { tracing::info_span!("on a current-thread runtime").in_scope(|| {}) }
                .with_subscriber(subscriber)
                .await;
            // Blocks this runtime's only thread.
            telemetry.force_flush().unwrap();
            telemetry.shutdown().unwrap();
        });
        done_tx.send(()).unwrap();
    });
    done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("flushing from a current-thread runtime did not complete");
    worker.join().unwrap();
    assert_eq!(
        named(&receiver.spans(), "on a current-thread runtime").len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_the_collector_cannot_take_yet_is_retried() {
    bounded("the OTLP retry test", async {
        let (receiver, addr) = Receiver::start().await.unwrap();
        let config =
            fresh_config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"))]).await;
        let db_name = config.database.name.clone();
        let telemetry = Telemetry::builder(&config.telemetry)
            .without_metric_export()
            .build()
            .unwrap();
        let pool = pool(&config, PoolOptions::new(1, 2)).await;
        let db = Traced::from_config(pool.clone(), &config).with_metrics(telemetry.metrics());
        db.execute("SELECT 1", &[]).await.unwrap();
        // Two refusals, then the third attempt lands: within the retries.
        receiver.refuse_next(2);
        tokio::task::block_in_place(|| telemetry.force_flush()).unwrap();
        assert_eq!(receiver.refusals_left(), 0);
        assert_eq!(
            named(&receiver.spans(), &format!("SELECT {db_name}")).len(),
            1
        );

        // A collector that keeps refusing: the export gives up, and says so.
        db.execute("SELECT 2", &[]).await.unwrap();
        receiver.refuse_next(100);
        let error = tokio::task::block_in_place(|| telemetry.force_flush()).unwrap_err();
        assert!(format!("{error:?}").contains("Unavailable"), "{error:?}");
        assert_eq!(
            receiver.refusals_left(),
            96,
            "one attempt and three retries"
        );
        pool.close(Duration::from_secs(5)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_over_its_limit_is_waited_for_as_long_as_it_asks_and_no_more() {
    bounded("the OTLP throttling test", async {
        let (receiver, addr) = Receiver::start().await.unwrap();
        let config =
            fresh_config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"))]).await;
        let db_name = config.database.name.clone();
        let telemetry = Telemetry::builder(&config.telemetry)
            .without_metric_export()
            .build()
            .unwrap();
        let pool = pool(&config, PoolOptions::new(1, 2)).await;
        let db = Traced::from_config(pool.clone(), &config).with_metrics(telemetry.metrics());

        // RESOURCE_EXHAUSTED with RetryInfo: the second attempt comes after
        // the collector's delay, far longer than the exporter's own first
        // backoff (100–200 ms), and lands.
        let hint = Duration::from_millis(900);
        db.execute("SELECT 1", &[]).await.unwrap();
        receiver.throttle_next(1, Some(hint));
        tokio::task::block_in_place(|| telemetry.force_flush()).unwrap();
        let arrivals = receiver.arrivals();
        assert_eq!(arrivals.len(), 2, "one refused attempt, one accepted");
        let waited = arrivals[1] - arrivals[0];
        assert!(waited >= hint, "retried after {waited:?}, asked {hint:?}");
        assert_eq!(
            named(&receiver.spans(), &format!("SELECT {db_name}")).len(),
            1
        );

        // Without RetryInfo the collector gives no sign it will recover:
        // the batch is not sent again.
        db.execute("SELECT 2", &[]).await.unwrap();
        receiver.throttle_next(5, None);
        let error = tokio::task::block_in_place(|| telemetry.force_flush()).unwrap_err();
        assert!(
            format!("{error:?}").contains("ResourceExhausted"),
            "{error:?}"
        );
        assert_eq!(receiver.refusals_left(), 4, "one attempt, no retry");

        // A delay past the export timeout (5 s): dropped at once, and the
        // error says why, naming the delay as asked (an hour), not as capped.
        db.execute("SELECT 3", &[]).await.unwrap();
        receiver.throttle_next(5, Some(Duration::from_secs(3600)));
        let error = tokio::task::block_in_place(|| telemetry.force_flush()).unwrap_err();
        assert!(
            format!("{error:?}").contains("asked to wait 3600s"),
            "{error:?}"
        );
        assert_eq!(receiver.refusals_left(), 4, "not waited for, not retried");
        pool.close(Duration::from_secs(5)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_given_in_code_reach_the_collector_with_both_signals_and_nowhere_else() {
    bounded("the OTLP headers test", async {
        const TOKEN: &str = "Bearer t0ken-7f3a9c";
        let (receiver, addr) = Receiver::start().await.unwrap();
        let config =
            fresh_config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"))]).await;
        let builder = Telemetry::builder(&config.telemetry)
            .otlp_header("Authorization", TOKEN)
            .otlp_header("x-plant", "line-7");
        assert!(
            !format!("{builder:?}").contains("t0ken-7f3a9c"),
            "{builder:?}"
        );
        let telemetry = builder.build().unwrap();
        assert!(!format!("{telemetry:?}").contains("t0ken-7f3a9c"));
        let logs = Capture::default();
        let subscriber = dispatch(
            telemetry
                .subscriber(&config.log, LogFormat::Json, logs.clone())
                .unwrap(),
        );
        let pool = pool(&config, PoolOptions::new(1, 2)).await;
        let db = Traced::from_config(pool.clone(), &config).with_metrics(telemetry.metrics());
        async { db.execute("SELECT 1", &[]).await.unwrap() }
            .with_subscriber(subscriber)
            .await;
        tokio::task::block_in_place(|| telemetry.force_flush()).unwrap();
        let (traces, metrics) = receiver.headers();
        for (signal, headers) in [("traces", &traces), ("metrics", &metrics)] {
            let get = |key: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.as_str())
            };
            assert_eq!(get("authorization"), Some(TOKEN), "{signal}: {headers:?}");
            assert_eq!(get("x-plant"), Some("line-7"), "{signal}: {headers:?}");
        }
        assert!(
            !logs.text().contains("t0ken-7f3a9c"),
            "the token was logged"
        );
        assert!(
            !receiver.dump().contains("t0ken-7f3a9c"),
            "the token was exported"
        );

        let refused = Telemetry::builder(&config.telemetry)
            .otlp_header("bad key", "v")
            .build()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(refused.contains("\"bad key\""), "{refused}");
        pool.close(Duration::from_secs(5)).await;
    })
    .await;
}

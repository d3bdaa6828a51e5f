//! The service end to end with trace export on: a station's request sent with
//! a W3C `traceparent` arrives at an OTLP collector as a server span of the
//! caller's trace, with the database spans under it, and no concrete path,
//! order number or barcode anywhere.
//!
//! A binary of its own: the test installs the process-wide subscriber
//! (`pgline_telemetry::init_with_writer`), as `main.rs` does.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use common::{Capture, http, http_with};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use pgline_telemetry::LogFormat;
use pgline_testkit::PgServer;
use pgline_testkit::otlp::{Receiver, attr};

/// The station's trace: version, trace id, the station's span id, sampled.
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const STATION_SPAN_ID: &str = "00f067aa0ba902b7";
/// Distinctive values that must appear in no span, metric or log line.
const ORDER_NUMBER: &str = "MO-Tapir-5531";
const BARCODE: &str = "P-Axolotl-8817";
const TOKEN: &str = "st01-Pangolin-token-3f9c2a7e1b";
const SERVICE: &str = "pgline-tracing-test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_station_request_is_one_trace_under_its_traceparent() {
    match tokio::time::timeout(Duration::from_secs(90), station_request_is_one_trace()).await {
        Ok(()) => {}
        Err(_) => panic!("the tracing test did not finish within 90 s"),
    }
}

async fn station_request_is_one_trace() {
    let (receiver, collector) = Receiver::start().await.unwrap();
    let server = PgServer::shared();
    let db_name = server.fresh_database().await.unwrap();
    let url = server.url(&db_name);
    let mut stations = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        stations,
        "ST-01:{}",
        pgline_server::hash_token(TOKEN).to_hex()
    )
    .unwrap();
    let stations_path = stations.path().to_str().unwrap().to_owned();
    let endpoint = format!("http://{collector}");
    let config = pgline_config::Config::from_vars([
        ("DATABASE_URL", url.as_str()),
        ("NODE_ENV", "test"),
        ("STATION_TOKENS_FILE", stations_path.as_str()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_SERVICE_NAME", SERVICE),
    ])
    .unwrap();

    let logs = Capture::default();
    let guard = pgline_telemetry::init_with_writer(&config, LogFormat::Json, logs.clone()).unwrap();
    assert!(guard.telemetry().is_tracing(), "trace export is on");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(pgline_server::run_with(
        config,
        Some(listener),
        async move {
            let _ = stopped.await;
        },
        Some(guard.metrics().clone()),
    ));
    wait_until_ready(addr).await;

    // The station's request: its own trace context and its token.
    let order = format!(
        r#"{{"order_number":"{ORDER_NUMBER}","panel_type":"FR4","panels":[{{"barcode":"{BARCODE}"}}]}}"#
    );
    let (status, body) = http_with(
        addr,
        "POST",
        "/api/orders",
        &[
            ("traceparent", TRACEPARENT),
            ("authorization", &format!("Bearer {TOKEN}")),
        ],
        Some(&order),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // A lookup without trace context: a trace of its own, rooted at the
    // request, whose path holds the order number.
    let (status, body) = http_with(
        addr,
        "GET",
        &format!("/api/orders/{ORDER_NUMBER}"),
        &[("authorization", &format!("Bearer {TOKEN}"))],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Refused requests are logged (and traced) by route, never by path: the
    // barcode and order number in these paths must not leave the process.
    let (status, _) = http_with(
        addr,
        "GET",
        &format!("/api/orders/{ORDER_NUMBER}"),
        &[("authorization", "Bearer not-a-token-of-this-plant")],
        None,
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = http_with(
        addr,
        "POST",
        &format!("/api/panels/{BARCODE}/events"),
        &[("authorization", &format!("Bearer {TOKEN}"))],
        Some(r#"{"event_type":"SCANNED","station":"ST-99"}"#),
    )
    .await;
    assert_eq!(status, 403, "{body}");

    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    // Flushes the batch processor: every span ended so far is exported.
    guard.shutdown().await.unwrap();

    let spans: Vec<Span> = receiver
        .spans()
        .into_iter()
        .map(|(service, span)| {
            assert_eq!(service, SERVICE, "the resource of {:?}", span.name);
            span
        })
        .collect();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    let by_id: HashMap<&[u8], &Span> = spans.iter().map(|s| (s.span_id.as_slice(), s)).collect();

    // The request span: a server span continuing the station's trace.
    let request = one(&spans, "POST /api/orders");
    println!("{}", tree(&spans, request));
    assert_eq!(request.kind, SpanKind::Server as i32);
    assert_eq!(hex(&request.trace_id), TRACE_ID, "the station's trace");
    assert_eq!(
        hex(&request.parent_span_id),
        STATION_SPAN_ID,
        "a child of the station's span"
    );
    let a = |key| attr(&request.attributes, key);
    assert_eq!(a("http.route").as_deref(), Some("/api/orders"));
    assert_eq!(a("http.request.method").as_deref(), Some("POST"));
    assert_eq!(a("http.response.status_code").as_deref(), Some("201"));
    assert_eq!(a("error.type"), None);
    assert_ne!(
        request.status.as_ref().map(|s| s.code),
        Some(StatusCode::Error as i32)
    );

    // The database spans of the request: the same trace, and each one's
    // chain of parents leads to the request span.
    let in_trace: Vec<&Span> = spans
        .iter()
        .filter(|s| s.trace_id == request.trace_id && s.span_id != request.span_id)
        .collect();
    for span in &in_trace {
        let mut chain = vec![span.name.as_str()];
        let mut parent = span.parent_span_id.as_slice();
        while parent != request.span_id.as_slice() {
            let Some(up) = by_id.get(parent) else {
                panic!(
                    "{chain:?}: the parent {} is not in the export (nor the request span)",
                    hex(parent)
                );
            };
            chain.push(up.name.as_str());
            parent = up.parent_span_id.as_slice();
        }
        // Statements and transactions are CLIENT spans, acquire and connect
        // spans INTERNAL; none is another request.
        assert_ne!(
            span.kind,
            SpanKind::Server as i32,
            "{chain:?} under the request"
        );
    }
    // (The migrations at start have a transaction too, in a trace of their own.)
    let transactions: Vec<&&Span> = in_trace
        .iter()
        .filter(|s| s.name == format!("TRANSACTION {db_name}"))
        .collect();
    assert_eq!(
        transactions.len(),
        1,
        "one transaction per order: {names:?}"
    );
    let transaction = transactions[0];
    assert_eq!(
        transaction.parent_span_id, request.span_id,
        "the order's transaction is a child of the request"
    );
    let inserts: Vec<&&Span> = in_trace
        .iter()
        .filter(|s| s.name == format!("INSERT {db_name}"))
        .collect();
    assert!(
        !inserts.is_empty(),
        "no INSERT in the request's trace: {names:?}"
    );
    for insert in &inserts {
        assert_eq!(
            insert.parent_span_id, transaction.span_id,
            "the order's statements are children of its transaction"
        );
        assert_eq!(
            attr(&insert.attributes, "db.namespace").as_deref(),
            Some(db_name.as_str())
        );
    }

    // The lookup: a root span of its own trace, named by the route template.
    let status_of = |span: &Span| attr(&span.attributes, "http.response.status_code");
    let lookups: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "GET /api/orders/{order_number}")
        .collect();
    let mut statuses: Vec<_> = lookups.iter().map(|s| status_of(s)).collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [Some("200".to_owned()), Some("401".to_owned())],
        "the lookup and the refused one"
    );
    let lookup = lookups
        .iter()
        .find(|s| status_of(s).as_deref() == Some("200"))
        .copied()
        .unwrap();
    let refused_event = one(&spans, "POST /api/panels/{barcode}/events");
    assert_eq!(status_of(refused_event).as_deref(), Some("403"));
    println!("{}", tree(&spans, lookup));
    assert_eq!(lookup.kind, SpanKind::Server as i32);
    assert!(lookup.parent_span_id.is_empty(), "no traceparent: a root");
    assert_ne!(lookup.trace_id, request.trace_id);
    assert_eq!(
        attr(&lookup.attributes, "http.route").as_deref(),
        Some("/api/orders/{order_number}")
    );
    assert_eq!(
        attr(&lookup.attributes, "http.response.status_code").as_deref(),
        Some("200")
    );
    let lookup_statements: Vec<&Span> = spans
        .iter()
        .filter(|s| s.trace_id == lookup.trace_id && s.span_id != lookup.span_id)
        .collect();
    assert!(
        lookup_statements
            .iter()
            .any(|s| s.name == format!("SELECT {db_name}")),
        "the lookup's statements are in its trace: {names:?}"
    );

    // The readiness probes before the station's request have spans too.
    assert!(
        names.contains(&"GET /ready"),
        "every routed request has a span: {names:?}"
    );

    // No concrete path, order number, barcode or token anywhere.
    let log_text = logs.text();
    let everything = format!("{}\n{log_text}", receiver.dump());
    for secret in [ORDER_NUMBER, BARCODE, TOKEN, "Tapir", "Axolotl", "Pangolin"] {
        if let Some(at) = everything.find(secret) {
            let from = floor(&everything, at.saturating_sub(300));
            let to = floor(&everything, (at + 300).min(everything.len()));
            panic!("{secret:?} leaked: …{}…", &everything[from..to]);
        }
    }
    drop(stations);
}

/// One span named `name`, or a failure listing the names received.
fn one<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    let found: Vec<&Span> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one span named {name:?} in {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    found[0]
}

/// `root` and the spans under it, one per line, indented by depth, with
/// their durations (printed, and shown when an assertion fails).
fn tree(spans: &[Span], root: &Span) -> String {
    fn walk(spans: &[Span], span: &Span, depth: usize, out: &mut String) {
        let micros = span
            .end_time_unix_nano
            .saturating_sub(span.start_time_unix_nano)
            / 1_000;
        out.push_str(&format!(
            "{:width$}{} {micros} µs\n",
            "",
            span.name,
            width = depth * 2
        ));
        let mut children: Vec<&Span> = spans
            .iter()
            .filter(|s| s.parent_span_id == span.span_id && s.trace_id == span.trace_id)
            .collect();
        children.sort_by_key(|s| s.start_time_unix_nano);
        for child in children {
            walk(spans, child, depth + 1, out);
        }
    }
    let mut out = String::new();
    walk(spans, root, 0, &mut out);
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The largest char boundary of `text` at or before `at`.
fn floor(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

async fn wait_until_ready(addr: SocketAddr) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok()
            && http(addr, "GET", "/ready", None).await.0 == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the server was never ready at {addr}");
}

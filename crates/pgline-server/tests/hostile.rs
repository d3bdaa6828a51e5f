//! Malformed and hostile requests, driven through the router on a real
//! database: every one gets a 4xx JSON error (`{"error": {"code",
//! "message"}}`), the server keeps serving (a valid request right after each
//! succeeds), nothing reaches PostgreSQL unchecked (no 500), and
//! injection-looking text is stored verbatim where the format allows it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use common::{Answer, call, postgres_state, send};
use pgline_config::Config;
use pgline_mfg::Limits;
use pgline_server::{Auth, app, store_limits};
use serde_json::{Value, json};

const TOKEN: &str = "5f0c7a9e2b4d6f8a1c3e5b7d9f0a2c4e6b8d0f1a3c5e7b9d2f4a6c8e0b1d3f5a";

/// A router and a counter for the follow-up requests.
struct Suite {
    app: Router,
    token: Option<&'static str>,
    follow_ups: AtomicUsize,
}

impl Suite {
    async fn new() -> Self {
        Self::on(app(postgres_state(Limits::default()).await), None)
    }

    fn on(app: Router, token: Option<&'static str>) -> Self {
        Self {
            app,
            token,
            follow_ups: AtomicUsize::new(0),
        }
    }

    /// Sends `request`, asserts `expected` with a JSON error body, then that
    /// a valid request still succeeds. Returns the answer.
    async fn refuses(&self, what: &str, request: Request<Body>, expected: StatusCode) -> Answer {
        let answer = send(&self.app, request).await;
        assert_eq!(answer.status, expected, "{what}: {}", answer.body);
        answer.error_code();
        self.still_serving(what).await;
        answer
    }

    async fn still_serving(&self, after: &str) {
        let n = self.follow_ups.fetch_add(1, Ordering::Relaxed);
        let panel = json!({"barcode": format!("OK-{n}"), "panel_type": "FR4"});
        let answer = call(&self.app, "POST", "/api/panels", Some(&panel), self.token).await;
        assert_eq!(
            answer.status,
            StatusCode::CREATED,
            "not serving after {after}: {}",
            answer.body
        );
    }

    /// A request whose body is exactly `bytes`, declared as JSON.
    fn raw(&self, method: &str, uri: &str, bytes: impl Into<Body>) -> Request<Body> {
        let mut builder = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = self.token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        builder.body(bytes.into()).unwrap()
    }

    fn json(&self, method: &str, uri: &str, body: &Value) -> Request<Body> {
        self.raw(method, uri, body.to_string())
    }

    fn get(&self, uri: &str) -> Request<Body> {
        let mut builder = Request::get(uri);
        if let Some(token) = self.token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        builder.body(Body::empty()).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_and_malformed_json_is_a_400() {
    let suite = Suite::new().await;
    for body in [
        r#"{"order_number": "MO-1", "panel_type": "FR4", "panels": [{"barcode": "P"#,
        r#"{"order_number": "MO-1", "panel_type": "#,
        "{",
        "",
        r#"{"order_number": "MO-1", "panel_type": "x", "panels": [{"barcode": "T-1"}]} trailing"#,
        r#"{'order_number': 'MO-1'}"#,
        r#"{"order_number": NaN}"#,
        "/* comment */ {}",
    ] {
        let answer = suite
            .refuses(
                body,
                suite.raw("POST", "/api/orders", body),
                StatusCode::BAD_REQUEST,
            )
            .await;
        assert_eq!(answer.error_code(), "malformed_json", "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_json_is_refused_without_a_crash() {
    let suite = Suite::new().await;
    let depth = 10_000;
    let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let objects = format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
    // Refused before parsing, wherever it is: in a field serde would skip
    // (serde_json skips without recursing, so its recursion limit of 128
    // would not stop it), in a typed field, as the whole document.
    let mut bodies = Vec::new();
    for nested in [&arrays, &objects] {
        bodies.push(format!(
            r#"{{"barcode": "N-1", "panel_type": "x", "extra": {nested}}}"#
        ));
        bodies.push(format!(r#"{{"barcode": {nested}, "panel_type": "x"}}"#));
        bodies.push(nested.clone());
    }
    for body in bodies {
        let answer = suite
            .refuses(
                "nested 10 000 levels",
                suite.raw("POST", "/api/panels", body),
                StatusCode::BAD_REQUEST,
            )
            .await;
        assert_eq!(answer.error_code(), "too_deep");
    }
    // 100 000 levels: still within the body limit, still refused.
    let deeper = format!(
        r#"{{"event_type": "SCANNED", "station": "ST-01", "x": {}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    suite
        .refuses(
            "100k levels",
            suite.raw("POST", "/api/panels/OK-0/events", deeper),
            StatusCode::BAD_REQUEST,
        )
        .await;
    // Unclosed brackets count too.
    suite
        .refuses(
            "unclosed",
            suite.raw("POST", "/api/orders", "[".repeat(depth)),
            StatusCode::BAD_REQUEST,
        )
        .await;
    // Brackets inside strings are text, and modest nesting in an unknown
    // field is tolerated (clients may send more than the API reads).
    let body = format!(
        r#"{{"barcode": "N-2", "panel_type": "[[[{{{{", "extra": {}{}}}"#,
        "[".repeat(20),
        "]".repeat(20)
    );
    let answer = send(&suite.app, suite.raw("POST", "/api/panels", body)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_eq!(answer.body["panel_type"], "[[[{{");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_types_are_a_422() {
    let suite = Suite::new().await;
    for body in [
        json!({"order_number": 5, "panel_type": "FR4", "panels": [{"barcode": "P-1"}]}),
        json!({"order_number": "MO-1", "panel_type": "FR4", "panels": {"barcode": "P-1"}}),
        json!({"order_number": "MO-1", "panel_type": "FR4", "panels": [{"barcode": null}]}),
        json!({"order_number": "MO-1", "panel_type": ["FR4"], "panels": [{"barcode": "P-1"}]}),
        json!({"order_number": "MO-1", "panel_type": "FR4", "panels": "P-1,P-2"}),
        json!({"order_number": "MO-1", "panel_type": "FR4"}),
        json!("MO-1"),
        json!([1, 2, 3]),
        json!(null),
        json!({"order_number": "MO-1", "order_number": "MO-2"}),
    ] {
        let text = body.to_string();
        let answer = suite
            .refuses(
                &text,
                suite.json("POST", "/api/orders", &body),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        assert_eq!(answer.error_code(), "invalid_body", "{text}");
    }
    // Duplicate keys (serde_json keeps the text; the derive refuses it).
    let duplicate = r#"{"barcode": "D-1", "barcode": "D-2", "panel_type": "x"}"#;
    suite
        .refuses(
            "duplicate key",
            suite.raw("POST", "/api/panels", duplicate),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    for uri in [
        "/api/panels?status=PENDING&limit=-1",
        "/api/panels?status=PENDING&limit=abc",
        "/api/panels?status=PENDING&limit=99999999999999999999",
        "/api/panels",
    ] {
        suite
            .refuses(uri, suite.get(uri), StatusCode::BAD_REQUEST)
            .await;
    }
    suite
        .refuses(
            "limit 0",
            suite.get("/api/panels?status=PENDING&limit=0"),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_bodies_are_a_413() {
    let suite = Suite::new().await;
    let huge = json!({"barcode": "H-1", "panel_type": "x".repeat(2 * 1024 * 1024)});
    let answer = suite
        .refuses(
            "2 MiB",
            suite.json("POST", "/api/panels", &huge),
            StatusCode::PAYLOAD_TOO_LARGE,
        )
        .await;
    assert_eq!(answer.error_code(), "too_large");
    // No Content-Length: the limit holds while the body streams in.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..64).map(|_| Ok(vec![b' '; 64 * 1024])).collect();
    let streamed = Body::from_stream(futures_util::stream::iter(chunks));
    suite
        .refuses(
            "4 MiB streamed",
            suite.raw("POST", "/api/orders", streamed),
            StatusCode::PAYLOAD_TOO_LARGE,
        )
        .await;

    // HTTP_MAX_BODY_BYTES makes it configurable.
    let config = Config::from_vars([("HTTP_MAX_BODY_BYTES", "4096")]).unwrap();
    let mut state = postgres_state(Limits::default()).await;
    state.apply_config(&config).unwrap();
    let small = Suite::on(app(state), None);
    let body = json!({"barcode": "H-2", "panel_type": "x".repeat(5000)});
    small
        .refuses(
            "5000 bytes over 4096",
            small.json("POST", "/api/panels", &body),
            StatusCode::PAYLOAD_TOO_LARGE,
        )
        .await;
    let fits = json!({"barcode": "H-3", "panel_type": "x".repeat(64)});
    let answer = send(&small.app, small.json("POST", "/api/panels", &fits)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_a_400() {
    let suite = Suite::new().await;
    for bytes in [
        &b"{\"barcode\": \"U-1\", \"panel_type\": \"\xff\xfe\"}"[..],
        b"\xef\xbb\xbf\xff{}",
        // An overlong encoding of NUL, a classic filter bypass.
        b"{\"barcode\": \"U-1\", \"panel_type\": \"a\xc0\x80b\"}",
        // A lone surrogate, escaped.
        br#"{"barcode": "U-1", "panel_type": "\ud800"}"#,
    ] {
        let what = String::from_utf8_lossy(bytes).into_owned();
        suite
            .refuses(
                &what,
                suite.raw("POST", "/api/panels", bytes.to_vec()),
                StatusCode::BAD_REQUEST,
            )
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_bytes_in_strings_never_reach_the_database() {
    let suite = Suite::new().await;
    let order =
        json!({"order_number": "MO-NUL", "panel_type": "FR4", "panels": [{"barcode": "P-NUL"}]});
    assert_eq!(
        send(&suite.app, suite.json("POST", "/api/orders", &order))
            .await
            .status,
        StatusCode::CREATED
    );
    for (uri, body) in [
        (
            "/api/panels",
            json!({"barcode": "N-1", "panel_type": "a\u{0}b"}),
        ),
        (
            "/api/panels",
            json!({"barcode": "N-1\u{0}", "panel_type": "ab"}),
        ),
        (
            "/api/panels",
            json!({"barcode": "\u{0}", "panel_type": "\u{0}"}),
        ),
        (
            "/api/orders",
            json!({"order_number": "MO\u{0}2", "panel_type": "FR4", "panels": [{"barcode": "N-2"}]}),
        ),
        (
            "/api/orders",
            json!({"order_number": "MO-2", "panel_type": "FR4", "panels": [{"barcode": "N-2\u{0}"}]}),
        ),
        (
            "/api/panels/P-NUL/events",
            json!({"event_type": "SCANNED", "station": "ST-01\u{0}"}),
        ),
        (
            "/api/panels/P-NUL/events",
            json!({"event_type": "SCANNED\u{0}", "station": "ST-01"}),
        ),
    ] {
        let answer = suite
            .refuses(
                &body.to_string(),
                suite.json("POST", uri, &body),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        assert_eq!(answer.error_code(), "validation", "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_bytes_and_bad_encodings_in_paths_and_queries() {
    let suite = Suite::new().await;
    let scan = json!({"event_type": "SCANNED", "station": "ST-01"});
    for uri in [
        "/api/orders/%00",
        "/api/orders/MO-1%00",
        "/api/orders/MO-1%00%27%3B--",
    ] {
        suite
            .refuses(uri, suite.get(uri), StatusCode::UNPROCESSABLE_ENTITY)
            .await;
    }
    for uri in ["/api/panels/%00/events", "/api/panels/OK-0%00/events"] {
        suite
            .refuses(
                uri,
                suite.json("POST", uri, &scan),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
    }
    for uri in ["/api/orders/%FF%FE", "/api/panels/%C0%80/events"] {
        let request = match uri.ends_with("events") {
            true => suite.json("POST", uri, &scan),
            false => suite.get(uri),
        };
        let answer = suite.refuses(uri, request, StatusCode::BAD_REQUEST).await;
        assert_eq!(answer.error_code(), "invalid_path");
    }
    for uri in [
        "/api/panels?status=%00",
        "/api/panels?status=PENDING%00",
        "/api/panels?status=PENDING%27%20OR%201%3D1",
    ] {
        suite
            .refuses(uri, suite.get(uri), StatusCode::UNPROCESSABLE_ENTITY)
            .await;
    }
    suite
        .refuses(
            "query %FF",
            suite.get("/api/panels?status=%FF"),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlong_fields_are_a_422_and_never_echoed() {
    let suite = Suite::new().await;
    let long_barcode = "B".repeat(65);
    let long_type = "t".repeat(65);
    let huge_number = "M".repeat(500_000);
    for (uri, body) in [
        (
            "/api/panels",
            json!({"barcode": long_barcode, "panel_type": "x"}),
        ),
        (
            "/api/panels",
            json!({"barcode": "L-1", "panel_type": long_type}),
        ),
        (
            "/api/panels",
            json!({"barcode": "L-1", "panel_type": "é".repeat(65)}),
        ),
        (
            "/api/orders",
            json!({"order_number": huge_number, "panel_type": "x", "panels": [{"barcode": "L-2"}]}),
        ),
        (
            "/api/panels/OK-0/events",
            json!({"event_type": "SCANNED", "station": format!("ST-{}", "1".repeat(14))}),
        ),
    ] {
        let answer = suite
            .refuses(
                "overlong",
                suite.json("POST", uri, &body),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        assert_eq!(answer.error_code(), "validation");
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert!(
            !message.contains("BBBB") && !message.contains("MMMM") && !message.contains("tttt")
        );
    }
    let long_path = format!("/api/orders/{}", "O".repeat(60_000));
    suite
        .refuses(
            "60 kB path",
            suite.get(&long_path),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    // At the limit: accepted and stored whole.
    let at_limit = json!({"barcode": "B".repeat(64), "panel_type": "é".repeat(64)});
    let answer = send(&suite.app, suite.json("POST", "/api/panels", &at_limit)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_eq!(answer.body["panel_type"], "é".repeat(64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_enum_values_are_a_422() {
    let suite = Suite::new().await;
    for event_type in [
        "TELEPORTED",
        "scanned",
        "PANEL_CREATED",
        "",
        " SCANNED",
        "SCANNED;DROP",
    ] {
        let body = json!({"event_type": event_type, "station": "ST-01"});
        suite
            .refuses(
                event_type,
                suite.json("POST", "/api/panels/OK-0/events", &body),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
    }
    for status in ["SIDEWAYS", "pending", "PANEL_CREATED", ""] {
        let uri = format!("/api/panels?status={status}");
        suite
            .refuses(&uri, suite.get(&uri), StatusCode::UNPROCESSABLE_ENTITY)
            .await;
    }
    let typed = json!({"event_type": 1, "station": "ST-01"});
    suite
        .refuses(
            "numeric event type",
            suite.json("POST", "/api/panels/OK-0/events", &typed),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
}

fn order(number: &str, panels: usize) -> Value {
    let panels: Vec<Value> = (0..panels)
        .map(|i| json!({"barcode": format!("{number}-P{i:05}")}))
        .collect();
    json!({"order_number": number, "panel_type": "FR4", "panels": panels})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_barcodes_and_oversized_orders() {
    let suite = Suite::new().await;
    let duplicate = json!({"order_number": "MO-D", "panel_type": "FR4",
        "panels": [{"barcode": "D-1"}, {"barcode": "D-2"}, {"barcode": "D-1"}]});
    let answer = suite
        .refuses(
            "duplicate barcode",
            suite.json("POST", "/api/orders", &duplicate),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert!(
        answer.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("panels[2].barcode"),
        "{}",
        answer.body
    );
    assert_eq!(
        send(&suite.app, suite.get("/api/orders/MO-D")).await.status,
        StatusCode::NOT_FOUND
    );

    // The default limit is 1000 panels: over it 422, at it accepted.
    for count in [1001, 5000] {
        suite
            .refuses(
                &format!("{count} panels"),
                suite.json("POST", "/api/orders", &order("MO-BIG", count)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
    }
    let empty = order("MO-EMPTY", 0);
    suite
        .refuses(
            "no panels",
            suite.json("POST", "/api/orders", &empty),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    let answer = send(
        &suite.app,
        suite.json("POST", "/api/orders", &order("MO-1000", 1000)),
    )
    .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let answer = send(&suite.app, suite.get("/api/orders/MO-1000")).await;
    assert_eq!(answer.body["panels"].as_array().unwrap().len(), 1000);

    // MAX_PANELS_PER_ORDER makes it configurable.
    let config = Config::from_vars([("MAX_PANELS_PER_ORDER", "10")]).unwrap();
    let small = Suite::on(app(postgres_state(store_limits(&config)).await), None);
    small
        .refuses(
            "11 of 10",
            small.json("POST", "/api/orders", &order("MO-11", 11)),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    let answer = send(
        &small.app,
        small.json("POST", "/api/orders", &order("MO-10", 10)),
    )
    .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
}

/// Text that means something to SQL, shells, templates or browsers.
const INJECTIONS: &[&str] = &[
    "'; DROP TABLE panels; --",
    "Robert'); DROP TABLE students;--",
    "\" OR \"1\"=\"1",
    "' OR 1=1 --",
    "$$; SELECT pg_sleep(10); $$",
    "1; TRUNCATE barcode_events",
    "\\x00\\\\ E'\\047'",
    "%00%27 %s %n",
    "{{7*7}} ${7*7}",
    "${jndi:ldap://evil/a}",
    "<script>alert(1)</script>",
    "../../etc/passwd",
    "`rm -rf /` $(id)",
    "Ünïcödé ✓ 中文 🚀",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection_looking_text_is_stored_verbatim() {
    let suite = Suite::new().await;
    for (i, text) in INJECTIONS.iter().enumerate() {
        let body = json!({"barcode": format!("INJ-{i}"), "panel_type": text});
        let answer = send(&suite.app, suite.json("POST", "/api/panels", &body)).await;
        assert_eq!(
            answer.status,
            StatusCode::CREATED,
            "{text}: {}",
            answer.body
        );
        assert_eq!(answer.body["panel_type"], *text);
        let order = json!({"order_number": format!("MO-INJ-{i}"), "panel_type": text,
            "panels": [{"barcode": format!("INJ-O-{i}")}]});
        let answer = send(&suite.app, suite.json("POST", "/api/orders", &order)).await;
        assert_eq!(
            answer.status,
            StatusCode::CREATED,
            "{text}: {}",
            answer.body
        );
    }
    // Read back from the database: byte for byte.
    let answer = send(
        &suite.app,
        suite.get("/api/panels?status=PENDING&limit=1000"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let listed: Vec<(String, String)> = answer
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["barcode"].as_str().unwrap().to_owned(),
                p["panel_type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (i, text) in INJECTIONS.iter().enumerate() {
        for barcode in [format!("INJ-{i}"), format!("INJ-O-{i}")] {
            assert!(
                listed.contains(&(barcode.clone(), (*text).to_owned())),
                "{barcode} {text:?} not stored verbatim"
            );
        }
        let answer = send(&suite.app, suite.get(&format!("/api/orders/MO-INJ-{i}"))).await;
        assert_eq!(answer.body["panel_type"], *text);
    }
    // Where the format does not allow it (identifiers), it is refused.
    for text in ["'; DROP TABLE panels; --", "P-1' OR '1'='1", "P-1;--"] {
        let body = json!({"barcode": text, "panel_type": "x"});
        suite
            .refuses(
                text,
                suite.json("POST", "/api/panels", &body),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        let body =
            json!({"order_number": text, "panel_type": "x", "panels": [{"barcode": "INJ-X"}]});
        suite
            .refuses(
                text,
                suite.json("POST", "/api/orders", &body),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
    }
    // The tables are all still there.
    let answer = send(
        &suite.app,
        suite.get("/api/panels?status=PENDING&limit=1000"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let scan = json!({"event_type": "SCANNED", "station": "ST-01"});
    let answer = send(
        &suite.app,
        suite.json("POST", "/api/panels/INJ-0/events", &scan),
    )
    .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_abuse_and_wrong_media_types() {
    let mut state = postgres_state(Limits::default()).await;
    state.auth = Auth::off().with_station_token("ST-01", TOKEN);
    let suite = Suite::on(app(state), Some(TOKEN));
    let panel = json!({"barcode": "HD-1", "panel_type": "x"}).to_string();

    let huge = format!("Bearer {}", "A".repeat(1024 * 1024));
    let request = Request::post("/api/panels")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, HeaderValue::from_str(&huge).unwrap())
        .body(Body::from(panel.clone()))
        .unwrap();
    let answer = suite
        .refuses("1 MiB Authorization", request, StatusCode::UNAUTHORIZED)
        .await;
    assert_eq!(answer.error_code(), "invalid_token");

    let many = (0..1000).fold(Request::post("/api/panels"), |builder, i| {
        builder.header(header::AUTHORIZATION, format!("Bearer {TOKEN}{i}"))
    });
    let request = many.body(Body::from(panel.clone())).unwrap();
    suite
        .refuses(
            "1000 Authorization headers",
            request,
            StatusCode::UNAUTHORIZED,
        )
        .await;

    // Unrelated huge headers are not looked at.
    let request = Request::post("/api/panels")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header("x-padding", "p".repeat(256 * 1024))
        .body(Body::from(panel.clone()))
        .unwrap();
    assert_eq!(send(&suite.app, request).await.status, StatusCode::CREATED);

    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut builder =
            Request::post("/api/panels").header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
        if let Some(content_type) = content_type {
            builder = builder.header(header::CONTENT_TYPE, content_type);
        }
        let request = builder.body(Body::from(panel.clone())).unwrap();
        let answer = suite
            .refuses(
                content_type.unwrap_or("no content type"),
                request,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            )
            .await;
        assert_eq!(answer.error_code(), "unsupported_media_type");
    }
    let request = Request::delete("/api/orders")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let answer = suite
        .refuses("DELETE", request, StatusCode::METHOD_NOT_ALLOWED)
        .await;
    assert_eq!(answer.error_code(), "method_not_allowed");
    for path in [
        "/api/../status",
        "/api/orders/",
        "/nowhere",
        "/api/panels/P-1/events/extra",
    ] {
        suite
            .refuses(path, suite.get(path), StatusCode::NOT_FOUND)
            .await;
    }
}

//! Station and admin authentication, driven through the router: 401 with a
//! challenge, 403 for the wrong station, open probes, the dashboard behind
//! Basic, failures logged (without the token) and counted, and the
//! production profile refusing to serve without tokens.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, StatusCode, header};
use common::{Answer, Capture, call, postgres_state, request, send};
use pgline_config::Config;
use pgline_mfg::Limits;
use pgline_server::{Auth, AuthFailures, FailureReason, app, hash_token};
use serde_json::json;

const ST01: &str = "3b1c6e0d9f2a47b8a5c4e3d2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2";
const ST02: &str = "c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8";
const ADMIN: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

async fn secured() -> (Router, Arc<AuthFailures>) {
    let mut state = postgres_state(Limits::default()).await;
    state.auth = Auth::off()
        .with_station_token("ST-01", ST01)
        .with_admin_token(ADMIN)
        .with_station_token("ST-02", ST02);
    let failures = state.auth_failures.clone();
    (app(state), failures)
}

fn assert_challenge(answer: &Answer, expected: &[&str]) {
    let challenges: Vec<&str> = answer
        .headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(challenges, expected, "{}", answer.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_requires_a_station_token() {
    let (app, failures) = secured().await;
    let panel = json!({"barcode": "A-1", "panel_type": "FR4"});

    let answer = call(&app, "POST", "/api/panels", Some(&panel), None).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.error_code(), "missing_token");
    assert_challenge(&answer, &[r#"Bearer realm="pgline""#]);

    let answer = call(&app, "POST", "/api/panels", Some(&panel), Some("guess")).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.error_code(), "invalid_token");
    assert_challenge(
        &answer,
        &[r#"Bearer realm="pgline", error="invalid_token""#],
    );

    // The admin token is no station token, and reads need a token too.
    for (method, uri, token) in [
        ("POST", "/api/panels", Some(ADMIN)),
        ("GET", "/api/panels?status=PENDING", None),
        ("GET", "/api/orders/MO-1", None),
    ] {
        let answer = call(&app, method, uri, Some(&panel), token).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{method} {uri}");
    }

    // Basic is for the dashboard, not for stations.
    let basic = Request::post("/api/panels")
        .header(header::AUTHORIZATION, "Basic U1QtMDE6c2VjcmV0")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(panel.to_string()))
        .unwrap();
    assert_eq!(send(&app, basic).await.status, StatusCode::UNAUTHORIZED);

    let answer = call(&app, "POST", "/api/panels", Some(&panel), Some(ST01)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let answer = call(&app, "GET", "/api/panels?status=PENDING", None, Some(ST02)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);

    assert_eq!(failures.count(FailureReason::MissingToken), 3);
    assert_eq!(failures.count(FailureReason::InvalidToken), 3);
    assert_eq!(failures.count(FailureReason::WrongStation), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_station_records_events_only_in_its_own_name() {
    let (app, failures) = secured().await;
    let order =
        json!({"order_number": "MO-1", "panel_type": "FR4", "panels": [{"barcode": "P-1"}]});
    let answer = call(&app, "POST", "/api/orders", Some(&order), Some(ST01)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);

    let as_other = json!({"event_type": "SCANNED", "station": "ST-02"});
    let answer = call(
        &app,
        "POST",
        "/api/panels/P-1/events",
        Some(&as_other),
        Some(ST01),
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.error_code(), "wrong_station");
    assert!(
        answer.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("belongs to station ST-01"),
        "{}",
        answer.body
    );
    // Nothing was recorded: the panel is still PENDING.
    let answer = call(&app, "GET", "/api/orders/MO-1", None, Some(ST01)).await;
    assert_eq!(
        answer.body["panels"][0]["status"], "PENDING",
        "{}",
        answer.body
    );

    // A hostile claim is refused the same way and never reaches the store.
    let hostile =
        json!({"event_type": "SCANNED", "station": "ST-01\u{0000}'; DROP TABLE stations; --"});
    let answer = call(
        &app,
        "POST",
        "/api/panels/P-1/events",
        Some(&hostile),
        Some(ST01),
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(failures.count(FailureReason::WrongStation), 2);

    // Its own name, or no name at all: recorded for the token's station.
    let own = json!({"event_type": "SCANNED", "station": "ST-01"});
    let answer = call(
        &app,
        "POST",
        "/api/panels/P-1/events",
        Some(&own),
        Some(ST01),
    )
    .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let unnamed = json!({"event_type": "PASSED"});
    let answer = call(
        &app,
        "POST",
        "/api/panels/P-1/events",
        Some(&unnamed),
        Some(ST02),
    )
    .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_eq!(answer.body["station"], "ST-02", "{}", answer.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_station_tokens_the_station_field_is_required() {
    let state = postgres_state(Limits::default()).await;
    let app = app(state);
    let panel = json!({"barcode": "P-1", "panel_type": "FR4"});
    assert_eq!(
        call(&app, "POST", "/api/panels", Some(&panel), None)
            .await
            .status,
        StatusCode::CREATED
    );
    let unnamed = json!({"event_type": "SCANNED"});
    let answer = call(&app, "POST", "/api/panels/P-1/events", Some(&unnamed), None).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer.error_code(), "invalid_body");
    let named = json!({"event_type": "SCANNED", "station": "ST-03"});
    let answer = call(&app, "POST", "/api/panels/P-1/events", Some(&named), None).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_eq!(answer.body["station"], "ST-03", "{}", answer.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_stay_open_and_admin_endpoints_take_bearer_or_basic() {
    let (app, _) = secured().await;
    for path in ["/live", "/health", "/ready"] {
        let answer = call(&app, "GET", path, None, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
    }
    for path in ["/", "/status", "/metrics", "/health/database"] {
        let answer = call(&app, "GET", path, None, None).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_challenge(
            &answer,
            &[
                r#"Bearer realm="pgline""#,
                r#"Basic realm="pgline", charset="UTF-8""#,
            ],
        );
        let answer = call(&app, "GET", path, None, Some(ST01)).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{path}: a station token"
        );
        let answer = call(&app, "GET", path, None, Some(ADMIN)).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
        // A browser's answer to the Basic prompt: any user, the token as password.
        let basic = format!(
            "Basic {}",
            base64_encode(format!("operator:{ADMIN}").as_bytes())
        );
        let browser = Request::get(path)
            .header(header::AUTHORIZATION, basic)
            .body(Body::empty())
            .unwrap();
        let answer = send(&app, browser).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_admin_tokens_the_admin_endpoints_are_open() {
    let mut state = postgres_state(Limits::default()).await;
    state.auth = Auth::off().with_station_token("ST-01", ST01);
    let app = app(state);
    for path in ["/", "/status", "/metrics", "/health/database"] {
        let answer = call(&app, "GET", path, None, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn failures_are_logged_with_the_client_and_never_the_token() {
    let (app, failures) = secured().await;
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let client: SocketAddr = "10.7.1.23:50412".parse().unwrap();
    let wrong = "wrong-token-that-must-not-be-logged";
    let mut bad = request("GET", "/api/orders/MO-1", None, Some(wrong));
    bad.extensions_mut().insert(ConnectInfo(client));
    assert_eq!(send(&app, bad).await.status, StatusCode::UNAUTHORIZED);

    let claim = json!({"event_type": "SCANNED", "station": "ST-02\nforged log line"});
    let mut forged = request("POST", "/api/panels/P-1/events", Some(&claim), Some(ST01));
    forged.extensions_mut().insert(ConnectInfo(client));
    assert_eq!(send(&app, forged).await.status, StatusCode::FORBIDDEN);

    // Without connection info the address is unknown, not missing.
    let anonymous = request("GET", "/api/orders/MO-1", None, None);
    assert_eq!(send(&app, anonymous).await.status, StatusCode::UNAUTHORIZED);

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = logs.lines().collect();
    assert_eq!(lines.len(), 3, "{logs}");
    assert!(
        lines[0].contains("request refused: authentication failed"),
        "{logs}"
    );
    assert!(lines[0].contains(r#"reason="invalid_token""#), "{logs}");
    assert!(lines[0].contains("client=10.7.1.23:50412"), "{logs}");
    // The route, not the path: an order number is a parameter value.
    assert!(
        lines[0].contains("path=/api/orders/{order_number}"),
        "{logs}"
    );
    assert!(!logs.contains("MO-1") && !logs.contains("P-1"), "{logs}");
    assert!(lines[1].contains(r#"reason="wrong_station""#), "{logs}");
    assert!(lines[1].contains(r#"station="ST-01""#), "{logs}");
    assert!(
        lines[1].contains(r#"claimed_station=Some("ST-02\nforged log line")"#),
        "the claim is escaped, not a new line: {logs}"
    );
    assert!(lines[2].contains(r#"reason="missing_token""#), "{logs}");
    assert!(lines[2].contains("client=unknown"), "{logs}");
    for token in [wrong, ST01, ST02, ADMIN] {
        assert!(!logs.contains(token), "a token in the log: {logs}");
    }
    assert_eq!(failures.total(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_or_garbled_authorization_header_is_a_401() {
    let (app, _) = secured().await;
    let huge = format!("Bearer {}", "A".repeat(1024 * 1024));
    let garbled = HeaderValue::from_bytes(b"Bearer \xff\xfe\x80token").unwrap();
    for value in [HeaderValue::from_str(&huge).unwrap(), garbled] {
        let request = Request::get("/api/panels?status=PENDING")
            .header(header::AUTHORIZATION, value)
            .body(Body::empty())
            .unwrap();
        let answer = send(&app, request).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(answer.error_code(), "invalid_token");
    }
    let twice = Request::get("/api/panels?status=PENDING")
        .header(header::AUTHORIZATION, format!("Bearer {ST01}"))
        .header(header::AUTHORIZATION, format!("Bearer {ST02}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, twice).await.status, StatusCode::UNAUTHORIZED);
    let answer = call(&app, "GET", "/api/panels?status=PENDING", None, Some(ST01)).await;
    assert_eq!(answer.status, StatusCode::OK, "still serving");
}

fn temp_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_production_profile_refuses_to_serve_without_tokens() {
    let production = [
        ("NODE_ENV", "production"),
        ("DB_HOST", "db.plant.internal"),
        ("DB_NAME", "plant"),
        ("DB_USER", "pgline_app"),
        ("DB_PASSWORD", "pw"),
        ("DB_SSL", "true"),
    ];
    let mut state = postgres_state(Limits::default()).await;
    let config = Config::from_vars(production).unwrap();
    let error = state.apply_config(&config).unwrap_err();
    assert_eq!(
        error.problems()[0].setting,
        "STATION_TOKENS_FILE",
        "{error}"
    );

    let stations = temp_file(&format!(
        "# station tokens of line 7\nST-01:{}\nST-02:{}\n",
        hash_token(ST01).to_hex(),
        hash_token(ST02).to_hex()
    ));
    let admin = temp_file(&format!("{}\n", hash_token(ADMIN).to_hex()));
    let mut vars = production.to_vec();
    let (stations_path, admin_path) = (
        stations.path().to_str().unwrap().to_owned(),
        admin.path().to_str().unwrap().to_owned(),
    );
    vars.push(("STATION_TOKENS_FILE", &stations_path));
    vars.push(("ADMIN_TOKEN_FILE", &admin_path));
    vars.push(("HTTP_MAX_BODY_BYTES", "2048"));
    let config = Config::from_vars(vars).unwrap();
    state.apply_config(&config).unwrap();
    assert_eq!(state.profile, "production");
    assert_eq!(state.limits.max_body_bytes, 2048);
    let app = app(state);

    let panel = json!({"barcode": "PRD-1", "panel_type": "FR4"});
    let answer = call(&app, "POST", "/api/panels", Some(&panel), None).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let answer = call(&app, "GET", "/status", None, None).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let answer = call(&app, "POST", "/api/panels", Some(&panel), Some(ST02)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let big = json!({"barcode": "PRD-2", "panel_type": "x".repeat(4000)});
    let answer = call(&app, "POST", "/api/panels", Some(&big), Some(ST02)).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        call(&app, "GET", "/status", None, Some(ADMIN)).await.status,
        StatusCode::OK
    );
}

#[test]
fn failures_render_for_prometheus() {
    let failures = AuthFailures::default();
    failures.record(FailureReason::WrongStation);
    let text = failures.render_prometheus();
    assert!(text.contains("# TYPE pgline_http_auth_failures_total counter\n"));
    assert!(text.contains("pgline_http_auth_failures_total{reason=\"wrong_station\"} 1\n"));
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

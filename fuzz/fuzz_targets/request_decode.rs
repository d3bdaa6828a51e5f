//! Request decoding: the real router of pgline-server (`pgline_server::app`)
//! on the in-memory store, driven in-process with `oneshot` on one
//! current-thread runtime, with a fuzzed method, path and query, headers and
//! body.
//!
//! Asserts: no panic; no 5xx but 503 (documented: the database is
//! unavailable — here it always is — or the service is shutting down);
//! every 4xx carries the JSON error body `{"error": {"code", "message"}}`,
//! every 503 a JSON body (the error, or a health endpoint's status); an
//! error message is at most 300 characters, none of them control
//! characters.
//!
//! Input (so that seeds are readable): one control byte (bit 0: station and
//! admin tokens required; bit 1: small limits, 1 KiB bodies and 3 panels an
//! order), then a request much as it goes on the wire: `METHOD PATH\n`,
//! header lines `name: value\n`, an empty line, the body.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use pgline_core::{
    BoxFuture, CloseReport, Database, DbError, ErrorKind, HealthReport, PoolStats, Row, Session,
    ToSql, TransactionError,
};
use pgline_mfg::{Limits, MemoryStore};
use pgline_server::{AppState, Auth, app};
use tower::ServiceExt;

/// A database that is never reachable: every call fails as a lost
/// connection would, so the health endpoints answer their documented 503.
#[derive(Clone)]
struct Unreachable;

fn unreachable() -> DbError {
    DbError::new(ErrorKind::Connect)
}

impl Database for Unreachable {
    async fn query(&self, _: &str, _: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, DbError> {
        Err(unreachable())
    }
    async fn execute(&self, _: &str, _: &[&(dyn ToSql + Sync)]) -> Result<u64, DbError> {
        Err(unreachable())
    }
    async fn batch_execute(&self, _: &str) -> Result<(), DbError> {
        Err(unreachable())
    }
    async fn transaction<T, E, F>(&self, _f: F) -> Result<T, E>
    where
        T: Send,
        E: TransactionError,
        F: for<'s> Fn(&'s mut dyn Session) -> BoxFuture<'s, Result<T, E>> + Send + Sync,
    {
        Err(unreachable().into())
    }
    fn stats(&self) -> PoolStats {
        PoolStats::default()
    }
    async fn health(&self, _: Duration) -> HealthReport {
        HealthReport::new(
            false,
            Duration::ZERO,
            PoolStats::default(),
            "fuzz",
            Some("unreachable".to_owned()),
        )
    }
    async fn close(&self, _: Duration) -> CloseReport {
        CloseReport::default()
    }
    fn backend(&self) -> &'static str {
        "fuzz"
    }
}

/// The tokens the router accepts when the control byte asks for them.
const STATION_TOKEN: &str = "fuzz-station-token-0123456789abcdef";
const ADMIN_TOKEN: &str = "fuzz-admin-token-0123456789abcdef";

#[derive(Debug)]
struct Input {
    auth_on: bool,
    small_limits: bool,
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime")
    })
}

/// The request in `data` (after the control byte), or `None` where hyper
/// would refuse it before the router sees it.
fn request(data: &[u8]) -> Option<Request<Body>> {
    let line_end = data.iter().position(|b| *b == b'\n')?;
    let (line, mut rest) = (&data[..line_end], &data[line_end + 1..]);
    let space = line.iter().position(|b| *b == b' ')?;
    let method = Method::from_bytes(&line[..space]).ok()?;
    let uri = axum::http::Uri::try_from(&line[space + 1..]).ok()?;
    let mut builder = Request::builder().method(method).uri(uri);
    loop {
        let end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        let header = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or_default();
        if header.is_empty() {
            break;
        }
        let colon = header.iter().position(|b| *b == b':')?;
        let name = HeaderName::from_bytes(&header[..colon]).ok()?;
        let value = HeaderValue::from_bytes(header[colon + 1..].trim_ascii()).ok()?;
        builder = builder.header(name, value);
    }
    builder.body(Body::from(rest.to_vec())).ok()
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, data)) = data.split_first() else {
        return;
    };
    let input = Input {
        auth_on: control & 1 != 0,
        small_limits: control & 2 != 0,
    };
    let Some(request) = request(data) else {
        return;
    };
    // A response to HEAD has no body (axum drops it, as HTTP requires).
    let head = request.method() == Method::HEAD;
    let limits = match input.small_limits {
        true => Limits::default().with_max_panels_per_order(3),
        false => Limits::default(),
    };
    let mut state = AppState::new(Unreachable, MemoryStore::with_limits(limits));
    if input.auth_on {
        state.auth = Auth::off()
            .with_station_token("ST-01", STATION_TOKEN)
            .with_admin_token(ADMIN_TOKEN);
    }
    if input.small_limits {
        state.limits.max_body_bytes = 1024;
    }
    let router = app(state);
    let (status, body) = runtime().block_on(async move {
        let response = router
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("a body that can be read")
            .to_bytes();
        (status, body)
    });
    assert!(
        !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
        "{status} for {input:?} {:?}: {}",
        String::from_utf8_lossy(data),
        String::from_utf8_lossy(&body)
    );
    if !head && (status.is_client_error() || status.is_server_error()) {
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|_| {
            panic!(
                "{status} without a JSON body for {input:?}: {:?}",
                String::from_utf8_lossy(&body)
            )
        });
        // The health endpoints' 503 is their status document
        // (`{"ready": false, …}`); every other error has the error shape.
        let probe = status == StatusCode::SERVICE_UNAVAILABLE && json.get("error").is_none();
        let error = &json["error"];
        assert!(
            probe || (error["code"].is_string() && error["message"].is_string()),
            "{status}: not the error shape {{\"error\": {{\"code\", \"message\"}}}}: {json}"
        );
        // As the hostile-input suite: a short, printable message, whatever
        // the request held.
        if let Some(message) = error["message"].as_str() {
            assert!(
                message.chars().count() <= 300 && !message.chars().any(char::is_control),
                "{status}: unbounded or unprintable message {message:?} for {:?}",
                String::from_utf8_lossy(data)
            );
        }
    }
});

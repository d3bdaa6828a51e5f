//! Shared by the test binaries: a router on a fresh database, requests with
//! and without tokens, a raw HTTP/1.1 client for a served socket, and a log
//! writer that keeps what it is given.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use pgline_async::{PgManager, PgPool, PoolOptions};
use pgline_mfg::{Limits, PgStore, Store};
use pgline_resilience::{ResilienceOptions, Resilient};
use pgline_server::AppState;
use pgline_testkit::PgServer;
use serde_json::Value;
use tower::ServiceExt;

pub type Db = Arc<Resilient<PgPool>>;

/// A pool on `config`, initialized.
pub async fn pool(config: tokio_postgres::Config) -> Db {
    let pool = PgPool::new(PgManager::new(config, None, 100), PoolOptions::new(1, 4)).unwrap();
    pool.initialize().await.unwrap();
    Arc::new(Resilient::new(pool, ResilienceOptions::default()))
}

/// State on a fresh, migrated database of the shared server, with `limits`
/// for the store; the caller adds authentication and HTTP limits.
pub async fn postgres_state(limits: Limits) -> AppState<Db, Store<Db>> {
    let server = PgServer::shared();
    let name = server.fresh_database().await.unwrap();
    let db = pool(server.config(&name)).await;
    let store = PgStore::with_limits(db.clone(), limits);
    store.migrate().await.unwrap();
    AppState::new(db, Store::Postgres(store))
}

/// The answer to a request: status, headers, body as JSON (or a JSON string
/// of the text when it is not JSON).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    /// Asserts the contract's error body: `{"error": {"code", "message"}}`,
    /// with a short, printable message; returns the code.
    pub fn error_code(&self) -> String {
        let code = self.body["error"]["code"].as_str();
        let message = self.body["error"]["message"].as_str();
        assert!(
            code.is_some() && message.is_some(),
            "{}: not a JSON error body: {}",
            self.status,
            self.body
        );
        let message = message.unwrap();
        assert!(
            message.chars().count() <= 300 && !message.chars().any(char::is_control),
            "unbounded or unprintable message: {message:?}"
        );
        code.unwrap().to_owned()
    }
}

pub async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    Answer {
        status,
        headers,
        body,
    }
}

/// A request with an optional JSON body and an optional bearer token.
pub fn request(
    method: &str,
    uri: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = match body {
        Some(value) => {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
            Body::from(value.to_string())
        }
        None => Body::empty(),
    };
    builder.body(body).unwrap()
}

pub async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> Answer {
    send(app, request(method, uri, body, token)).await
}

/// One HTTP/1.1 request on a connection of its own to a served socket:
/// status and body.
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    http_with(addr, method, path, &[], body).await
}

/// [`http`] with extra headers.
pub async fn http_with(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = body.unwrap_or("");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

/// A log writer (`MakeWriter`) that keeps everything written to it.
#[derive(Clone, Default)]
pub struct Capture(pub Arc<std::sync::Mutex<Vec<u8>>>);

impl Capture {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

//! Shared by the security test binaries: a router on a fresh database, and
//! requests with and without tokens.
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

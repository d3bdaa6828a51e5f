//! The request span: one `tracing` span per routed request, the parent of the
//! database spans the request causes, so that one station request is one
//! trace.
//!
//! The span follows OpenTelemetry's HTTP server conventions as far as the
//! project's rule allows: no parameter value in any span attribute. Paths
//! carry barcodes and order numbers (`/api/panels/P-1042/events`), the same
//! values the statements take as parameters, so the span has the route
//! template (`http.route`, `/api/panels/{barcode}/events`) and never
//! `url.path` or `url.query`.
//!
//! | field | value |
//! |---|---|
//! | span name (`otel.name`) | `{method} {route}`, e.g. `POST /api/orders` (`HTTP {route}` for a method outside the standard nine) |
//! | `otel.kind` | `server` |
//! | `http.request.method` | `GET`, `POST`, … or `_OTHER` |
//! | `http.route` | the router's template, e.g. `/api/orders/{order_number}` |
//! | `network.protocol.version` | `1.0`, `1.1`, `2`, `3` |
//! | `http.response.status_code` | the answer's status, e.g. `201` |
//! | `error.type`, `otel.status_code` | for 5xx only: the status code (e.g. `503`) and `error` |
//!
//! A `traceparent` header (W3C Trace Context) makes the span a child of the
//! caller's span ([`pgline_telemetry::set_parent_from_headers`]); without one
//! the span starts a trace.
//!
//! `url.scheme` is left out: the router does not know whether it is served
//! over TLS, and HTTP/1.1 requests do not say.

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, Version};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

/// Middleware (for `route_layer`, after routing): runs the rest of the
/// request inside its [request span](self) and records the response's status
/// on it.
///
/// Requests without a [`MatchedPath`] (the 404 fallback) pass through without
/// a span. The span's only allocation of its own is its name, and only when a
/// subscriber records it.
pub(crate) async fn request_span(request: Request, next: Next) -> Response {
    let Some(route) = request.extensions().get::<MatchedPath>() else {
        return next.run(request).await;
    };
    let route = route.as_str();
    let method = known_method(request.method());
    let span = tracing::info_span!(
        "HTTP request",
        otel.name = %SpanName { method, route },
        otel.kind = "server",
        http.request.method = method,
        http.route = route,
        network.protocol.version = protocol_version(request.version()),
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    // Before the span is entered: afterwards its context is fixed.
    pgline_telemetry::set_parent_from_headers(&span, request.headers());
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("error.type", status.as_str());
        span.record("otel.status_code", "error");
    }
    response
}

/// `{method} {route}`, formatted only by a subscriber that records it.
struct SpanName<'a> {
    method: &'static str,
    route: &'a str,
}

impl std::fmt::Display for SpanName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The conventions' name for a method outside the known set.
        let method = match self.method {
            OTHER_METHOD => "HTTP",
            method => method,
        };
        write!(f, "{method} {}", self.route)
    }
}

/// `http.request.method` of a method the conventions do not list: a caller
/// may send any token as a method, and a span name must stay bounded.
const OTHER_METHOD: &str = "_OTHER";

/// The method as the conventions record it: one of the nine methods of RFC
/// 9110 and RFC 5789, else `_OTHER`.
fn known_method(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "CONNECT" => "CONNECT",
        "OPTIONS" => "OPTIONS",
        "TRACE" => "TRACE",
        "PATCH" => "PATCH",
        _ => OTHER_METHOD,
    }
}

/// `network.protocol.version` of the request's HTTP version.
fn protocol_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_11 => "1.1",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::middleware;
    use axum::routing::{get, post};
    use tower::ServiceExt as _;
    use tower_http::timeout::TimeoutLayer;
    use tracing::field::{Field, Visit};
    use tracing::instrument::WithSubscriber as _;
    use tracing::span::{Attributes, Id, Record};
    use tracing_subscriber::layer::{Context, SubscriberExt as _};
    use tracing_subscriber::registry::LookupSpan;

    use super::*;

    /// Every span's fields as text, by span name (`otel.name` when given).
    #[derive(Clone, Default)]
    struct Spans(Arc<Mutex<Vec<BTreeMap<String, String>>>>);

    struct Fields<'a>(&'a mut BTreeMap<String, String>);

    impl Visit for Fields<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.insert(field.name().to_owned(), format!("{value:?}"));
        }

        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.insert(field.name().to_owned(), value.to_owned());
        }
    }

    /// Index of the span in `Spans`, kept in the registry's extensions.
    struct Index(usize);

    impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Spans {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
            let mut fields = BTreeMap::new();
            attrs.record(&mut Fields(&mut fields));
            let mut spans = self.0.lock().unwrap();
            spans.push(fields);
            let index = spans.len() - 1;
            ctx.span(id).unwrap().extensions_mut().insert(Index(index));
        }

        fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
            let span = ctx.span(id).unwrap();
            let extensions = span.extensions();
            let index = extensions.get::<Index>().unwrap().0;
            values.record(&mut Fields(&mut self.0.lock().unwrap()[index]));
        }
    }

    fn router() -> Router {
        Router::new()
            .route("/api/orders", post(|| async { StatusCode::CREATED }))
            .route("/api/orders/{order_number}", get(|| async { "an order" }))
            .route("/broken", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                    "late"
                }),
            )
            // As `app` does: the timeout inside, the span outermost.
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                std::time::Duration::from_millis(20),
            ))
            .route_layer(middleware::from_fn(request_span))
    }

    async fn spans_of(method: &str, uri: &str) -> (StatusCode, Vec<BTreeMap<String, String>>) {
        let spans = Spans::default();
        let subscriber = tracing_subscriber::registry().with(spans.clone());
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let response = router()
            .oneshot(request)
            .with_subscriber(subscriber)
            .await
            .unwrap();
        let recorded = spans.0.lock().unwrap().clone();
        (response.status(), recorded)
    }

    #[tokio::test]
    async fn names_the_span_after_the_route_never_the_path() {
        let (status, spans) = spans_of("GET", "/api/orders/MO-Narwhal-77").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(spans.len(), 1, "{spans:?}");
        let span = &spans[0];
        let field = |name: &str| span.get(name).map(String::as_str);
        assert_eq!(field("otel.name"), Some("GET /api/orders/{order_number}"));
        assert_eq!(field("otel.kind"), Some("server"));
        assert_eq!(field("http.request.method"), Some("GET"));
        assert_eq!(field("http.route"), Some("/api/orders/{order_number}"));
        assert_eq!(field("network.protocol.version"), Some("1.1"));
        assert_eq!(field("http.response.status_code"), Some("200"));
        assert_eq!(field("otel.status_code"), None);
        assert_eq!(field("error.type"), None);
        assert!(!format!("{spans:?}").contains("Narwhal"), "{spans:?}");
    }

    #[tokio::test]
    async fn marks_server_errors() {
        let (status, spans) = spans_of("GET", "/broken").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let span = &spans[0];
        assert_eq!(span["http.response.status_code"], "503");
        assert_eq!(span["error.type"], "503");
        assert_eq!(span["otel.status_code"], "error");
    }

    #[tokio::test]
    async fn records_the_timeout_answer() {
        let (status, spans) = spans_of("GET", "/slow").await;
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(spans[0]["otel.name"], "GET /slow");
        assert_eq!(spans[0]["http.response.status_code"], "408");
    }

    #[tokio::test]
    async fn unmatched_requests_and_odd_methods_stay_bounded() {
        let (status, spans) = spans_of("GET", "/no/such/P-Okapi-1").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(spans.is_empty(), "{spans:?}");

        // A matched path with a method it does not take: still the route's span.
        let (status, spans) = spans_of("BREW", "/api/orders").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(spans[0]["otel.name"], "HTTP /api/orders");
        assert_eq!(spans[0]["http.request.method"], "_OTHER");
        assert_eq!(spans[0]["http.response.status_code"], "405");
    }
}

//! Continuing a caller's trace from an incoming HTTP request's W3C
//! `traceparent` (and `tracestate`) headers.

use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Reads header values for the propagator.
struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// The remote trace context in `headers` (`traceparent`, `tracestate`), or an
/// empty context when there is none or it is malformed.
pub fn extract_trace_context(headers: &http::HeaderMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&Headers(headers))
}

/// Makes `span` continue the trace of the request whose `headers` are given,
/// when they carry a valid `traceparent`; returns whether they did.
///
/// Call it right after creating the request's span and before entering it.
/// Without a valid `traceparent` (or without the OpenTelemetry layer) the span
/// keeps its ordinary parent.
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// headers.insert(
///     "traceparent",
///     http::HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
/// );
/// let span = tracing::info_span!("request", otel.kind = "server");
/// // Without an OpenTelemetry layer installed there is nothing to attach to.
/// let _continued = pgline_telemetry::set_parent_from_headers(&span, &headers);
/// ```
pub fn set_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) -> bool {
    let context = extract_trace_context(headers);
    if !context.span().span_context().is_valid() {
        return false;
    }
    span.set_parent(context).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_a_valid_traceparent() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        let context = extract_trace_context(&headers);
        let span = context.span();
        let remote = span.span_context();
        assert!(remote.is_valid());
        assert!(remote.is_remote());
        assert_eq!(
            remote.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(remote.span_id().to_string(), "00f067aa0ba902b7");
    }

    #[test]
    fn ignores_missing_or_malformed_headers() {
        let mut headers = http::HeaderMap::new();
        assert!(
            !extract_trace_context(&headers)
                .span()
                .span_context()
                .is_valid()
        );
        headers.insert("traceparent", http::HeaderValue::from_static("garbage"));
        assert!(
            !extract_trace_context(&headers)
                .span()
                .span_context()
                .is_valid()
        );
        assert!(!set_parent_from_headers(&tracing::Span::none(), &headers));
    }
}

//! An in-process OTLP/gRPC collector for tests: it keeps every trace and
//! metrics export it receives, so a test can check the spans' names, parents
//! and attributes, and search everything for values that must not leak.
//!
//! Behind the cargo feature `otlp` (it pulls in tonic and opentelemetry-proto).
//!
//! ```no_run
//! use pgline_testkit::otlp::{Receiver, attr};
//!
//! # async fn demo() -> Result<(), pgline_testkit::TestkitError> {
//! let (receiver, addr) = Receiver::start().await?;
//! // Point the service at it: OTEL_EXPORTER_OTLP_ENDPOINT=http://{addr}
//! // ... run, then flush the service's telemetry ...
//! for (service, span) in receiver.spans() {
//!     println!("{service}: {} route={:?}", span.name, attr(&span.attributes, "http.route"));
//! }
//! assert!(!receiver.dump().contains("a-secret-value"));
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::trace::v1::Span;

use crate::TestkitError;

/// An OTLP/gRPC trace and metrics collector serving on 127.0.0.1; clones
/// share what was received.
#[derive(Clone, Default)]
pub struct Receiver {
    traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
    /// Counts spans and keeps nothing (benchmarks).
    counting_only: bool,
    span_count: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("trace_exports", &lock(&self.traces).len())
            .field("metrics_exports", &lock(&self.metrics).len())
            .finish()
    }
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        let spans: usize = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.span_count
            .fetch_add(spans as u64, std::sync::atomic::Ordering::Relaxed);
        if !self.counting_only {
            lock(&self.traces).push(request);
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        if !self.counting_only {
            lock(&self.metrics).push(request.into_inner());
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

impl Receiver {
    /// Serves on 127.0.0.1 at a free port, on the current Tokio runtime, until
    /// that runtime ends; returns the receiver and the address to export to
    /// (`http://{addr}`).
    pub async fn start() -> Result<(Self, SocketAddr), TestkitError> {
        Self::serve(Self::default()).await
    }

    /// Like [`start`](Receiver::start), but only counts the spans it
    /// receives ([`span_count`](Receiver::span_count)) and keeps nothing: a
    /// collector for benchmarks that export for minutes.
    pub async fn start_counting() -> Result<(Self, SocketAddr), TestkitError> {
        Self::serve(Self {
            counting_only: true,
            ..Self::default()
        })
        .await
    }

    /// Spans received so far.
    pub fn span_count(&self) -> u64 {
        self.span_count.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn serve(receiver: Self) -> Result<(Self, SocketAddr), TestkitError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| TestkitError::io("binding the OTLP receiver to 127.0.0.1", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| TestkitError::io("reading the OTLP receiver's address", e))?;
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .add_service(MetricsServiceServer::new(receiver.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
        tokio::spawn(server);
        Ok((receiver, addr))
    }

    /// Every span received, with the `service.name` of its resource (empty
    /// when the resource has none), in the order they arrived.
    pub fn spans(&self) -> Vec<(String, Span)> {
        let traces = lock(&self.traces);
        let mut spans = Vec::new();
        for request in traces.iter() {
            for resource_spans in &request.resource_spans {
                let service = resource_spans
                    .resource
                    .as_ref()
                    .and_then(|r| attr(&r.attributes, "service.name"))
                    .unwrap_or_default();
                for scope in &resource_spans.scope_spans {
                    for span in &scope.spans {
                        spans.push((service.clone(), span.clone()));
                    }
                }
            }
        }
        spans
    }

    /// Every metric received, in the order they arrived.
    pub fn metrics(&self) -> Vec<Metric> {
        let exports = lock(&self.metrics);
        exports
            .iter()
            .flat_map(|r| &r.resource_metrics)
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| s.metrics.clone())
            .collect()
    }

    /// Everything received (traces, then metrics) as `Debug` text, for
    /// searching for values that must not be there.
    pub fn dump(&self) -> String {
        format!("{:?}\n{:?}", lock(&self.traces), lock(&self.metrics))
    }
}

/// The value of the attribute `key` as text (strings as they are; integers,
/// booleans and doubles formatted; other values as `Debug`), or `None` when
/// `attributes` has no such key.
pub fn attr(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .map(text)
}

fn text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// A test that panicked while holding a lock must not hide what was received.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

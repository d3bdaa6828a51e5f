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
use std::time::Duration;

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

/// The ASCII headers (gRPC metadata) of a request, as (key, value) pairs.
pub type Headers = Vec<(String, String)>;

/// An OTLP/gRPC trace and metrics collector serving on 127.0.0.1; clones
/// share what was received.
#[derive(Clone, Default)]
pub struct Receiver {
    traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
    /// Counts spans and keeps nothing (benchmarks).
    counting_only: bool,
    span_count: Arc<std::sync::atomic::AtomicU64>,
    /// Trace exports still to refuse (`throttle` says with what).
    refuse: Arc<std::sync::atomic::AtomicU64>,
    /// How refusals are answered: `None` is `UNAVAILABLE`; `Some` is
    /// `RESOURCE_EXHAUSTED`, with a `RetryInfo` delay when it holds one.
    throttle: Arc<Mutex<Option<Option<Duration>>>>,
    /// When each trace export arrived, refused ones included.
    arrivals: Arc<Mutex<Vec<std::time::Instant>>>,
    /// The ASCII metadata of the last trace and metrics export.
    headers: Arc<Mutex<[Headers; 2]>>,
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
        lock(&self.arrivals).push(std::time::Instant::now());
        let refused = self.refuse.fetch_update(
            std::sync::atomic::Ordering::AcqRel,
            std::sync::atomic::Ordering::Acquire,
            |n| n.checked_sub(1),
        );
        if refused.is_ok() {
            return Err(match *lock(&self.throttle) {
                None => tonic::Status::unavailable("the collector is restarting"),
                Some(delay) => {
                    use tonic_types::{ErrorDetails, StatusExt as _};
                    tonic::Status::with_error_details(
                        tonic::Code::ResourceExhausted,
                        "the collector's memory limiter refused the data",
                        delay.map_or_else(ErrorDetails::new, |d| {
                            ErrorDetails::with_retry_info(Some(d))
                        }),
                    )
                }
            });
        }
        lock(&self.headers)[0] = ascii(request.metadata());
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
        lock(&self.headers)[1] = ascii(request.metadata());
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
    /// collector for benchmarks that export for minutes. It counts by
    /// skimming the protobuf (lengths only, nothing decoded or allocated
    /// per span), so that on a benchmark machine it takes as little as
    /// possible from the service it measures, as a collector on another
    /// machine would.
    pub async fn start_counting() -> Result<(Self, SocketAddr), TestkitError> {
        Self::serve(Self {
            counting_only: true,
            ..Self::default()
        })
        .await
    }

    /// Like [`start`](Receiver::start), but serving gRPC over TLS with the
    /// PEM certificate chain and key given: export to `https://localhost:{port}`
    /// with `cert_pem`'s CA trusted.
    pub async fn start_tls(
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<(Self, SocketAddr), TestkitError> {
        let tls = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(cert_pem, key_pem));
        Self::serve_with(Self::default(), Some(tls)).await
    }

    /// Refuses the next `n` trace exports with `UNAVAILABLE` (a collector
    /// restarting), then takes them again.
    pub fn refuse_next(&self, n: u64) {
        *lock(&self.throttle) = None;
        self.refuse.store(n, std::sync::atomic::Ordering::Release);
    }

    /// Refuses the next `n` trace exports with `RESOURCE_EXHAUSTED` (a
    /// collector over its memory limit), telling the exporter in `RetryInfo`
    /// to wait `delay` when one is given, then takes them again.
    pub fn throttle_next(&self, n: u64, delay: Option<Duration>) {
        *lock(&self.throttle) = Some(delay);
        self.refuse.store(n, std::sync::atomic::Ordering::Release);
    }

    /// When each trace export arrived, refused ones included.
    pub fn arrivals(&self) -> Vec<std::time::Instant> {
        lock(&self.arrivals).clone()
    }

    /// Trace exports still to refuse.
    pub fn refusals_left(&self) -> u64 {
        self.refuse.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The ASCII gRPC metadata (headers) of the last trace export, and of
    /// the last metrics export.
    pub fn headers(&self) -> (Headers, Headers) {
        let headers = lock(&self.headers);
        (headers[0].clone(), headers[1].clone())
    }

    /// Spans received so far.
    pub fn span_count(&self) -> u64 {
        self.span_count.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn serve(receiver: Self) -> Result<(Self, SocketAddr), TestkitError> {
        Self::serve_with(receiver, None).await
    }

    async fn serve_with(
        receiver: Self,
        tls: Option<tonic::transport::ServerTlsConfig>,
    ) -> Result<(Self, SocketAddr), TestkitError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| TestkitError::io("binding the OTLP receiver to 127.0.0.1", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| TestkitError::io("reading the OTLP receiver's address", e))?;
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let metrics = MetricsServiceServer::new(receiver.clone());
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls).map_err(|e| {
                TestkitError::io(
                    "configuring the OTLP receiver's TLS",
                    std::io::Error::other(e),
                )
            })?;
        }
        if receiver.counting_only {
            let server = builder
                .add_service(counting::Traces(receiver.span_count.clone()))
                .add_service(metrics)
                .serve_with_incoming(incoming);
            tokio::spawn(server);
        } else {
            let server = builder
                .add_service(TraceServiceServer::new(receiver.clone()))
                .add_service(metrics)
                .serve_with_incoming(incoming);
            tokio::spawn(server);
        }
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

/// The ASCII entries of a request's metadata.
fn ascii(metadata: &tonic::metadata::MetadataMap) -> Headers {
    metadata
        .iter()
        .filter_map(|entry| match entry {
            tonic::metadata::KeyAndValueRef::Ascii(key, value) => {
                Some((key.to_string(), value.to_str().ok()?.to_owned()))
            }
            tonic::metadata::KeyAndValueRef::Binary(..) => None,
        })
        .collect()
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

/// The trace service of the counting receiver: it reads each request's
/// bytes, counts the spans in them by their field tags and lengths, and
/// answers with an empty (successful) response.
mod counting {
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::task::{Context, Poll};

    use bytes::Buf as _;
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
    use tonic::codegen::{Body, BoxFuture, Service, StdError, http};
    use tonic::server::{Grpc, NamedService, UnaryService};
    use tonic::{Request, Response, Status};

    #[derive(Clone)]
    pub(super) struct Traces(pub(super) Arc<AtomicU64>);

    impl NamedService for Traces {
        const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    }

    impl<B> Service<http::Request<B>> for Traces
    where
        B: Body + Send + 'static,
        B::Error: Into<StdError> + Send + 'static,
    {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = BoxFuture<Self::Response, Infallible>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<B>) -> Self::Future {
            let count = self.0.clone();
            Box::pin(async move {
                if request.uri().path()
                    != "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
                {
                    return Ok(Status::unimplemented("only Export").into_http());
                }
                Ok(Grpc::new(Skim).unary(Count(count), request).await)
            })
        }
    }

    struct Count(Arc<AtomicU64>);

    impl UnaryService<u64> for Count {
        type Response = ();
        type Future = BoxFuture<Response<()>, Status>;

        fn call(&mut self, request: Request<u64>) -> Self::Future {
            self.0.fetch_add(request.into_inner(), Ordering::Relaxed);
            Box::pin(async { Ok(Response::new(())) })
        }
    }

    /// Decodes a request into its number of spans; encodes the empty
    /// response.
    #[derive(Clone, Copy)]
    struct Skim;

    impl Codec for Skim {
        type Encode = ();
        type Decode = u64;
        type Encoder = Skim;
        type Decoder = Skim;

        fn encoder(&mut self) -> Skim {
            Skim
        }

        fn decoder(&mut self) -> Skim {
            Skim
        }
    }

    impl Encoder for Skim {
        type Item = ();
        type Error = Status;

        fn encode(&mut self, _: (), _: &mut EncodeBuf<'_>) -> Result<(), Status> {
            // An empty ExportTraceServiceResponse is zero bytes.
            Ok(())
        }
    }

    impl Decoder for Skim {
        type Item = u64;
        type Error = Status;

        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<u64>, Status> {
            let bytes = src.copy_to_bytes(src.remaining());
            spans(&bytes)
                .map(Some)
                .ok_or_else(|| Status::invalid_argument("not an ExportTraceServiceRequest"))
        }
    }

    fn varint(buf: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = buf.split_first()?;
            *buf = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(value);
            }
        }
        None
    }

    /// The fields of one message: (field number, body of length-delimited
    /// fields); other wire types are skipped.
    fn fields(mut buf: &[u8]) -> Option<Vec<(u64, &[u8])>> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            let key = varint(&mut buf)?;
            match key & 7 {
                0 => {
                    varint(&mut buf)?;
                }
                1 => buf = buf.get(8..)?,
                5 => buf = buf.get(4..)?,
                2 => {
                    let len = usize::try_from(varint(&mut buf)?).ok()?;
                    out.push((key >> 3, buf.get(..len)?));
                    buf = &buf[len..];
                }
                _ => return None,
            }
        }
        Some(out)
    }

    /// Spans in an ExportTraceServiceRequest: field 1 (resource spans) →
    /// field 2 (scope spans) → field 2 (spans).
    fn spans(request: &[u8]) -> Option<u64> {
        let mut count = 0;
        for (field, resource_spans) in fields(request)? {
            if field != 1 {
                continue;
            }
            for (field, scope_spans) in fields(resource_spans)? {
                if field != 2 {
                    continue;
                }
                count += fields(scope_spans)?.iter().filter(|(f, _)| *f == 2).count() as u64;
            }
        }
        Some(count)
    }

    #[cfg(test)]
    mod tests {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
        use prost::Message as _;

        #[test]
        fn skimming_counts_every_span_of_every_scope_and_resource() {
            let scope = |n: usize| ScopeSpans {
                spans: vec![
                    Span {
                        name: "x".repeat(300),
                        start_time_unix_nano: 7,
                        flags: 0x101,
                        ..Span::default()
                    };
                    n
                ],
                ..ScopeSpans::default()
            };
            let request = ExportTraceServiceRequest {
                resource_spans: vec![
                    ResourceSpans {
                        scope_spans: vec![scope(3), scope(0), scope(200)],
                        schema_url: "s".to_owned(),
                        ..ResourceSpans::default()
                    },
                    ResourceSpans {
                        scope_spans: vec![scope(1)],
                        ..ResourceSpans::default()
                    },
                ],
            };
            let bytes = request.encode_to_vec();
            assert_eq!(super::spans(&bytes), Some(204));
            assert_eq!(super::spans(&bytes[..bytes.len() - 1]), None, "truncated");
            assert_eq!(super::spans(&[]), Some(0));
        }
    }
}

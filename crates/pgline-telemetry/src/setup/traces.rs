//! The OTLP gRPC client for spans: it sends the requests the span queue has
//! already encoded (see `traced::encode`), as they are.
//!
//! It is configured as `opentelemetry-otlp`'s tonic span exporter is, from
//! the same variables: the endpoint (a scheme-less one is `https://` unless
//! `OTEL_EXPORTER_OTLP_INSECURE=true`), `OTEL_EXPORTER_OTLP_TRACES_HEADERS`
//! or else `OTEL_EXPORTER_OTLP_HEADERS` (`key=value,…`, values URL-decoded),
//! and a timeout per export. Like it, it retries an export the collector
//! could not take for now, waiting as long as the collector's `RetryInfo`
//! asks (see [`retry_of`] and [`next_wait`]). Compression is not offered.
//! Metrics still go through `opentelemetry-otlp`'s exporter.
//!
//! An `https` endpoint is verified against the public (Mozilla) roots plus
//! the PEM file in `OTEL_EXPORTER_OTLP_CERTIFICATE`, and a client
//! certificate is presented when `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` and
//! `OTEL_EXPORTER_OTLP_CLIENT_KEY` name one ([`TlsFiles`]; each also in a
//! `_TRACES_`/`_METRICS_` form that wins for its signal).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use prost::Message as _;
use tonic::Status;
use tonic::codec::{DecodeBuf, Decoder, Streaming};
use tonic::metadata::MetadataMap;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::export::{EXPORT_TARGET, ExportHealth, Signal};
use crate::TelemetryError;
use crate::traced::queue::Sink;

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Drops what it is sent: the whole in-process cost of tracing (spans made,
/// queued and encoded) without a collector. For benchmarks.
#[derive(Debug)]
pub(crate) struct Discard;

impl Sink for Discard {
    fn send(&mut self, _request: Vec<u8>, _spans: usize) -> OTelSdkResult {
        Ok(())
    }
}

/// Sends encoded span batches to an OTLP collector over gRPC.
pub(crate) struct TraceClient {
    exporter: Exporter,
    runtime: tokio::runtime::Handle,
    health: Arc<ExportHealth>,
    partial_reported: bool,
}

impl std::fmt::Debug for TraceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The metadata may hold credentials: not shown.
        f.debug_struct("TraceClient").finish_non_exhaustive()
    }
}

impl TraceClient {
    /// A client for `endpoint`, whose channel runs on `runtime`. Nothing
    /// connects until the first export.
    pub(crate) fn new(
        endpoint: &str,
        timeout: Duration,
        tls: &TlsFiles,
        extra_headers: &MetadataMap,
        runtime: tokio::runtime::Handle,
        health: Arc<ExportHealth>,
    ) -> Result<Self, TelemetryError> {
        let invalid = |reason: String| TelemetryError::Endpoint {
            endpoint: endpoint.to_owned(),
            reason,
        };
        let uri = with_scheme(endpoint, insecure("TRACES"));
        let mut built =
            Endpoint::from_shared(uri.clone()).map_err(|e| invalid(format!("not a URI ({e})")))?;
        if is_https(&uri) {
            built = built
                .tls_config(tls.config()?)
                .map_err(|e| invalid(format!("TLS: {e}")))?;
        } else if !tls.named().is_empty() {
            tracing::warn!(
                target: EXPORT_TARGET,
                endpoint,
                files = ?tls.named(),
                "TLS files are set but the OTLP endpoint is not https: they are not used, \
                 and telemetry (headers included) is sent in clear text"
            );
        }
        let built = built
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("pgline/", env!("CARGO_PKG_VERSION")))
            .map_err(|e| invalid(format!("user agent: {e}")))?;
        let channel = {
            // The channel's worker is spawned on the export runtime.
            let _entered = runtime.enter();
            built.connect_lazy()
        };
        let (from_env, skipped) = headers_from_env();
        // The variable's value wins over code's for the same key, as in
        // `opentelemetry-otlp` (which the metrics go through).
        let mut headers = extra_headers.clone().into_headers();
        headers.extend(from_env);
        let headers = call_headers(headers);
        for (variable, key) in skipped {
            // The value may be a credential: only the key is named.
            tracing::warn!(
                target: EXPORT_TARGET,
                variable,
                key,
                "an OTLP header is not a valid gRPC metadata entry and is not sent"
            );
        }
        Ok(Self {
            exporter: Exporter {
                channel,
                headers,
                timeout,
            },
            runtime,
            health,
            partial_reported: false,
        })
    }
}

/// What one export needs; cloned into the task that runs it.
#[derive(Clone)]
struct Exporter {
    channel: Channel,
    /// The call's headers: gRPC's own and the export headers.
    headers: http::HeaderMap,
    /// The whole export's budget, retries included.
    timeout: Duration,
}

impl Exporter {
    /// Sends `request`, retrying as [`retry_of`] and [`next_wait`] say while the retries
    /// fit in the export timeout.
    async fn export(&mut self, request: Bytes) -> Result<ExportTraceServiceResponse, String> {
        let started = Instant::now();
        let mut delay = RETRY_FIRST_DELAY;
        let mut cap = RETRY_MAX_DELAY;
        let mut retries = 0;
        loop {
            match self.attempt(request.clone()).await {
                Ok(response) => return Ok(response),
                Err(Attempt::Failed(status)) => {
                    let asked = match retry_of(&status) {
                        Retry::Never => return Err(describe(&status)),
                        Retry::Backoff => None,
                        Retry::After(asked) => Some(asked),
                    };
                    if retries == MAX_RETRIES {
                        return Err(describe(&status));
                    }
                    let wait;
                    (wait, delay, cap) = next_wait(delay, cap, asked, jitter());
                    let elapsed = started.elapsed();
                    if elapsed + wait >= self.timeout {
                        let mut text = describe(&status);
                        if let Some(asked) = asked.filter(|asked| elapsed + *asked >= self.timeout)
                        {
                            text.push_str(&format!(
                                " (the collector asked to wait {asked:?}, which would pass \
                                 the export timeout of {:?}; the batch is dropped)",
                                self.timeout
                            ));
                        }
                        return Err(text);
                    }
                    tokio::time::sleep(wait).await;
                    retries += 1;
                }
                Err(Attempt::NotReady(text)) => return Err(text),
            }
        }
    }

    /// One `Export` call, made on the channel directly rather than through
    /// tonic's `Grpc` client, whose codec would copy the finished request
    /// into a buffer of its own: the body is the 5-byte gRPC message prefix
    /// and then `request` itself. The answer is read as `Grpc::unary` reads
    /// it.
    async fn attempt(&mut self, request: Bytes) -> Result<ExportTraceServiceResponse, Attempt> {
        use tonic::client::GrpcService as _;
        std::future::poll_fn(|cx| self.channel.poll_ready(cx))
            .await
            .map_err(|e| {
                let mut text = "span export failed: the channel is not ready".to_owned();
                causes(&mut text, Some(&e));
                Attempt::NotReady(text)
            })?;
        let mut call = http::Request::new(tonic::body::Body::new(Framed::new(request)));
        *call.method_mut() = http::Method::POST;
        *call.uri_mut() = http::Uri::from_static(EXPORT_PATH);
        *call.version_mut() = http::Version::HTTP_2;
        *call.headers_mut() = self.headers.clone();
        let response = self
            .channel
            .call(call)
            .await
            .map_err(|e| Attempt::Failed(Status::from_error(e.into())))?;
        if let Some(status) = Status::from_header_map(response.headers()) {
            // A trailers-only answer: a status and no message.
            return Err(Attempt::Failed(match status.code() {
                tonic::Code::Ok => Status::internal("the collector answered without a message"),
                _ => status,
            }));
        }
        let status_code = response.status();
        let mut body = Streaming::new_response(Raw, response.into_body(), status_code, None, None);
        let message = body
            .message()
            .await
            .map_err(Attempt::Failed)?
            .ok_or_else(|| {
                Attempt::Failed(Status::internal("the collector answered without a message"))
            })?;
        // The status comes in the trailers.
        body.trailers().await.map_err(Attempt::Failed)?;
        Ok(message)
    }
}

/// The headers of every export call: what tonic's client sends for a unary
/// call (`te: trailers`, `content-type: application/grpc`; the user agent is
/// the channel's) and the export headers, less those gRPC reserves, which
/// tonic would drop too.
fn call_headers(mut headers: http::HeaderMap) -> http::HeaderMap {
    for reserved in [
        "te",
        "content-type",
        "grpc-message",
        "grpc-message-type",
        "grpc-status",
    ] {
        headers.remove(reserved);
    }
    headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    headers
}

/// An export call's body: the gRPC message prefix (not compressed, the
/// length), then the message, each a frame of its own; nothing is copied.
struct Framed {
    prefix: Option<Bytes>,
    message: Option<Bytes>,
}

impl Framed {
    fn new(message: Bytes) -> Self {
        let mut prefix = [0u8; 5];
        // A request is far below 4 GiB (the queue sends at 3 MiB).
        let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
        prefix[1..].copy_from_slice(&len.to_be_bytes());
        Self {
            prefix: Some(Bytes::copy_from_slice(&prefix)),
            message: Some(message),
        }
    }
}

impl http_body::Body for Framed {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let next = self.prefix.take().or_else(|| self.message.take());
        std::task::Poll::Ready(next.map(|data| Ok(http_body::Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.message.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let len = |b: &Option<Bytes>| b.as_ref().map_or(0, |b| b.len() as u64);
        http_body::SizeHint::with_exact(len(&self.prefix) + len(&self.message))
    }
}

/// Why one export attempt failed.
enum Attempt {
    /// The collector (or the transport) answered with this status.
    Failed(Status),
    /// The channel could not take the call.
    NotReady(String),
}

/// Retries after the first attempt, and their delays: `opentelemetry-otlp`'s
/// recommended policy (3 retries, from 100 ms doubling up to 1.6 s, plus up
/// to 100 ms of jitter), bounded by the export timeout.
const MAX_RETRIES: u32 = 3;
const RETRY_FIRST_DELAY: Duration = Duration::from_millis(100);
const RETRY_MAX_DELAY: Duration = Duration::from_millis(1600);

/// Up to 100 ms, from the clock's nanoseconds (two exporters that failed
/// together do not retry together).
fn jitter() -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    Duration::from_millis(u64::from(nanos % 101))
}

/// The longest wait a collector's `RetryInfo` is taken at, as in
/// `opentelemetry-otlp` (the export timeout bounds it further).
const MAX_THROTTLE: Duration = Duration::from_secs(30);

/// Whether and how a failed request is sent again.
#[derive(Debug, PartialEq, Eq)]
enum Retry {
    /// Final: the request is dropped.
    Never,
    /// After the exponential backoff.
    Backoff,
    /// After at least the delay the collector asked for in `RetryInfo` (as
    /// sent: zero, or longer than [`MAX_THROTTLE`]).
    After(Duration),
}

/// What the OTLP specification says of a failed request's status:
///
/// - the transient codes are retried after the backoff;
/// - `UNAVAILABLE` is, too, or after its `RetryInfo` delay when it has one;
/// - `RESOURCE_EXHAUSTED` (a collector over its memory limit) is retried
///   only when the collector sends `RetryInfo`;
/// - every other code is final.
fn retry_of(status: &Status) -> Retry {
    use tonic::Code;
    use tonic_types::StatusExt as _;
    let asked = || {
        status
            .get_details_retry_info()
            .and_then(|info| info.retry_delay)
    };
    match status.code() {
        Code::ResourceExhausted => asked().map_or(Retry::Never, Retry::After),
        Code::Unavailable => match asked().filter(|delay| !delay.is_zero()) {
            Some(delay) => Retry::After(delay),
            None => Retry::Backoff,
        },
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::DataLoss => Retry::Backoff,
        _ => Retry::Never,
    }
}

/// The wait before the next attempt and the backoff's next `(delay, cap)`,
/// as `opentelemetry-otlp` computes them: the collector's delay (capped at
/// [`MAX_THROTTLE`]) raises the backoff's delay, and its cap when it is
/// longer, but never lowers it; the wait is the delay plus `jitter`, within
/// the cap; the delay then doubles.
fn next_wait(
    delay: Duration,
    cap: Duration,
    asked: Option<Duration>,
    jitter: Duration,
) -> (Duration, Duration, Duration) {
    let (mut delay, mut cap) = (delay, cap);
    if let Some(asked) = asked.map(|asked| asked.min(MAX_THROTTLE)) {
        if asked > cap {
            cap = MAX_THROTTLE;
        }
        delay = delay.max(asked);
    }
    let wait = delay.saturating_add(jitter).min(cap);
    (wait, delay.saturating_mul(2).min(cap), cap)
}

impl Sink for TraceClient {
    fn send(&mut self, request: Vec<u8>, _spans: usize) -> OTelSdkResult {
        // The export runs as a task of the export runtime, and this thread
        // waits for it: if the runtime stops meanwhile (a shutdown that
        // gave up waiting), the task is cancelled, not this thread panicked
        // by timers of a runtime that is gone.
        let mut exporter = self.exporter.clone();
        let task = self
            .runtime
            .spawn(async move { exporter.export(Bytes::from(request)).await });
        let exported = futures_executor::block_on(task).unwrap_or_else(|_| {
            Err("span export stopped: the export runtime shut down".to_owned())
        });
        let result = match exported {
            Ok(response) => {
                if let Some(partial) = response.partial_success
                    && (partial.rejected_spans > 0 || !partial.error_message.is_empty())
                    && !std::mem::replace(&mut self.partial_reported, true)
                {
                    // Once: the collector says why, and it will say it again.
                    tracing::warn!(
                        target: EXPORT_TARGET,
                        rejected_spans = partial.rejected_spans,
                        message = %partial.error_message,
                        "the OTLP collector rejected some spans (reported once)"
                    );
                }
                Ok(())
            }
            Err(text) => Err(OTelSdkError::InternalFailure(text)),
        };
        self.health.report(Signal::Traces, &result);
        result
    }
}

/// A failed export in a line: the gRPC code and, for a failure of the
/// transport (connection refused, timeout), its causes. A collector's own
/// message is left out: it may echo a credential.
fn describe(status: &Status) -> String {
    let mut text = format!("span export failed with gRPC code {:?}", status.code());
    causes(&mut text, std::error::Error::source(status));
    text
}

/// Appends `error` and its sources to `text`, each after `: ` (a cause
/// that says what the one before it said is left out).
fn causes(text: &mut String, mut error: Option<&(dyn std::error::Error + 'static)>) {
    let mut last = String::new();
    while let Some(cause) = error {
        let said = cause.to_string();
        if said != last {
            text.push_str(": ");
            text.push_str(&said);
        }
        last = said;
        error = cause.source();
    }
}

/// Whether `OTEL_EXPORTER_OTLP_{signal}_INSECURE`, else
/// `OTEL_EXPORTER_OTLP_INSECURE`, is `true`: a scheme-less endpoint is then
/// plain `http://`.
pub(crate) fn insecure(signal: &str) -> bool {
    [
        format!("OTEL_EXPORTER_OTLP_{signal}_INSECURE"),
        "OTEL_EXPORTER_OTLP_INSECURE".to_owned(),
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok())
    .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Whether a URI (with its scheme) asks for TLS.
pub(crate) fn is_https(uri: &str) -> bool {
    uri.get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
}

/// A file named by a variable.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Named {
    variable: String,
    path: PathBuf,
}

impl Named {
    fn read(&self) -> Result<Vec<u8>, TelemetryError> {
        std::fs::read(&self.path).map_err(|e| self.error(format!("cannot read it: {e}")))
    }

    fn error(&self, what: String) -> TelemetryError {
        TelemetryError::Tls {
            variable: self.variable.clone(),
            reason: format!("{}: {what}", self.path.display()),
        }
    }

    /// The file, when it holds PEM certificates and nothing unreadable: a
    /// DER file or a key in the wrong place is reported now, not as an
    /// unknown issuer at the first export.
    fn certificates(&self) -> Result<Vec<u8>, TelemetryError> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;
        let pem = self.read()?;
        let mut count = 0;
        for certificate in CertificateDer::pem_slice_iter(&pem) {
            certificate.map_err(|e| self.error(format!("not PEM certificates ({e})")))?;
            count += 1;
        }
        if count == 0 {
            return Err(self.error("holds no PEM certificate".to_owned()));
        }
        Ok(pem)
    }

    /// The file, when it holds a PEM private key.
    fn key(&self) -> Result<Vec<u8>, TelemetryError> {
        use rustls::pki_types::PrivateKeyDer;
        use rustls::pki_types::pem::PemObject as _;
        let pem = self.read()?;
        PrivateKeyDer::from_pem_slice(&pem)
            .map_err(|e| self.error(format!("holds no PEM private key ({e})")))?;
        Ok(pem)
    }
}

/// The TLS files of one signal's export: a CA to trust besides the public
/// roots, and a client certificate with its key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TlsFiles {
    ca: Option<Named>,
    certificate: Option<Named>,
    key: Option<Named>,
}

impl TlsFiles {
    /// From `OTEL_EXPORTER_OTLP_{signal}_CERTIFICATE`, `_CLIENT_CERTIFICATE`
    /// and `_CLIENT_KEY`, each else its form without the signal.
    pub(crate) fn from_env(signal: &str) -> Self {
        let named = |what: &str| {
            [
                format!("OTEL_EXPORTER_OTLP_{signal}_{what}"),
                format!("OTEL_EXPORTER_OTLP_{what}"),
            ]
            .into_iter()
            .find_map(|variable| {
                let path = std::env::var_os(&variable).filter(|p| !p.is_empty())?;
                Some(Named {
                    variable,
                    path: path.into(),
                })
            })
        };
        Self {
            ca: named("CERTIFICATE"),
            certificate: named("CLIENT_CERTIFICATE"),
            key: named("CLIENT_KEY"),
        }
    }

    /// The variables (or code) that named files, for a warning.
    pub(crate) fn named(&self) -> Vec<&str> {
        [&self.ca, &self.certificate, &self.key]
            .into_iter()
            .flatten()
            .map(|n| n.variable.as_str())
            .collect()
    }

    /// Trusts the CA certificates in the PEM file at `path` (given in code,
    /// in place of the variable).
    pub(crate) fn with_ca(mut self, path: PathBuf) -> Self {
        self.ca = Some(Named {
            variable: "the OTLP CA certificate".to_owned(),
            path,
        });
        self
    }

    /// The client TLS configuration: the public roots, the CA file's
    /// certificates, the client identity. The files are read now, so a
    /// missing one is reported when telemetry is built.
    pub(crate) fn config(&self) -> Result<ClientTlsConfig, TelemetryError> {
        let mut config = ClientTlsConfig::new().with_webpki_roots();
        if let Some(ca) = &self.ca {
            config = config.ca_certificate(Certificate::from_pem(ca.certificates()?));
        }
        match (&self.certificate, &self.key) {
            (Some(certificate), Some(key)) => {
                config =
                    config.identity(Identity::from_pem(certificate.certificates()?, key.key()?));
            }
            (Some(only), None) | (None, Some(only)) => {
                return Err(TelemetryError::Tls {
                    variable: only.variable.clone(),
                    reason:
                        "a client certificate needs both OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE \
                             and OTEL_EXPORTER_OTLP_CLIENT_KEY"
                            .to_owned(),
                });
            }
            (None, None) => {}
        }
        Ok(config)
    }
}

/// `endpoint` with a scheme: as given when it has one, else `https://`, or
/// `http://` when `insecure`.
pub(crate) fn with_scheme(endpoint: &str, insecure: bool) -> String {
    let has_scheme = endpoint
        .split_once("://")
        .is_some_and(|(scheme, _)| !scheme.contains(['/', '?', '#']));
    if has_scheme {
        endpoint.to_owned()
    } else if insecure {
        format!("http://{endpoint}")
    } else {
        format!("https://{endpoint}")
    }
}

/// The export headers: `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, else
/// `OTEL_EXPORTER_OTLP_HEADERS`; and the (variable, key) of each entry that
/// cannot be sent.
fn headers_from_env() -> (http::HeaderMap, Vec<(&'static str, String)>) {
    for variable in [
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "OTEL_EXPORTER_OTLP_HEADERS",
    ] {
        if let Ok(value) = std::env::var(variable) {
            let (metadata, skipped) = parse_headers(&value);
            return (
                metadata,
                skipped.into_iter().map(|key| (variable, key)).collect(),
            );
        }
    }
    (http::HeaderMap::new(), Vec::new())
}

/// `key=value,…` as the OTLP exporters read it: entries trimmed, values
/// URL-decoded, entries with an empty key or value ignored; then as
/// [`header_map`](super::header_map) takes them (a `-bin` key's value is
/// base64). Also the keys of the entries that cannot be sent.
fn parse_headers(text: &str) -> (http::HeaderMap, Vec<String>) {
    let entries: Vec<(&str, String)> = text
        .split_terminator(',')
        .filter_map(|entry| {
            let (key, value) = entry.split_once('=')?;
            let (key, value) = (key.trim(), value.trim());
            let value = url_decode(value).unwrap_or_else(|| value.to_owned());
            (!key.is_empty() && !value.is_empty()).then_some((key, value))
        })
        .collect();
    super::header_map(entries.iter().map(|(k, v)| (*k, v.as_str())))
}

/// Percent-decoding; `None` when an escape is malformed or the result is not
/// UTF-8.
fn url_decode(text: &str) -> Option<String> {
    let raw = text.as_bytes();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The decoder of the export call's answer (`prost`).
#[derive(Debug, Clone, Copy)]
struct Raw;

impl Decoder for Raw {
    type Item = ExportTraceServiceResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        ExportTraceServiceResponse::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(format!("undecodable export response: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_follow_the_otlp_specification_and_the_collector_s_hints() {
        use tonic::Code;
        use tonic_types::{ErrorDetails, StatusExt as _};
        let hinted = |code, delay| {
            Status::with_error_details(code, "busy", ErrorDetails::with_retry_info(Some(delay)))
        };
        let second = Duration::from_secs(1);
        for code in [
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::OutOfRange,
            Code::DataLoss,
        ] {
            assert_eq!(retry_of(&Status::new(code, "")), Retry::Backoff, "{code:?}");
        }
        assert_eq!(retry_of(&Status::unavailable("")), Retry::Backoff);
        assert_eq!(
            retry_of(&hinted(Code::Unavailable, second)),
            Retry::After(second)
        );
        // A zero delay on UNAVAILABLE says nothing more than the code.
        assert_eq!(
            retry_of(&hinted(Code::Unavailable, Duration::ZERO)),
            Retry::Backoff
        );
        // RESOURCE_EXHAUSTED is retried only with RetryInfo, even a zero one.
        assert_eq!(retry_of(&Status::resource_exhausted("")), Retry::Never);
        assert_eq!(
            retry_of(&hinted(Code::ResourceExhausted, second)),
            Retry::After(second)
        );
        assert_eq!(
            retry_of(&hinted(Code::ResourceExhausted, Duration::ZERO)),
            Retry::After(Duration::ZERO)
        );
        for code in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::Unimplemented,
            Code::Internal,
        ] {
            assert_eq!(retry_of(&hinted(code, second)), Retry::Never, "{code:?}");
        }
    }

    #[test]
    fn waits_grow_from_the_collector_s_delay_and_never_shrink_below_the_backoff() {
        let ms = Duration::from_millis;
        let jitter = ms(7);
        // The plain backoff: 100, 200, 400, … ms plus jitter, within 1.6 s.
        let (mut delay, mut cap) = (RETRY_FIRST_DELAY, RETRY_MAX_DELAY);
        let mut waits = Vec::new();
        for _ in 0..6 {
            let wait;
            (wait, delay, cap) = next_wait(delay, cap, None, jitter);
            waits.push(wait);
        }
        assert_eq!(
            waits,
            [ms(107), ms(207), ms(407), ms(807), ms(1600), ms(1600)]
        );
        // A shorter delay than the backoff's does not lower it; a zero one
        // (RESOURCE_EXHAUSTED's "now") is the backoff.
        let (wait, next, _) = next_wait(ms(400), RETRY_MAX_DELAY, Some(ms(50)), jitter);
        assert_eq!((wait, next), (ms(407), ms(800)));
        let (wait, _, _) = next_wait(ms(100), RETRY_MAX_DELAY, Some(Duration::ZERO), jitter);
        assert_eq!(wait, ms(107));
        // A longer one seeds the backoff, which doubles from it.
        let (wait, next, cap) = next_wait(ms(100), RETRY_MAX_DELAY, Some(ms(300)), jitter);
        assert_eq!((wait, next, cap), (ms(307), ms(600), RETRY_MAX_DELAY));
        // Past the cap it lifts the cap, to MAX_THROTTLE at most.
        let (wait, next, cap) = next_wait(
            ms(100),
            RETRY_MAX_DELAY,
            Some(Duration::from_secs(5)),
            jitter,
        );
        assert_eq!(
            (wait, next, cap),
            (
                Duration::from_secs(5) + jitter,
                Duration::from_secs(10),
                MAX_THROTTLE
            )
        );
        let (wait, _, cap) = next_wait(
            ms(100),
            RETRY_MAX_DELAY,
            Some(Duration::from_secs(86_400)),
            jitter,
        );
        assert_eq!((wait, cap), (MAX_THROTTLE, MAX_THROTTLE));
    }

    #[test]
    fn the_body_is_the_grpc_prefix_then_the_request_itself() {
        use http_body::Body as _;
        let request = Bytes::from(vec![7u8; 300]);
        let mut body = std::pin::pin!(Framed::new(request.clone()));
        assert_eq!(body.size_hint().exact(), Some(305));
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut next = || match body.as_mut().poll_frame(&mut cx) {
            std::task::Poll::Ready(Some(Ok(frame))) => frame.into_data().ok(),
            _ => None,
        };
        assert_eq!(next().as_deref(), Some(&[0u8, 0, 0, 1, 44][..]));
        // The request's own bytes, not a copy.
        assert_eq!(next().map(|data| data.as_ptr()), Some(request.as_ptr()));
        assert_eq!(next(), None);
    }

    #[test]
    fn export_calls_carry_grpc_s_headers_and_not_reserved_ones() {
        let (headers, _) =
            parse_headers("content-type=text/plain,te=gzip,grpc-status=0,x-plant=line-7");
        let headers = call_headers(headers);
        assert_eq!(headers["content-type"], "application/grpc");
        assert_eq!(headers["te"], "trailers");
        assert_eq!(headers["x-plant"], "line-7");
        assert!(headers.get("grpc-status").is_none());
        assert_eq!(headers.len(), 3);
    }

    #[test]
    fn headers_parse_as_the_otlp_exporters_read_them() {
        let (headers, skipped) = parse_headers(
            " Authorization=Bearer%20s3cr3t , x-tenant=plant-7,empty=, =v,bad key=1,x-sig-bin=AAEC,\
             x-bad-bin=%21%21",
        );
        let metadata = MetadataMap::from_headers(headers);
        assert_eq!(
            metadata.get("authorization").and_then(|v| v.to_str().ok()),
            Some("Bearer s3cr3t")
        );
        assert_eq!(
            metadata.get("x-tenant").and_then(|v| v.to_str().ok()),
            Some("plant-7")
        );
        // Binary metadata, its value base64 as written.
        assert_eq!(
            metadata
                .get_bin("x-sig-bin")
                .and_then(|v| v.to_bytes().ok())
                .as_deref(),
            Some(&[0u8, 1, 2][..])
        );
        assert_eq!(metadata.len(), 3);
        // Named by key: "!!" is not base64.
        assert_eq!(skipped, ["bad key", "x-bad-bin"]);
        // A malformed escape is kept as written.
        let (headers, _) = parse_headers("k=100%");
        let metadata = MetadataMap::from_headers(headers);
        assert_eq!(
            metadata.get("k").and_then(|v| v.to_str().ok()),
            Some("100%")
        );
    }

    #[test]
    fn a_scheme_less_endpoint_is_https_unless_insecure() {
        assert_eq!(
            with_scheme("collector:4317", false),
            "https://collector:4317"
        );
        assert_eq!(with_scheme("collector:4317", true), "http://collector:4317");
        assert_eq!(
            with_scheme("http://collector:4317", false),
            "http://collector:4317"
        );
    }

    #[test]
    fn a_malformed_endpoint_or_a_missing_tls_file_is_refused_by_name() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let client = |endpoint: &str, tls: &TlsFiles| {
            TraceClient::new(
                endpoint,
                Duration::from_secs(1),
                tls,
                &MetadataMap::new(),
                runtime.handle().clone(),
                ExportHealth::new(endpoint),
            )
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
        };
        let error = client("http://bad host:4317", &TlsFiles::default());
        assert!(error.contains("http://bad host:4317"), "{error}");

        let missing = TlsFiles::default().with_ca("/nonexistent/ca.pem".into());
        let error = client("https://collector:4317", &missing);
        assert!(error.contains("/nonexistent/ca.pem"), "{error}");
        // Over plain http the CA file is not needed, so not read.
        assert_eq!(client("http://collector:4317", &missing), "");

        // A file that is not PEM (DER, say) is refused now, by name.
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let der = dir.path().join("ca.der");
        std::fs::write(&der, [0x30, 0x82, 0x01, 0x0a]).unwrap_or_else(|e| panic!("{e}"));
        let error = client(
            "https://collector:4317",
            &TlsFiles::default().with_ca(der.clone()),
        );
        assert!(
            error.contains("ca.der") && error.contains("no PEM certificate"),
            "{error}"
        );

        let half = TlsFiles {
            key: Some(Named {
                variable: "OTEL_EXPORTER_OTLP_CLIENT_KEY".to_owned(),
                path: "/k.pem".into(),
            }),
            ..TlsFiles::default()
        };
        let error = client("https://collector:4317", &half);
        assert!(
            error.starts_with("OTEL_EXPORTER_OTLP_CLIENT_KEY:"),
            "{error}"
        );
        // Public roots only: builds (and would verify the collector).
        assert_eq!(client("https://collector:4317", &TlsFiles::default()), "");
    }

    #[test]
    fn https_is_recognised_in_any_case() {
        assert!(is_https("https://c:4317"));
        assert!(is_https("HTTPS://c:4317"));
        assert!(!is_https("http://c:4317"));
        assert!(!is_https("http"));
    }
}

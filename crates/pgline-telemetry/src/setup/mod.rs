//! Setting telemetry up: [`Telemetry`] (the tracer and meter providers),
//! [`init`] for the composition root, and the [`TelemetryGuard`] that flushes
//! on shutdown.

pub(crate) mod export;
mod subscriber;
mod traces;
mod transport;

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use pgline_config::{Config, LogConfig, TelemetryConfig};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::traced::queue::{BatchConfig, Sink, SpanQueue};
use crate::traced::spans::{DbTracer, SamplerChoice};
use crate::{Metrics, PoolObserver, TelemetryError};
use export::{ExportHealth, ReportingMetricExporter};
pub use subscriber::LogFormat;
use traces::{Discard, TlsFiles, TraceClient};

/// How long one OTLP export may take (connect included) before it counts as
/// failed. Exports run on telemetry's own threads, never on a caller's path.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// Acquires shorter than this get no span of their own (see [`PoolObserver`]).
const DEFAULT_ACQUIRE_SPAN_THRESHOLD: Duration = Duration::from_millis(1);
/// How long shutdown waits for the last spans to be exported.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The span queue every span goes through: those made through `tracing`
/// (requests) and the database spans. It encodes them for `resource` (the
/// queue ignores the provider's call).
fn span_queue(
    sink: impl Sink,
    resource: &Resource,
    config: BatchConfig,
) -> Result<SpanQueue, TelemetryError> {
    SpanQueue::start(sink, resource, config).map_err(TelemetryError::Thread)
}

/// Headers given in code as gRPC metadata; the key of the first that gRPC
/// cannot carry.
fn metadata(headers: &[(String, String)]) -> Result<tonic::metadata::MetadataMap, TelemetryError> {
    let (map, skipped) = header_map(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    match skipped.into_iter().next() {
        Some(key) => Err(TelemetryError::Header { key }),
        None => Ok(tonic::metadata::MetadataMap::from_headers(map)),
    }
}

/// `(key, value)` entries as the headers of an export, as `opentelemetry-otlp`
/// takes them: keys lower-cased; a key ending in `-bin` is binary gRPC
/// metadata, its value base64. Also the keys of the entries gRPC cannot
/// carry (a malformed key or value, a `-bin` value that is not base64),
/// which are left out.
pub(crate) fn header_map<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> (http::HeaderMap, Vec<String>) {
    let mut headers = http::HeaderMap::new();
    let mut skipped = Vec::new();
    for (key, value) in entries {
        let parsed = (
            http::HeaderName::from_bytes(key.to_ascii_lowercase().as_bytes()),
            http::HeaderValue::from_str(value),
        );
        match parsed {
            (Ok(name), Ok(value)) if !name.as_str().ends_with("-bin") || is_base64(&value) => {
                headers.append(name, value);
            }
            _ => skipped.push(key.to_owned()),
        }
    }
    (headers, skipped)
}

/// Whether a binary metadata value decodes (as tonic will decode it).
fn is_base64(value: &http::HeaderValue) -> bool {
    let mut one = http::HeaderMap::new();
    one.insert(http::HeaderName::from_static("v-bin"), value.clone());
    tonic::metadata::MetadataMap::from_headers(one)
        .get_bin("v-bin")
        .is_some_and(|value| value.to_bytes().is_ok())
}

/// The OpenTelemetry resource of the service: `service.name` and
/// `service.version`, plus what `OTEL_RESOURCE_ATTRIBUTES` adds.
pub(crate) fn resource(service_name: &str) -> Resource {
    Resource::builder()
        .with_service_name(service_name.to_owned())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The tracer and meter providers of a service, and the [`Metrics`] built on
/// the meter.
///
/// [`init`] builds one from the configuration and installs it globally; tests
/// and benchmarks build one with [`Telemetry::builder`] and install its
/// [`subscriber`](Telemetry::subscriber) where they need it (for one future
/// with `tracing::instrument::WithSubscriber`, for one thread with
/// `tracing::subscriber::set_default`).
///
/// Tracing is on when export is enabled (`OTEL_EXPORTER_OTLP_ENDPOINT` set,
/// `OTEL_SDK_DISABLED` not `true`) or when the builder is told to
/// [`discard_export`](TelemetryBuilder::discard_export). Metrics always are:
/// they are read as Prometheus text even without export.
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
    tracer: Option<SdkTracer>,
    metrics: Metrics,
    endpoint: Option<String>,
    /// What the configuration asked for and does not get
    /// (`OTEL_TRACES_SAMPLER`, compression): said at build and again by
    /// [`init`] once its subscriber is installed.
    warnings: Vec<String>,
    /// Where the OTLP channels run; stopped after the providers (fields
    /// drop in order).
    _export_runtime: Option<ExportRuntime>,
}

/// A one-thread Tokio runtime for the OTLP exporters' gRPC channels.
struct ExportRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ExportRuntime {
    fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("pgline-otlp".to_owned())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(Self {
            handle,
            stop: Some(stop),
        })
    }
}

impl Drop for ExportRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Builds a [`Telemetry`]; see [`Telemetry::builder`].
#[derive(Clone)]
pub struct TelemetryBuilder {
    service_name: String,
    endpoint: Option<String>,
    export_traces: bool,
    export_metrics: bool,
    discard: bool,
    metric_interval: Option<Duration>,
    acquire_span_threshold: Duration,
    traces_tls: TlsFiles,
    metrics_tls: TlsFiles,
    headers: Vec<(String, String)>,
    transport: transport::Transport,
    /// The span queue's sizes and schedule (`OTEL_BSP_*`), and what to warn
    /// about them.
    batch: (BatchConfig, Vec<String>),
}

impl std::fmt::Debug for TelemetryBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryBuilder")
            .field("service_name", &self.service_name)
            .field("endpoint", &self.endpoint)
            .field("export_traces", &self.export_traces)
            .field("export_metrics", &self.export_metrics)
            .field("discard", &self.discard)
            .field("metric_interval", &self.metric_interval)
            .field("acquire_span_threshold", &self.acquire_span_threshold)
            .field("traces_tls", &self.traces_tls)
            .field("metrics_tls", &self.metrics_tls)
            .field("transport", &self.transport)
            .field("batch", &self.batch.0)
            // The values may be credentials: the keys only.
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl TelemetryBuilder {
    /// Spans are made and processed as for export, then dropped: the whole
    /// in-process cost of tracing, without a collector. For benchmarks.
    /// Ignored when an OTLP endpoint is configured.
    #[must_use]
    pub fn discard_export(mut self) -> Self {
        self.discard = true;
        self
    }

    /// Pushes no metrics over OTLP (they stay readable as Prometheus text),
    /// as `OTEL_METRICS_EXPORTER=none` does. For a collector that takes
    /// traces only, such as Jaeger.
    #[must_use]
    pub fn without_metric_export(mut self) -> Self {
        self.export_metrics = false;
        self
    }

    /// Exports no spans, as `OTEL_TRACES_EXPORTER=none` does.
    #[must_use]
    pub fn without_trace_export(mut self) -> Self {
        self.export_traces = false;
        self
    }

    /// Pool acquires that waited at least this long get an `acquire` span
    /// (default 1 ms); shorter ones only count in
    /// `db.client.connection.wait_time`. Zero gives every acquire a span.
    #[must_use]
    pub fn acquire_span_threshold(mut self, threshold: Duration) -> Self {
        self.acquire_span_threshold = threshold;
        self
    }

    /// Trusts the CA certificates in the PEM file at `path` for an `https`
    /// OTLP endpoint, besides the public roots: what
    /// `OTEL_EXPORTER_OTLP_CERTIFICATE` says (for a collector whose
    /// certificate an in-house CA signed). The file is read by
    /// [`build`](TelemetryBuilder::build).
    #[must_use]
    pub fn otlp_ca_certificate(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        let path = path.into();
        self.traces_tls = self.traces_tls.with_ca(path.clone());
        self.metrics_tls = self.metrics_tls.with_ca(path);
        self
    }

    /// Sends `key: value` with every OTLP export (both signals): a
    /// collector's token, say. `OTEL_EXPORTER_OTLP_HEADERS` wins for a key
    /// both set, as `opentelemetry-otlp` has it. The value is never logged. A key or value gRPC cannot
    /// carry makes [`build`](TelemetryBuilder::build) fail, naming the key.
    #[must_use]
    pub fn otlp_header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((key.into(), value.into()));
        self
    }

    /// How often metrics are pushed over OTLP (default 60 s, or
    /// `OTEL_METRIC_EXPORT_INTERVAL` in milliseconds).
    #[must_use]
    pub fn metric_export_interval(mut self, every: Duration) -> Self {
        self.metric_interval = Some(every);
        self
    }

    /// Builds the providers. With an OTLP endpoint the gRPC channels live on
    /// a small runtime of their own (one thread), never on the service's:
    /// exporting wakes none of the threads that serve requests. Nothing
    /// connects yet: a collector that is down shows up as one warn line at
    /// the first export.
    pub fn build(self) -> Result<Telemetry, TelemetryError> {
        let resource = resource(&self.service_name);
        let span_exporter;
        let mut metric_export = None;
        let mut export_runtime = None;
        let mut warnings = Vec::new();
        if let Some(endpoint) = &self.endpoint {
            let signals: Vec<&str> = [
                (self.export_traces, transport::TRACES),
                (self.export_metrics, transport::METRICS),
            ]
            .into_iter()
            .filter_map(|(on, signal)| on.then_some(signal))
            .collect();
            warnings = self.transport.check(&signals)?;
            let runtime = ExportRuntime::start().map_err(TelemetryError::Thread)?;
            // The channels are made (and their tasks spawned) on it.
            let handle = runtime.handle.clone();
            let _entered = handle.enter();
            export_runtime = Some(runtime);
            let health = ExportHealth::new(endpoint);
            let headers = metadata(&self.headers)?;
            let exporter_error = |signal| {
                let endpoint = endpoint.clone();
                move |source| TelemetryError::Exporter {
                    signal,
                    endpoint,
                    source,
                }
            };
            span_exporter = if self.export_traces {
                Some(TraceClient::new(
                    endpoint,
                    EXPORT_TIMEOUT,
                    &self.traces_tls,
                    &headers,
                    handle.clone(),
                    health.clone(),
                )?)
            } else {
                None
            };
            if self.export_metrics {
                let uri = traces::with_scheme(endpoint, traces::insecure("METRICS"));
                let mut metrics = opentelemetry_otlp::MetricExporter::builder()
                    .with_tonic()
                    .with_endpoint(uri.clone())
                    .with_timeout(EXPORT_TIMEOUT)
                    .with_metadata(headers);
                if traces::is_https(&uri) {
                    // The exporter would trust no root at all by itself.
                    metrics = metrics.with_tls_config(self.metrics_tls.config()?);
                }
                let metrics = metrics.build().map_err(exporter_error("metrics"))?;
                metric_export = Some((
                    ReportingMetricExporter::new(metrics, health),
                    self.metric_interval,
                ));
            }
        } else {
            span_exporter = None;
        }
        let (batch, batch_warnings) = self.batch;
        let queue = match span_exporter {
            Some(client) => Some(span_queue(client, &resource, batch)?),
            None if self.discard && self.endpoint.is_none() => {
                Some(span_queue(Discard, &resource, batch)?)
            }
            None => None,
        };
        if queue.is_some() {
            // The variables matter only when spans are queued.
            warnings.extend(batch_warnings);
        }
        let (sampler, sampler_warning) = SamplerChoice::from_env();
        warnings.extend(sampler_warning);
        for warning in &warnings {
            // Seen now when a subscriber is installed; `init` says it again
            // once its own is.
            tracing::warn!(target: export::EXPORT_TARGET, "{warning}");
        }
        let tracer_provider = queue.as_ref().map(|queue| {
            SdkTracerProvider::builder()
                .with_resource(resource.clone())
                .with_sampler(sampler.to_sdk())
                .with_span_processor(queue.clone())
                .build()
        });
        let tracer = tracer_provider.as_ref().map(|p| {
            p.tracer_with_scope(
                opentelemetry::InstrumentationScope::builder("pgline")
                    .with_version(env!("CARGO_PKG_VERSION"))
                    .build(),
            )
        });
        let db_tracer =
            queue.map(|queue| DbTracer::new(queue, sampler, self.acquire_span_threshold));
        Ok(Telemetry {
            metrics: Metrics::build(resource, metric_export, db_tracer)?,
            tracer_provider,
            tracer,
            endpoint: self.endpoint,
            warnings,
            _export_runtime: export_runtime,
        })
    }
}

impl Telemetry {
    /// A builder from the `OTEL_*` part of the configuration. The standard
    /// `OTEL_TRACES_EXPORTER=none` and `OTEL_METRICS_EXPORTER=none` turn one
    /// signal's export off.
    pub fn builder(config: &TelemetryConfig) -> TelemetryBuilder {
        let exporter_is_none =
            |variable| std::env::var(variable).is_ok_and(|v| v.trim().eq_ignore_ascii_case("none"));
        TelemetryBuilder {
            service_name: config.service_name.clone(),
            endpoint: config
                .otlp_endpoint
                .clone()
                .filter(|_| config.export_enabled()),
            export_traces: !exporter_is_none("OTEL_TRACES_EXPORTER"),
            export_metrics: !exporter_is_none("OTEL_METRICS_EXPORTER"),
            discard: false,
            metric_interval: None,
            acquire_span_threshold: DEFAULT_ACQUIRE_SPAN_THRESHOLD,
            traces_tls: TlsFiles::from_env("TRACES"),
            metrics_tls: TlsFiles::from_env("METRICS"),
            headers: Vec::new(),
            transport: transport::Transport::from_env(),
            batch: BatchConfig::from_env(),
        }
    }

    /// The metrics, to register pools and breakers with and to render for
    /// `/metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// What the configuration asked for and does not get, one sentence each
    /// (an `OTEL_TRACES_SAMPLER` that is not understood, compression asked
    /// for): logged at warn when the telemetry is built and again by
    /// [`init`] once its subscriber is installed. Empty when everything
    /// asked for is done.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The OTLP endpoint telemetry is exported to, if export is on.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// Whether spans are recorded (exported, or discarded for a benchmark).
    pub fn is_tracing(&self) -> bool {
        self.tracer.is_some()
    }

    /// A listener for the pool named `pool_name`: the wait, create and use
    /// time histograms, and `acquire` spans for long waits and `connect`
    /// spans when tracing is on. The same as
    /// [`Metrics::pool_listener`] on [`metrics`](Telemetry::metrics).
    pub fn pool_listener(&self, pool_name: impl Into<String>) -> Arc<PoolObserver> {
        self.metrics.pool_listener(pool_name)
    }

    /// The `tracing` subscriber: log lines in `format` to `writer`, filtered
    /// by `log`'s directives (`RUST_LOG`, else `LOG_LEVEL`), and, when
    /// tracing is on, `tracing` spans at info and above (a request's span)
    /// to OpenTelemetry, whatever the log level. The database spans do not
    /// need it: [`Traced`](crate::Traced) and the pool listener make them
    /// directly.
    pub fn subscriber<W>(
        &self,
        log: &LogConfig,
        format: LogFormat,
        writer: W,
    ) -> Result<impl tracing::Subscriber + Send + Sync + 'static, TelemetryError>
    where
        W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        subscriber::build(self.tracer.clone(), log.directives(), format, false, writer)
    }

    /// Exports everything recorded so far, blocking until the collector has
    /// answered or the export timed out.
    ///
    /// Blocks the calling thread (the export itself runs on telemetry's own
    /// threads, so it cannot deadlock): on a Tokio runtime call it inside
    /// `spawn_blocking` so as not to stall the runtime.
    pub fn force_flush(&self) -> Result<(), TelemetryError> {
        if let Some(provider) = &self.tracer_provider {
            provider
                .force_flush()
                .map_err(|source| TelemetryError::Sdk {
                    action: "flush",
                    source,
                })?;
        }
        self.metrics.force_flush()
    }

    /// Exports what is left and stops the exporters. Blocking, like
    /// [`force_flush`](Telemetry::force_flush); bounded by about ten seconds
    /// when the collector does not answer.
    pub fn shutdown(&self) -> Result<(), TelemetryError> {
        let traces = match &self.tracer_provider {
            Some(provider) => provider
                .shutdown_with_timeout(SHUTDOWN_TIMEOUT)
                .map_err(|source| TelemetryError::Sdk {
                    action: "shutdown",
                    source,
                }),
            None => Ok(()),
        };
        let metrics = self.metrics.shutdown();
        traces.and(metrics)
    }
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("endpoint", &self.endpoint)
            .field("tracing", &self.is_tracing())
            .field("metrics", &self.metrics)
            .finish()
    }
}

/// Sets up logs, traces and metrics for the service, once, from the
/// composition root.
///
/// - Installs the global `tracing` subscriber (and routes `log` records to
///   it): log lines on stdout in the format of `LOG_FORMAT` (`text` or
///   `json`), filtered by `LOG_LEVEL` unless `RUST_LOG` is set.
/// - When export is enabled (`OTEL_EXPORTER_OTLP_ENDPOINT` set and
///   `OTEL_SDK_DISABLED` not `true`): OTLP/gRPC exporters for traces (batched)
///   and metrics (every 60 s), the OpenTelemetry layer, the global tracer
///   provider, and the W3C trace-context propagator, all with
///   `service.name` from `OTEL_SERVICE_NAME`.
///
/// The gRPC channels run on a one-thread runtime of their own. Keep the
/// guard until the end and finish with [`TelemetryGuard::shutdown`]`.await`,
/// which exports the last spans; see the guard for what dropping it does.
///
/// ```no_run
/// # async fn main_() -> Result<(), Box<dyn std::error::Error>> {
/// let config = pgline_config::Config::from_env()?;
/// let telemetry = pgline_telemetry::init(&config)?;
/// let metrics = telemetry.metrics().clone();
/// // ... build the pool with `telemetry.telemetry().pool_listener(..)`, wrap it in
/// // `Traced`, register it with `metrics.register_pool(..)`, serve ...
/// telemetry.shutdown().await?;
/// # Ok(()) }
/// ```
pub fn init(config: &Config) -> Result<TelemetryGuard, TelemetryError> {
    let format = LogFormat::from_env()?;
    let ansi = format == LogFormat::Text && std::io::stdout().is_terminal();
    install(config, format, ansi, std::io::stdout)
}

/// [`init`] with an explicit log format and writer (no colours), for tests
/// and for services that log somewhere else than stdout.
pub fn init_with_writer<W>(
    config: &Config,
    format: LogFormat,
    writer: W,
) -> Result<TelemetryGuard, TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    install(config, format, false, writer)
}

fn install<W>(
    config: &Config,
    format: LogFormat,
    ansi: bool,
    writer: W,
) -> Result<TelemetryGuard, TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let telemetry = Telemetry::builder(&config.telemetry).build()?;
    let guard = TelemetryGuard {
        telemetry: Some(telemetry),
    };
    let telemetry = guard.telemetry();
    subscriber::build(
        telemetry.tracer.clone(),
        config.log.directives(),
        format,
        ansi,
        writer,
    )?
    .try_init()
    .map_err(TelemetryError::SubscriberInstalled)?;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    if let Some(provider) = &telemetry.tracer_provider {
        opentelemetry::global::set_tracer_provider(provider.clone());
    }
    if let Some(tracer) = telemetry.metrics.tracer() {
        crate::traced::spans::set_global(tracer.clone());
    }
    for warning in &telemetry.warnings {
        tracing::warn!(target: export::EXPORT_TARGET, "{warning}");
    }
    match telemetry.endpoint() {
        Some(endpoint) => tracing::info!(
            endpoint,
            service.name = %config.telemetry.service_name,
            "exporting traces and metrics over OTLP/gRPC"
        ),
        None => tracing::info!(
            "OpenTelemetry export off (OTEL_EXPORTER_OTLP_ENDPOINT unset or OTEL_SDK_DISABLED=true); metrics at /metrics"
        ),
    }
    Ok(guard)
}

/// Keeps telemetry running; flushes and shuts it down at the end.
///
/// Prefer [`shutdown`](TelemetryGuard::shutdown)`.await`: it waits for the
/// last export on a blocking thread and works on any Tokio runtime.
///
/// Dropping the guard also shuts down, which blocks the dropping thread until
/// the last export is done (about ten seconds at most when the collector is
/// down; on a multi-thread runtime through `block_in_place`). The export runs
/// on telemetry's own threads, so this works on any runtime, but it stalls a
/// current-thread runtime meanwhile: prefer `shutdown().await`.
#[must_use = "dropping the guard shuts telemetry down"]
pub struct TelemetryGuard {
    telemetry: Option<Telemetry>,
}

impl TelemetryGuard {
    /// The providers and metrics.
    pub fn telemetry(&self) -> &Telemetry {
        // Only `shutdown` and `drop` take it, and both consume the guard.
        self.telemetry
            .as_ref()
            .unwrap_or_else(|| unreachable!("telemetry is taken only when the guard is consumed"))
    }

    /// The metrics, to register pools with and render for `/metrics`.
    pub fn metrics(&self) -> &Metrics {
        self.telemetry().metrics()
    }

    /// Exports what is left and stops the exporters, waiting on a blocking
    /// thread.
    pub async fn shutdown(mut self) -> Result<(), TelemetryError> {
        let Some(telemetry) = self.telemetry.take() else {
            return Ok(());
        };
        match tokio::task::spawn_blocking(move || telemetry.shutdown()).await {
            Ok(result) => result,
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        }
    }
}

impl std::fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("telemetry", &self.telemetry)
            .finish()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let Some(telemetry) = self.telemetry.take() else {
            return;
        };
        // Without OTLP, shutting down does no IO and is safe anywhere.
        let exporting = telemetry.endpoint.is_some();
        let finish = move || {
            if let Err(e) = telemetry.shutdown() {
                tracing::debug!(target: export::EXPORT_TARGET, error = %e, "telemetry shutdown incomplete");
            }
        };
        if !exporting {
            finish();
            return;
        }
        // The export needs none of the caller's threads: blocking here
        // cannot deadlock.
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(finish);
            }
            _ => finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_given_in_code_are_checked_as_the_variable_s_are() {
        let entries = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let map = metadata(&entries(&[("X-Plant", "line-7"), ("x-sig-bin", "AAEC")])).unwrap();
        assert_eq!(
            map.get("x-plant").and_then(|v| v.to_str().ok()),
            Some("line-7")
        );
        assert_eq!(
            map.get_bin("x-sig-bin")
                .and_then(|v| v.to_bytes().ok())
                .as_deref(),
            Some(&[0u8, 1, 2][..])
        );
        for (key, value) in [
            ("x-sig-bin", "not base64!"),
            ("bad key", "v"),
            ("k", "a\nb"),
        ] {
            match metadata(&entries(&[("ok", "1"), (key, value)])) {
                Err(TelemetryError::Header { key: named }) => assert_eq!(named, key),
                other => panic!("{key}={value:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn otlp_over_http_stops_the_build_only_for_a_signal_that_is_exported() {
        let http = || {
            transport::Transport::from_lookup(|v| {
                (v == "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL").then(|| "http/protobuf".to_owned())
            })
        };
        let mut config = pgline_config::Config::from_vars([("LOG_LEVEL", "info")])
            .unwrap()
            .telemetry;
        // No endpoint: nothing is exported, nothing to refuse.
        let mut builder = Telemetry::builder(&config);
        builder.transport = http();
        builder.build().unwrap();
        // Exported: refused before anything starts, with the variable named.
        config.otlp_endpoint = Some("http://127.0.0.1:4318".to_owned());
        let mut builder = Telemetry::builder(&config);
        builder.transport = http();
        match builder.build() {
            Err(TelemetryError::Protocol { variable, value }) => {
                assert_eq!(variable, "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL");
                assert_eq!(value, "http/protobuf");
            }
            other => panic!("{other:?}"),
        }
        // Metrics not exported: the spans' gRPC export starts.
        let mut builder = Telemetry::builder(&config).without_metric_export();
        builder.transport = http();
        builder.build().unwrap().shutdown().unwrap();
    }

    /// The warnings of a telemetry whose builder `set` changes: without
    /// export, then exporting spans (the collector need not listen).
    fn warnings_with(set: impl Fn(&mut TelemetryBuilder)) -> (Vec<String>, Vec<String>) {
        let mut config = pgline_config::Config::from_vars([("LOG_LEVEL", "info")])
            .unwrap()
            .telemetry;
        let mut builder = Telemetry::builder(&config);
        set(&mut builder);
        let quiet = builder.build().unwrap().warnings().to_vec();
        config.otlp_endpoint = Some("http://127.0.0.1:9".to_owned());
        let mut builder = Telemetry::builder(&config).without_metric_export();
        set(&mut builder);
        let telemetry = builder.build().unwrap();
        let exporting = telemetry.warnings().to_vec();
        telemetry.shutdown().unwrap();
        (quiet, exporting)
    }

    #[test]
    fn compression_asked_for_is_a_warning_the_caller_can_read() {
        let (quiet, exporting) = warnings_with(|builder| {
            builder.transport = transport::Transport::from_lookup(|v| {
                (v == "OTEL_EXPORTER_OTLP_COMPRESSION").then(|| "gzip".to_owned())
            });
        });
        // Nothing exported: nothing to say.
        assert!(quiet.is_empty(), "{quiet:?}");
        assert_eq!(exporting.len(), 1, "{exporting:?}");
        assert!(
            exporting[0].starts_with("OTEL_EXPORTER_OTLP_COMPRESSION=gzip"),
            "{exporting:?}"
        );
    }

    #[test]
    fn a_bad_batch_size_is_a_warning_when_spans_are_queued() {
        let (quiet, exporting) = warnings_with(|builder| {
            builder.batch = BatchConfig::from_lookup(|v| {
                (v == "OTEL_BSP_MAX_EXPORT_BATCH_SIZE").then(|| "-1".to_owned())
            });
        });
        // No spans: nothing to say.
        assert!(quiet.is_empty(), "{quiet:?}");
        assert_eq!(
            exporting,
            [
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=-1 is not a positive whole number; \
              the default, 2048, is used"
            ]
        );
    }
}

//! [`Metrics`]: the connection-pool and operation metrics of OpenTelemetry's
//! database conventions, recorded once through the OpenTelemetry `Meter` API
//! and read two ways — as Prometheus text ([`Metrics::render_prometheus`])
//! and, when export is on, pushed over OTLP.

mod listener;
pub(crate) mod local;

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter, MeterProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use pgline_core::PoolStats;

use crate::TelemetryError;
use crate::setup::export::ReportingMetricExporter;
use crate::traced::spans::DbTracer;
pub use listener::PoolObserver;
use local::{LocalHistogram, LocalHistograms};

/// Attribute naming the pool on every pool metric.
pub(crate) const POOL_NAME: &str = "db.client.connection.pool.name";

/// Bucket bounds of `db.client.operation.duration`, in seconds: the
/// conventions' advisory bounds with sub-millisecond steps added, because a
/// pooled statement on a local network takes well under a millisecond.
const OPERATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Bucket bounds of the pool's wait, create and use times, in seconds: a
/// hand-off from the idle list takes microseconds, a wait for a busy pool up
/// to the acquire timeout (30–60 s by default).
const POOL_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0,
];

/// The pool and database metrics of one service.
///
/// Cheap to clone (all clones record into the same instruments). The
/// instruments, with their Prometheus names:
///
/// | OpenTelemetry | Prometheus | kind |
/// |---|---|---|
/// | `db.client.connection.count{db.client.connection.state=idle\|used}` | `db_client_connection_count` | gauge |
/// | `db.client.connection.idle.max` | `db_client_connection_idle_max` | gauge |
/// | `db.client.connection.idle.min` | `db_client_connection_idle_min` | gauge |
/// | `db.client.connection.max` | `db_client_connection_max` | gauge |
/// | `db.client.connection.pending_requests` | `db_client_connection_pending_requests` | gauge |
/// | `db.client.connection.timeouts` | `db_client_connection_timeouts_total` | counter |
/// | `db.client.connection.create_time` | `db_client_connection_create_time_seconds` | histogram |
/// | `db.client.connection.wait_time` | `db_client_connection_wait_time_seconds` | histogram |
/// | `db.client.connection.use_time` | `db_client_connection_use_time_seconds` | histogram |
/// | `db.client.operation.duration` | `db_client_operation_duration_seconds` | histogram |
/// | `pgline.pool.utilization` | `pgline_pool_utilization_ratio` | gauge |
/// | `pgline.pool.connections.closed{reason}` | `pgline_pool_connections_closed_total` | counter |
/// | `pgline.pool.errors` | `pgline_pool_errors_total` | counter |
/// | `pgline.breaker.state` (0 closed, 1 open, 2 half-open) | `pgline_breaker_state` | gauge |
///
/// Pool metrics carry `db.client.connection.pool.name`
/// (`db_client_connection_pool_name`). The gauges and counters read
/// [`PoolStats`] from the function given to [`register_pool`](Metrics::register_pool)
/// whenever they are collected, so they work for every backend; the three
/// pool histograms need the [`PoolObserver`] from
/// [`pool_listener`](Metrics::pool_listener) installed on the pool.
///
/// ```
/// use pgline_core::PoolStats;
/// use pgline_telemetry::Metrics;
///
/// let metrics = Metrics::new("pgline-server")?;
/// metrics.register_pool("plant", || PoolStats::new(3, 1, 2, 0, 2, 10));
/// metrics.register_breaker("plant", || 0);
/// let text = metrics.render_prometheus();
/// assert!(text.contains("# TYPE db_client_connection_count gauge"));
/// assert!(text.contains(
///     r#"db_client_connection_count{db_client_connection_pool_name="plant",db_client_connection_state="used"} 2"#
/// ));
/// # Ok::<(), pgline_telemetry::TelemetryError>(())
/// ```
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    provider: SdkMeterProvider,
    registry: prometheus::Registry,
    operation_duration: Histogram<f64>,
    pool_times: PoolTimes,
    /// The per-thread buffers the hot path records its histograms through.
    local: LocalHistograms,
    sources: Arc<Sources>,
    /// Database spans, when the telemetry these metrics belong to traces.
    tracer: Option<DbTracer>,
}

/// The three pool histograms fed by pool events.
pub(crate) struct PoolTimes {
    pub(crate) create_time: Histogram<f64>,
    pub(crate) wait_time: Histogram<f64>,
    pub(crate) use_time: Histogram<f64>,
}

type StatsFn = Box<dyn Fn() -> PoolStats + Send + Sync>;
type StateFn = Box<dyn Fn() -> u8 + Send + Sync>;

/// Where the observable instruments read their values.
#[derive(Default)]
struct Sources {
    pools: RwLock<Vec<(KeyValue, StatsFn)>>,
    breakers: RwLock<Vec<(KeyValue, StateFn)>>,
}

impl Sources {
    fn each_pool(&self, mut f: impl FnMut(&KeyValue, &PoolStats)) {
        let pools = self.pools.read().unwrap_or_else(PoisonError::into_inner);
        for (name, stats) in pools.iter() {
            f(name, &stats());
        }
    }
}

impl Metrics {
    /// Metrics readable as Prometheus text only (no OTLP export), for
    /// `service_name` (the `service_name` label of `target_info`).
    pub fn new(service_name: &str) -> Result<Self, TelemetryError> {
        Self::build(crate::setup::resource(service_name), None, None)
    }

    pub(crate) fn build(
        resource: Resource,
        export: Option<(ReportingMetricExporter, Option<Duration>)>,
        tracer: Option<DbTracer>,
    ) -> Result<Self, TelemetryError> {
        let registry = prometheus::Registry::new();
        let prometheus = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .scope_info_enabled(false)
            .build()
            .map_err(TelemetryError::Prometheus)?;
        let mut builder = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(prometheus);
        if let Some((exporter, interval)) = export {
            let mut reader = PeriodicReader::builder(exporter);
            if let Some(interval) = interval {
                reader = reader.with_interval(interval);
            }
            builder = builder.with_reader(reader.build());
        }
        let provider = builder.build();
        let meter = provider.meter_with_scope(
            opentelemetry::InstrumentationScope::builder("pgline")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        );
        let sources = Arc::new(Sources::default());
        let local = LocalHistograms::new();
        register_observers(&meter, &sources, &local);
        let seconds = |name: &'static str, description: &'static str, buckets: &[f64]| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(description)
                .with_boundaries(buckets.to_vec())
                .build()
        };
        Ok(Self {
            inner: Arc::new(Inner {
                operation_duration: seconds(
                    "db.client.operation.duration",
                    "Duration of database client operations",
                    OPERATION_BUCKETS,
                ),
                pool_times: PoolTimes {
                    create_time: seconds(
                        "db.client.connection.create_time",
                        "The time it took to create a new connection",
                        POOL_BUCKETS,
                    ),
                    wait_time: seconds(
                        "db.client.connection.wait_time",
                        "The time it took to obtain an open connection from the pool",
                        POOL_BUCKETS,
                    ),
                    use_time: seconds(
                        "db.client.connection.use_time",
                        "The time between borrowing a connection and returning it to the pool",
                        POOL_BUCKETS,
                    ),
                },
                provider,
                registry,
                local,
                sources,
                tracer,
            }),
        })
    }

    /// Reads the pool named `pool_name` through `stats` whenever metrics are
    /// collected (a Prometheus scrape, an OTLP export). Register each pool
    /// once; `stats` must be cheap and must not block (`Database::stats` is).
    ///
    /// The name should be unique in the service; without a better one use
    /// [`default_pool_name`](crate::default_pool_name).
    pub fn register_pool(
        &self,
        pool_name: impl Into<String>,
        stats: impl Fn() -> PoolStats + Send + Sync + 'static,
    ) {
        let name = KeyValue::new(POOL_NAME, pool_name.into());
        self.inner
            .sources
            .pools
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push((name, Box::new(stats)));
    }

    /// Reads the state of the circuit breaker in front of the pool named
    /// `pool_name` through `state` (0 closed, 1 open, 2 half-open — what
    /// `BreakerState::as_gauge` returns) whenever metrics are collected.
    pub fn register_breaker(
        &self,
        pool_name: impl Into<String>,
        state: impl Fn() -> u8 + Send + Sync + 'static,
    ) {
        let name = KeyValue::new(POOL_NAME, pool_name.into());
        self.inner
            .sources
            .breakers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push((name, Box::new(state)));
    }

    /// A pool listener that feeds the wait, create and use time histograms
    /// of the pool named `pool_name` and, when the telemetry these metrics
    /// belong to traces, makes `acquire` and `connect` spans. Give it to the
    /// pool when building it (`PoolOptions::with_listener`).
    pub fn pool_listener(&self, pool_name: impl Into<String>) -> Arc<PoolObserver> {
        Arc::new(PoolObserver::new(
            pool_name.into(),
            &self.inner.pool_times,
            &self.inner.local,
            self.inner.tracer.clone(),
        ))
    }

    /// The metrics in the Prometheus text format (version 0.0.4), for a
    /// `/metrics` endpoint: OpenTelemetry names with dots as underscores,
    /// unit suffixes (`_seconds`, `_ratio`) and `_total` on counters.
    pub fn render_prometheus(&self) -> String {
        let families = self.inner.registry.gather();
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "could not encode the Prometheus metrics");
                format!("# could not encode the metrics: {e}\n")
            })
    }

    /// Exports what has been recorded now (OTLP), blocking until done.
    ///
    /// Blocks the calling thread: on a Tokio runtime, call it inside
    /// `spawn_blocking` (a current-thread runtime would deadlock).
    pub fn force_flush(&self) -> Result<(), TelemetryError> {
        self.inner
            .provider
            .force_flush()
            .map_err(|source| TelemetryError::Sdk {
                action: "flush",
                source,
            })
    }

    /// Exports what is left and stops the periodic export. Blocking, like
    /// [`force_flush`](Metrics::force_flush).
    pub(crate) fn shutdown(&self) -> Result<(), TelemetryError> {
        self.inner
            .provider
            .shutdown()
            .map_err(|source| TelemetryError::Sdk {
                action: "shutdown",
                source,
            })
    }

    pub(crate) fn operation_duration(&self) -> Histogram<f64> {
        self.inner.operation_duration.clone()
    }

    /// `histogram` bound to `attributes`, recorded through this thread's
    /// buffer (for the hot path: see [`local`]).
    pub(crate) fn local_histogram(
        &self,
        histogram: &Histogram<f64>,
        attributes: &[KeyValue],
    ) -> LocalHistogram {
        self.inner.local.add(histogram.bind(attributes))
    }

    /// The database span maker, when tracing is on.
    pub(crate) fn tracer(&self) -> Option<&DbTracer> {
        self.inner.tracer.as_ref()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pools = self
            .inner
            .sources
            .pools
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, _)| name.value.to_string())
            .collect::<Vec<_>>();
        f.debug_struct("Metrics")
            .field("pools", &pools)
            .finish_non_exhaustive()
    }
}

/// Registers the instruments whose values are read at collection time.
/// The first callback also hands the histogram values the threads still
/// hold to the SDK: the SDK runs every callback before it reads any
/// instrument, so each collection sees them.
fn register_observers(meter: &Meter, sources: &Arc<Sources>, local: &LocalHistograms) {
    let s = sources.clone();
    let local = local.clone();
    let idle = KeyValue::new("db.client.connection.state", "idle");
    let used = KeyValue::new("db.client.connection.state", "used");
    meter
        .i64_observable_up_down_counter("db.client.connection.count")
        .with_unit("{connection}")
        .with_description("The number of connections that are currently in state described by the state attribute")
        .with_callback(move |o| {
            local.drain();
            s.each_pool(|name, st| {
                o.observe(i64::from(st.idle), &[name.clone(), idle.clone()]);
                o.observe(i64::from(st.in_use), &[name.clone(), used.clone()]);
            });
        })
        .build();

    let pool_gauge = |name: &'static str,
                      unit: &'static str,
                      description: &'static str,
                      read: fn(&PoolStats) -> u32| {
        let s = sources.clone();
        meter
            .i64_observable_up_down_counter(name)
            .with_unit(unit)
            .with_description(description)
            .with_callback(move |o| {
                s.each_pool(|pool, st| o.observe(i64::from(read(st)), std::slice::from_ref(pool)));
            })
            .build();
    };
    // Idle connections may fill the whole pool: the idle maximum is the maximum.
    pool_gauge(
        "db.client.connection.idle.max",
        "{connection}",
        "The maximum number of idle open connections allowed",
        |st| st.max,
    );
    pool_gauge(
        "db.client.connection.idle.min",
        "{connection}",
        "The minimum number of idle open connections allowed",
        |st| st.min,
    );
    pool_gauge(
        "db.client.connection.max",
        "{connection}",
        "The maximum number of open connections allowed",
        |st| st.max,
    );
    pool_gauge(
        "db.client.connection.pending_requests",
        "{request}",
        "The number of current pending requests for an open connection",
        |st| st.waiting,
    );

    let s = sources.clone();
    meter
        .u64_observable_counter("db.client.connection.timeouts")
        .with_unit("{timeout}")
        .with_description("The number of connection timeouts that have occurred trying to obtain a connection from the pool")
        .with_callback(move |o| {
            s.each_pool(|pool, st| o.observe(st.acquire_timeouts_total, std::slice::from_ref(pool)));
        })
        .build();

    let s = sources.clone();
    meter
        .f64_observable_gauge("pgline.pool.utilization")
        .with_unit("1")
        .with_description("Connections in use as a fraction of the pool's maximum size")
        .with_callback(move |o| {
            s.each_pool(|pool, st| {
                o.observe(st.utilization_percent / 100.0, std::slice::from_ref(pool));
            });
        })
        .build();

    let s = sources.clone();
    meter
        .u64_observable_counter("pgline.pool.connections.closed")
        .with_unit("{connection}")
        .with_description("Connections the pool closed, by reason")
        .with_callback(move |o| {
            s.each_pool(|pool, st| {
                let closed = st.closed_total;
                for (reason, count) in [
                    ("idle", closed.idle),
                    ("lifetime", closed.lifetime),
                    ("broken", closed.broken),
                    ("closed", closed.closed),
                ] {
                    o.observe(count, &[pool.clone(), KeyValue::new("reason", reason)]);
                }
            });
        })
        .build();

    let s = sources.clone();
    meter
        .u64_observable_counter("pgline.pool.errors")
        .with_unit("{error}")
        .with_description(
            "Errors inside the pool: failed connects, validations and resets, acquire timeouts",
        )
        .with_callback(move |o| {
            s.each_pool(|pool, st| o.observe(st.errors_total, std::slice::from_ref(pool)));
        })
        .build();

    let s = sources.clone();
    meter
        .i64_observable_gauge("pgline.breaker.state")
        .with_unit("{state}")
        .with_description("Circuit breaker state: 0 closed, 1 open, 2 half-open")
        .with_callback(move |o| {
            let breakers = s.breakers.read().unwrap_or_else(PoisonError::into_inner);
            for (pool, state) in breakers.iter() {
                o.observe(i64::from(state()), std::slice::from_ref(pool));
            }
        })
        .build();
}

//! The span pipeline: every thread keeps the spans it finishes in a buffer of
//! its own; one export thread drains the buffers, encodes them as OTLP
//! protobuf ([`Encoder`]) and hands each batch's request to a [`Sink`].
//!
//! Why not the SDK's `BatchSpanProcessor`: it takes a finished [`SpanData`]
//! through a channel shared by all threads, so each span is allocated on a
//! worker thread, moved through a cache line every worker writes, and freed
//! on the export thread — on a busy pool that costs more than building the
//! span. Here a database span is a fixed-size record pushed under a lock
//! only its own thread and, every few seconds, the export thread take; it is
//! written to the wire format on the export thread with no `SpanData` in
//! between. Spans made through `tracing` (requests) arrive as [`SpanData`]
//! from the tracer provider and take the same path.
//!
//! Configured like the SDK's processor: `OTEL_BSP_SCHEDULE_DELAY` (ms,
//! default 5000), `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` and
//! `OTEL_BSP_MAX_QUEUE_SIZE` (per thread here). A full buffer drops new
//! spans and counts them. The two sizes default to four times the SDK's
//! 512 and 2048 ([`DEFAULT_MAX_BATCH`], [`DEFAULT_MAX_QUEUE`]): an export
//! call costs about as much CPU on both ends whether it carries 512 spans
//! or 2048, so a busy service exporting every span pays about half as much
//! per span with the bigger batch (measured in `docs/tracing.md`).

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry::InstrumentationScope;
use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};

use super::encode::Encoder;

/// Where the export thread sends each batch: one encoded
/// `ExportTraceServiceRequest`.
pub(crate) trait Sink: Send + 'static {
    /// Sends one request of `spans` spans; blocks until it is answered.
    fn send(&mut self, request: Vec<u8>, spans: usize) -> OTelSdkResult;
}

/// A finished database span: fixed size, no allocation for its constant
/// attributes (`&'static` texts made once per handle).
#[derive(Debug)]
pub(crate) struct DbSpan {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) parent_span_id: SpanId,
    pub(crate) parent_remote: bool,
    /// When the span started, on the monotonic clock; the encoder turns it
    /// into wall-clock time.
    pub(crate) start: Instant,
    pub(crate) duration: Duration,
    pub(crate) name: &'static str,
    pub(crate) kind: SpanKind,
    pub(crate) what: What,
}

/// The attributes of a [`DbSpan`].
#[derive(Debug)]
pub(crate) enum What {
    /// A statement or transaction.
    Operation {
        namespace: &'static str,
        address: &'static str,
        /// `server.port`, when not PostgreSQL's default.
        port: Option<u16>,
        operation: Option<&'static str>,
        /// `db.query.text` (statements only), already redacted.
        text: Option<Text>,
        failure: Option<Box<Failure>>,
    },
    /// A pool's `acquire` or `connect`.
    Pool {
        pool: &'static str,
        connection_id: u64,
    },
}

/// A statement's text for `db.query.text`.
#[derive(Debug)]
pub(crate) enum Text {
    Static(&'static str),
    Owned(Box<str>),
}

/// How an operation failed.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) error_type: Cow<'static, str>,
    /// The SQLSTATE.
    pub(crate) status_code: Option<String>,
    /// The span status's description (never parameter values).
    pub(crate) message: String,
}

/// A finished span, waiting for export.
pub(crate) enum Record {
    /// A database span (statement, transaction, acquire, connect).
    Db(DbSpan),
    /// A span made through the SDK (a request's).
    Sdk(Box<SpanData>),
}

/// Spans finished on one thread, waiting for the export thread.
#[derive(Default)]
struct Buffer {
    records: Mutex<Vec<Record>>,
}

impl Buffer {
    fn lock(&self) -> MutexGuard<'_, Vec<Record>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

thread_local! {
    /// This thread's buffer in each queue (usually one), by queue id.
    static LOCAL: RefCell<Vec<(u64, Arc<Buffer>)>> = const { RefCell::new(Vec::new()) };
}

/// What the export thread is asked to do.
#[derive(Default)]
struct Signal {
    /// A buffer reached the batch size.
    export_now: bool,
    flush_requested: u64,
    flush_done: u64,
    /// The result of the last drain (for `force_flush`).
    last: Option<OTelSdkResult>,
    shutdown: bool,
    stopped: bool,
}

struct Inner {
    id: u64,
    buffers: Mutex<Vec<Arc<Buffer>>>,
    signal: Mutex<Signal>,
    wake: Condvar,
    done: Condvar,
    max_batch: usize,
    max_queue: usize,
    delay: Duration,
    dropped: AtomicU64,
    closed: AtomicBool,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl Inner {
    fn signal(&self) -> MutexGuard<'_, Signal> {
        self.signal.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes everything buffered; forgets the buffers of threads that ended.
    fn drain(&self) -> Vec<Record> {
        let mut all = Vec::new();
        let mut buffers = self.buffers.lock().unwrap_or_else(PoisonError::into_inner);
        buffers.retain(|buffer| {
            let mut records = buffer.lock();
            if all.is_empty() {
                // The thread's next batch gets room for as many: growing
                // the buffer span by span would copy every record twice.
                let room = Vec::with_capacity(records.len().min(self.max_queue));
                all = std::mem::replace(&mut *records, room);
            } else {
                all.append(&mut records);
            }
            drop(records);
            // Only this list holds it: its thread has ended.
            Arc::strong_count(buffer) > 1
        });
        all
    }
}

/// The span processor of a [`Telemetry`](crate::Telemetry) (given to the
/// tracer provider) and the sink of its database spans. Cheap to clone.
#[derive(Clone)]
pub(crate) struct SpanQueue {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SpanQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanQueue")
            .field("max_batch", &self.inner.max_batch)
            .field("max_queue", &self.inner.max_queue)
            .field("delay", &self.inner.delay)
            .field("dropped", &self.inner.dropped.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Dropped spans are reported at most this often.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(60);

/// How long `force_flush` waits for the export thread.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Spans per export request unless `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` says
/// otherwise (the SDK's default is 512). An export call has a fixed cost —
/// on the bench machine about 0.4 ms of CPU in pgline and 0.25 ms in the
/// collector, most of it gRPC and HTTP/2 bookkeeping and the wake-ups
/// between the two — which 2048 spans share four times better than 512.
/// A request of 2048 statement spans is about 0.5 MB, far below the 4 MiB
/// collectors accept (and [`MAX_REQUEST_BYTES`] cuts a request of long
/// statements earlier).
pub(crate) const DEFAULT_MAX_BATCH: usize = 2048;

/// Spans a thread may hold for export unless `OTEL_BSP_MAX_QUEUE_SIZE` says
/// otherwise: four batches, as the SDK's 2048 are four of its 512. A record
/// is 176 bytes, so a thread holds at most about 1.4 MB while the collector
/// does not answer; the buffers only grow that far when it does not.
pub(crate) const DEFAULT_MAX_QUEUE: usize = 8192;

/// Export every this often unless `OTEL_BSP_SCHEDULE_DELAY` (ms) says
/// otherwise (the SDK's default).
const DEFAULT_DELAY: Duration = Duration::from_secs(5);

/// The span queue's batch and buffer sizes and its schedule, from the
/// SDK's `OTEL_BSP_*` variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchConfig {
    /// Spans per export request at most.
    pub(crate) max_batch: usize,
    /// Spans one thread may hold for export; more are dropped.
    pub(crate) max_queue: usize,
    /// Export at least this often.
    pub(crate) delay: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_batch: DEFAULT_MAX_BATCH,
            max_queue: DEFAULT_MAX_QUEUE,
            delay: DEFAULT_DELAY,
        }
    }
}

impl BatchConfig {
    /// From the process's environment; also a warning for each variable
    /// whose value is not used.
    pub(crate) fn from_env() -> (Self, Vec<String>) {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// From the variables `lookup` gives. A blank variable counts as unset;
    /// a value that is not a positive whole number is warned about and the
    /// default used, as the specification asks of invalid values. A batch
    /// bigger than the queue is cut to the queue's size.
    pub(crate) fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> (Self, Vec<String>) {
        let mut warnings = Vec::new();
        let mut number = |name: &str, default: usize| {
            let Some(value) = lookup(name).filter(|v| !v.trim().is_empty()) else {
                return default;
            };
            match value.trim().parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => {
                    warnings.push(format!(
                        "{name}={value} is not a positive whole number; the default, \
                         {default}, is used"
                    ));
                    default
                }
            }
        };
        let mut max_batch = number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", DEFAULT_MAX_BATCH);
        let max_queue = number("OTEL_BSP_MAX_QUEUE_SIZE", DEFAULT_MAX_QUEUE);
        let delay_ms = number(
            "OTEL_BSP_SCHEDULE_DELAY",
            usize::try_from(DEFAULT_DELAY.as_millis()).unwrap_or(usize::MAX),
        );
        if max_batch > max_queue {
            warnings.push(format!(
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE={max_batch} is bigger than \
                 OTEL_BSP_MAX_QUEUE_SIZE={max_queue}; batches of {max_queue} spans are sent"
            ));
            max_batch = max_queue;
        }
        let config = Self {
            max_batch,
            max_queue,
            delay: Duration::from_millis(u64::try_from(delay_ms).unwrap_or(u64::MAX)),
        };
        (config, warnings)
    }
}

impl SpanQueue {
    /// Starts the export thread, which encodes spans of `resource` and sends
    /// them to `sink` as `config` says.
    pub(crate) fn start(
        sink: impl Sink,
        resource: &Resource,
        config: BatchConfig,
    ) -> std::io::Result<Self> {
        static IDS: AtomicU64 = AtomicU64::new(1);
        let inner = Arc::new(Inner {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            buffers: Mutex::default(),
            signal: Mutex::default(),
            wake: Condvar::new(),
            done: Condvar::new(),
            max_batch: config.max_batch,
            max_queue: config.max_queue.max(config.max_batch),
            delay: config.delay,
            dropped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            worker: Mutex::new(None),
        });
        let scope = InstrumentationScope::builder("pgline")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let encoder = Encoder::new(resource, &scope);
        let worker = Arc::clone(&inner);
        let handle = std::thread::Builder::new()
            .name("pgline-span-export".to_owned())
            .spawn(move || export_loop(&worker, encoder, sink))?;
        *inner.worker.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
        Ok(Self { inner })
    }

    /// Queues a finished database span.
    pub(crate) fn push(&self, span: DbSpan) {
        self.push_record(Record::Db(span));
    }

    fn push_record(&self, record: Record) {
        let inner = &self.inner;
        if inner.closed.load(Ordering::Relaxed) {
            return;
        }
        // `try_with`: a span may end while its thread is tearing down.
        let full = LOCAL.try_with(|local| {
            let mut local = local.borrow_mut();
            let buffer = crate::per_thread::buffer(&mut local, inner.id, &inner.buffers);
            let mut records = buffer.lock();
            if records.len() >= inner.max_queue {
                inner.dropped.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            records.push(record);
            records.len() == inner.max_batch
        });
        let Ok(full) = full else {
            inner.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if full {
            inner.signal().export_now = true;
            inner.wake.notify_one();
        }
    }

    /// Spans dropped because a thread's buffer was full.
    #[cfg(test)]
    fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    fn flush(&self) -> OTelSdkResult {
        let inner = &self.inner;
        let mut signal = inner.signal();
        if signal.stopped {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        signal.flush_requested += 1;
        let target = signal.flush_requested;
        inner.wake.notify_one();
        let (mut signal, timeout) = inner
            .done
            .wait_timeout_while(signal, FLUSH_TIMEOUT, |s| {
                s.flush_done < target && !s.stopped
            })
            .unwrap_or_else(PoisonError::into_inner);
        if timeout.timed_out() {
            return Err(OTelSdkError::Timeout(FLUSH_TIMEOUT));
        }
        signal.last.take().unwrap_or(Ok(()))
    }

    fn shutdown(&self, timeout: Duration) -> OTelSdkResult {
        let inner = &self.inner;
        if inner.closed.swap(true, Ordering::AcqRel) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        let mut signal = inner.signal();
        signal.shutdown = true;
        inner.wake.notify_one();
        let (signal, waited) = inner
            .done
            .wait_timeout_while(signal, timeout, |s| !s.stopped)
            .unwrap_or_else(PoisonError::into_inner);
        // Released before joining: the export thread takes it as it ends.
        drop(signal);
        if waited.timed_out() {
            return Err(OTelSdkError::Timeout(timeout));
        }
        if let Some(handle) = inner
            .worker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = handle.join();
        }
        Ok(())
    }
}

impl SpanProcessor for SpanQueue {
    fn on_start(&self, _span: &mut Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        self.push_record(Record::Sdk(Box::new(span)));
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.shutdown(timeout)
    }

    fn set_resource(&mut self, _resource: &Resource) {
        // The encoder was given the resource when the queue started.
    }
}

/// The export thread: drains every `delay`, when a buffer is full, when asked
/// to flush, and a last time at shutdown.
fn export_loop(inner: &Inner, mut encoder: Encoder, mut sink: impl Sink) {
    /// However the loop ends (a panic included), flushes and shutdowns
    /// waiting for it are told at once, and later spans are dropped
    /// quietly, instead of every flush waiting out its timeout.
    struct Stopped<'a>(&'a Inner);
    impl Drop for Stopped<'_> {
        fn drop(&mut self) {
            self.0.closed.store(true, Ordering::Release);
            let mut signal = self.0.signal();
            signal.stopped = true;
            self.0.done.notify_all();
        }
    }
    let _stopped = Stopped(inner);
    let mut last_export = Instant::now();
    let mut dropped_reported = 0;
    let mut dropped_at = None;
    loop {
        let signal = inner.signal();
        let wait = inner.delay.saturating_sub(last_export.elapsed());
        let (mut signal, _) = inner
            .wake
            .wait_timeout_while(signal, wait, |s| {
                !s.export_now && s.flush_requested == s.flush_done && !s.shutdown
            })
            .unwrap_or_else(PoisonError::into_inner);
        let flush_target = signal.flush_requested;
        let shutdown = signal.shutdown;
        signal.export_now = false;
        drop(signal);

        last_export = Instant::now();
        let result = export(inner, &mut encoder, &mut sink, inner.drain());
        let dropped = inner.dropped.load(Ordering::Relaxed);
        if dropped > dropped_reported
            && dropped_at.is_none_or(|at: Instant| at.elapsed() >= DROP_REPORT_EVERY)
        {
            // The first time at once, then at most once a minute: a collector
            // that stalls must not flood the log.
            tracing::warn!(
                target: crate::setup::export::EXPORT_TARGET,
                dropped = dropped - dropped_reported,
                queue_size = inner.max_queue,
                "spans dropped: a thread finished more spans than OTEL_BSP_MAX_QUEUE_SIZE \
                 before the export thread could take them"
            );
            dropped_reported = dropped;
            dropped_at = Some(Instant::now());
        }
        let mut signal = inner.signal();
        signal.flush_done = flush_target;
        signal.last = Some(result);
        if shutdown {
            signal.stopped = true;
            inner.done.notify_all();
            return;
        }
        inner.done.notify_all();
    }
}

/// A request is sent once it holds this many bytes, even with fewer spans
/// than a batch: gRPC servers (Jaeger, the OpenTelemetry Collector) refuse
/// messages over 4 MiB by default, and a refused request loses all its spans.
pub(crate) const MAX_REQUEST_BYTES: usize = 3 << 20;

/// Exports `records` in batches of at most `max_batch` spans and about
/// [`MAX_REQUEST_BYTES`]; the last error, if any.
fn export(
    inner: &Inner,
    encoder: &mut Encoder,
    sink: &mut impl Sink,
    records: Vec<Record>,
) -> OTelSdkResult {
    let mut result = Ok(());
    let mut records = records.into_iter().peekable();
    while records.peek().is_some() {
        for record in records.by_ref().take(inner.max_batch) {
            encoder.add(record);
            if encoder.size() >= MAX_REQUEST_BYTES {
                break;
            }
        }
        let spans = encoder.len();
        if let Err(e) = sink.send(encoder.finish(), spans) {
            result = Err(e);
        }
    }
    result
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use opentelemetry_proto::tonic::trace::v1::Span as ProtoSpan;

    /// Keeps the spans of every request it is sent, decoded.
    #[derive(Debug, Clone, Default)]
    pub(crate) struct Kept(Arc<Mutex<Vec<ProtoSpan>>>);

    impl Kept {
        /// Every span sent so far, in order.
        pub(crate) fn spans(&self) -> Vec<ProtoSpan> {
            self.0.lock().map(|s| s.clone()).unwrap_or_default()
        }

        /// A queue that sends its requests here.
        pub(crate) fn queue(&self) -> SpanQueue {
            SpanQueue::start(
                self.clone(),
                &crate::setup::resource("test"),
                BatchConfig::default(),
            )
            .unwrap_or_else(|e| panic!("{e}"))
        }
    }

    impl Sink for Kept {
        fn send(&mut self, request: Vec<u8>, spans: usize) -> OTelSdkResult {
            let request = crate::traced::encode::tests::decode(&request);
            let decoded: Vec<ProtoSpan> = request
                .resource_spans
                .into_iter()
                .flat_map(|r| r.scope_spans)
                .flat_map(|s| s.spans)
                .collect();
            assert_eq!(decoded.len(), spans, "the count sent with the request");
            if let Ok(mut kept) = self.0.lock() {
                kept.extend(decoded);
            }
            Ok(())
        }
    }

    /// The value of a span's attribute, as text.
    pub(crate) fn attribute(span: &ProtoSpan, key: &str) -> Option<String> {
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        let value = span
            .attributes
            .iter()
            .find(|kv| kv.key == key)?
            .value
            .as_ref()?;
        match value.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            Value::IntValue(i) => Some(i.to_string()),
            Value::BoolValue(b) => Some(b.to_string()),
            other => Some(format!("{other:?}")),
        }
    }

    fn db_span(name: &'static str) -> DbSpan {
        DbSpan {
            trace_id: TraceId::from(1u128),
            span_id: SpanId::from(2u64),
            parent_span_id: SpanId::INVALID,
            parent_remote: false,
            start: Instant::now(),
            duration: Duration::from_millis(3),
            name,
            kind: SpanKind::Client,
            what: What::Pool {
                pool: "p",
                connection_id: 7,
            },
        }
    }

    #[test]
    fn spans_from_every_thread_are_exported_on_flush() {
        let kept = Kept::default();
        let queue = kept.queue();
        queue.push(db_span("main"));
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| queue.push(db_span("other")));
            }
        });
        queue.flush().unwrap_or_else(|e| panic!("{e}"));
        let spans = kept.spans();
        assert_eq!(spans.len(), 4);
        assert_eq!(spans[0].name, "main");
        assert_eq!(
            attribute(&spans[0], "pgline.connection.id"),
            Some("7".to_owned())
        );
        // The buffers of the three threads that ended are forgotten.
        queue.flush().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(queue.inner.buffers.lock().map(|b| b.len()).unwrap_or(0), 1);
        queue
            .shutdown(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{e}"));
        // After shutdown, spans are dropped quietly.
        queue.push(db_span("late"));
        assert!(queue.flush().is_err());
    }

    /// Keeps the size and the span count of each request.
    #[derive(Clone, Default)]
    struct Sizes(Arc<Mutex<Vec<(usize, usize)>>>);
    impl Sink for Sizes {
        fn send(&mut self, request: Vec<u8>, spans: usize) -> OTelSdkResult {
            if let Ok(mut sizes) = self.0.lock() {
                sizes.push((request.len(), spans));
            }
            Ok(())
        }
    }

    #[test]
    fn big_spans_are_sent_in_requests_a_collector_accepts() {
        let sizes = Sizes::default();
        let queue = SpanQueue::start(
            sizes.clone(),
            &crate::setup::resource("test"),
            BatchConfig::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        // 300 spans of 40 KB each: 12 MB, under the batch size of 2048; one
        // in three made through the SDK (a request's span can be as big).
        let text: Box<str> = "x".repeat(40_000).into();
        let scope = InstrumentationScope::builder("tracing-opentelemetry").build();
        for i in 0..300 {
            let mut span = db_span("big");
            span.what = What::Operation {
                namespace: "plant",
                address: "db",
                port: None,
                operation: None,
                text: Some(Text::Owned(text.clone())),
                failure: None,
            };
            if i % 3 == 0 {
                let clock = super::super::encode::WallClock::now();
                let sdk = super::super::encode::tests::span_data(&span, &scope, clock);
                queue.push_record(Record::Sdk(Box::new(sdk)));
            } else {
                queue.push(span);
            }
        }
        queue.flush().unwrap_or_else(|e| panic!("{e}"));
        let sizes = sizes.0.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(sizes.iter().map(|(_, n)| n).sum::<usize>(), 300);
        assert!(sizes.len() >= 4, "{sizes:?}");
        for (bytes, _) in &sizes {
            assert!(*bytes < 4 << 20, "a request of {bytes} bytes");
        }
        queue
            .shutdown(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn a_full_buffer_drops_and_counts() {
        let kept = Kept::default();
        let queue = kept.queue();
        let limit = queue.inner.max_queue;
        // Hold the export thread off this buffer by filling it faster than
        // it drains: the count is exact either way.
        for _ in 0..limit * 3 {
            queue.push(db_span("many"));
        }
        queue.flush().unwrap_or_else(|e| panic!("{e}"));
        let exported = kept.spans().len() as u64;
        assert_eq!(exported + queue.dropped(), (limit * 3) as u64);
        queue
            .shutdown(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    fn batch_config(vars: &[(&str, &str)]) -> (BatchConfig, Vec<String>) {
        BatchConfig::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn batch_settings_come_from_the_variables_and_bad_values_are_named() {
        assert_eq!(batch_config(&[]), (BatchConfig::default(), Vec::new()));
        assert_eq!(BatchConfig::default().max_batch, 2048);
        assert_eq!(BatchConfig::default().max_queue, 8192);
        let (config, warnings) = batch_config(&[
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", " 512 "),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "2048"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ]);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            config,
            BatchConfig {
                max_batch: 512,
                max_queue: 2048,
                delay: Duration::from_millis(200),
            }
        );
        // Blank is unset; the rest are named with their value.
        let (config, warnings) = batch_config(&[
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "lots"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", ""),
            ("OTEL_BSP_SCHEDULE_DELAY", "0"),
        ]);
        assert_eq!(config, BatchConfig::default());
        assert_eq!(
            warnings,
            [
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=lots is not a positive whole number; \
                 the default, 2048, is used",
                "OTEL_BSP_SCHEDULE_DELAY=0 is not a positive whole number; the default, \
                 5000, is used",
            ]
        );
        let (config, warnings) = batch_config(&[("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10000")]);
        assert_eq!((config.max_batch, config.max_queue), (8192, 8192));
        assert_eq!(
            warnings,
            ["OTEL_BSP_MAX_EXPORT_BATCH_SIZE=10000 is bigger than \
              OTEL_BSP_MAX_QUEUE_SIZE=8192; batches of 8192 spans are sent"]
        );
    }

    #[test]
    fn a_full_batch_goes_out_at_once_in_one_request() {
        let counts = Sizes::default();
        // The schedule alone would export only after an hour.
        let config = BatchConfig {
            delay: Duration::from_secs(3600),
            ..BatchConfig::default()
        };
        let queue = SpanQueue::start(counts.clone(), &crate::setup::resource("test"), config)
            .unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..config.max_batch - 1 {
            queue.push(db_span("one"));
        }
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            counts.0.lock().map(|c| c.is_empty()).unwrap_or(false),
            "a batch that is not full waits for the schedule"
        );
        queue.push(db_span("last"));
        let deadline = Instant::now() + Duration::from_secs(30);
        let sent = loop {
            let sent: Vec<usize> = counts
                .0
                .lock()
                .map(|c| c.iter().map(|(_, spans)| *spans).collect())
                .unwrap_or_default();
            if !sent.is_empty() || Instant::now() > deadline {
                break sent;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(sent, [config.max_batch]);
        queue
            .shutdown(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

//! Database spans, made without `tracing` or the SDK's span machinery.
//!
//! A statement is the hottest path of the service, and building its span
//! through `tracing` and `tracing-opentelemetry` cost about 3 µs (a `tracing`
//! span in the registry, a `String` per attribute, an SDK span, then its
//! `SpanData`). [`DbTracer`] skips all of that: it takes two ids and a clock
//! reading when an operation starts and, when it ends, pushes a fixed-size
//! record — constant attributes are `&'static str` made once per handle, the
//! statement's text is interned — into the span queue, which exports it with
//! the service's other spans (HTTP requests, made through `tracing`).
//!
//! Parents follow the caller: the database operation being polled on this
//! thread (a transaction for its statements and acquires, a statement for its
//! acquire), else the current `tracing` span (a station's request), else none
//! (a root span, sampled by the root sampler).

use std::cell::Cell;
use std::collections::HashSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use opentelemetry::trace::{SpanId, SpanKind, TraceContextExt as _, TraceId};
use opentelemetry_sdk::trace::{
    IdGenerator as _, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample as _,
};

use super::queue::{DbSpan, SpanQueue, Text, What};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The span a new database span hangs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parent {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) sampled: bool,
    pub(crate) remote: bool,
}

thread_local! {
    /// The database operation being polled on this thread, if any.
    static CURRENT: Cell<Option<Parent>> = const { Cell::new(None) };
}

/// The database operation being polled on this thread, else the current
/// `tracing` span's OpenTelemetry context (a request's span).
pub(crate) fn current_parent() -> Option<Parent> {
    if let Some(parent) = CURRENT.with(Cell::get) {
        return Some(parent);
    }
    let span = tracing::Span::current();
    if span.is_none() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| Parent {
        trace_id: span_context.trace_id(),
        span_id: span_context.span_id(),
        sampled: span_context.is_sampled(),
        remote: span_context.is_remote(),
    })
}

/// A future polled as the current database operation of its thread, so
/// that spans started inside it (an `acquire`, a transaction's statements)
/// become its children.
///
/// It borrows the future, pinned where it was made: a pool's statement
/// future is kilobytes, and wrapping it by value would copy it on every
/// statement.
pub(crate) struct InScope<'f, F: ?Sized> {
    inner: Pin<&'f mut F>,
    parent: Option<Parent>,
}

impl<'f, F: ?Sized> InScope<'f, F> {
    pub(crate) fn new(inner: Pin<&'f mut F>, parent: Option<Parent>) -> Self {
        Self { inner, parent }
    }
}

impl<F: Future + ?Sized> Future for InScope<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let Some(parent) = self.parent else {
            return self.inner.as_mut().poll(cx);
        };
        // Restored even when the inner future panics.
        struct Restore(Option<Parent>);
        impl Drop for Restore {
            fn drop(&mut self) {
                CURRENT.with(|c| c.set(self.0));
            }
        }
        let _restore = Restore(CURRENT.with(|c| c.replace(Some(parent))));
        self.inner.as_mut().poll(cx)
    }
}

/// Which spans are kept (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SamplerChoice {
    /// Children follow their parent's decision.
    parent_based: bool,
    /// The rule for spans without a parent (and for every span when not
    /// parent-based).
    root: Rule,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Rule {
    AlwaysOn,
    AlwaysOff,
    Ratio(f64),
}

impl Default for SamplerChoice {
    fn default() -> Self {
        Self {
            parent_based: true,
            root: Rule::AlwaysOn,
        }
    }
}

impl SamplerChoice {
    /// The standard variables, as the SDK reads them: unknown names and bad
    /// ratios fall back to the default (`parentbased_always_on`), with the
    /// warning to log.
    pub(crate) fn from_env() -> (Self, Option<String>) {
        let name = std::env::var("OTEL_TRACES_SAMPLER").unwrap_or_default();
        let arg = std::env::var("OTEL_TRACES_SAMPLER_ARG").ok();
        Self::parse(name.trim(), arg.as_deref())
    }

    fn parse(name: &str, arg: Option<&str>) -> (Self, Option<String>) {
        let mut warning = None;
        let mut ratio = || {
            let r = arg.and_then(|a| a.trim().parse::<f64>().ok());
            match r {
                Some(r) if (0.0..=1.0).contains(&r) => Rule::Ratio(r),
                _ => {
                    warning = Some(format!(
                        "OTEL_TRACES_SAMPLER={name} needs OTEL_TRACES_SAMPLER_ARG, a ratio between \
                         0 and 1 (got {arg:?}); sampling every trace"
                    ));
                    Rule::AlwaysOn
                }
            }
        };
        let (parent_based, root) = match name {
            "" | "parentbased_always_on" => (true, Rule::AlwaysOn),
            "parentbased_always_off" => (true, Rule::AlwaysOff),
            "parentbased_traceidratio" => (true, ratio()),
            "always_on" => (false, Rule::AlwaysOn),
            "always_off" => (false, Rule::AlwaysOff),
            "traceidratio" => (false, ratio()),
            other => {
                warning = Some(format!(
                    "unknown OTEL_TRACES_SAMPLER {other:?} (expected always_on, always_off, \
                     traceidratio, parentbased_always_on, parentbased_always_off or \
                     parentbased_traceidratio); using parentbased_always_on"
                ));
                (true, Rule::AlwaysOn)
            }
        };
        (Self { parent_based, root }, warning)
    }

    /// The same choice as an SDK sampler, for the spans made through
    /// `tracing`.
    pub(crate) fn to_sdk(self) -> Sampler {
        let root = match self.root {
            Rule::AlwaysOn => Sampler::AlwaysOn,
            Rule::AlwaysOff => Sampler::AlwaysOff,
            Rule::Ratio(r) => Sampler::TraceIdRatioBased(r),
        };
        if self.parent_based {
            Sampler::ParentBased(Box::new(root))
        } else {
            root
        }
    }

    fn sampled(self, parent: Option<Parent>, trace_id: TraceId) -> bool {
        if self.parent_based
            && let Some(parent) = parent
        {
            return parent.sampled;
        }
        match self.root {
            Rule::AlwaysOn => true,
            Rule::AlwaysOff => false,
            Rule::Ratio(r) => {
                Sampler::TraceIdRatioBased(r)
                    .should_sample(None, trace_id, "", &SpanKind::Client, &[], &[])
                    .decision
                    == SamplingDecision::RecordAndSample
            }
        }
    }
}

/// Makes the database spans (statements, transactions, acquires, connects).
/// Cheap to clone.
#[derive(Clone)]
pub(crate) struct DbTracer {
    inner: Arc<TracerInner>,
}

struct TracerInner {
    queue: SpanQueue,
    sampler: SamplerChoice,
    ids: RandomIdGenerator,
    /// Acquires that waited less get no span.
    acquire_threshold: Duration,
}

impl std::fmt::Debug for DbTracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbTracer")
            .field("sampler", &self.inner.sampler)
            .field("acquire_threshold", &self.inner.acquire_threshold)
            .finish_non_exhaustive()
    }
}

/// A database span that has started; [`DbTracer::end`] sends it.
#[derive(Debug)]
pub(crate) struct Started {
    /// This span, as the parent of what starts inside it.
    pub(crate) this: Parent,
    parent_span_id: SpanId,
    parent_remote: bool,
    /// A monotonic reading: the export thread turns it into wall-clock time
    /// (one clock reading per operation instead of two).
    start: Instant,
}

impl DbTracer {
    pub(crate) fn new(
        queue: SpanQueue,
        sampler: SamplerChoice,
        acquire_threshold: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(TracerInner {
                queue,
                sampler,
                ids: RandomIdGenerator::default(),
                acquire_threshold,
            }),
        }
    }

    /// Acquires shorter than this get no span.
    pub(crate) fn acquire_threshold(&self) -> Duration {
        self.inner.acquire_threshold
    }

    /// Starts a span under `parent` (see [`current_parent`]) at `start`.
    pub(crate) fn start_at(&self, parent: Option<Parent>, start: Instant) -> Started {
        let trace_id = parent.map_or_else(|| self.inner.ids.new_trace_id(), |p| p.trace_id);
        let sampled = self.inner.sampler.sampled(parent, trace_id);
        Started {
            this: Parent {
                trace_id,
                span_id: self.inner.ids.new_span_id(),
                sampled,
                remote: false,
            },
            parent_span_id: parent.map_or(SpanId::INVALID, |p| p.span_id),
            parent_remote: parent.is_some_and(|p| p.remote),
            start,
        }
    }

    /// Queues a finished span for export (nothing when it was not sampled).
    /// `what` is only called for a sampled span.
    pub(crate) fn end(
        &self,
        started: &Started,
        duration: Duration,
        name: &'static str,
        kind: SpanKind,
        what: impl FnOnce() -> What,
    ) {
        if !started.this.sampled {
            return;
        }
        self.inner.queue.push(DbSpan {
            trace_id: started.this.trace_id,
            span_id: started.this.span_id,
            parent_span_id: started.parent_span_id,
            parent_remote: started.parent_remote,
            start: started.start,
            duration,
            name,
            kind,
            what: what(),
        });
    }
}

/// The tracer of the telemetry [`init`](crate::init) installed, for handles
/// not given one of their own.
static GLOBAL: OnceLock<DbTracer> = OnceLock::new();

/// Makes `tracer` the one handles without their own use (once per process;
/// later calls change nothing).
pub(crate) fn set_global(tracer: DbTracer) {
    let _ = GLOBAL.set(tracer);
}

/// The tracer [`set_global`] installed.
pub(crate) fn global() -> Option<&'static DbTracer> {
    GLOBAL.get()
}

/// Texts leaked once each and shared for the life of the process, with
/// their total size.
#[derive(Default)]
struct Interned {
    set: HashSet<&'static str>,
    bytes: usize,
}

impl Interned {
    /// `s` as a `&'static str`; `None` when adding it would pass `max`
    /// (texts, bytes).
    fn get(&mut self, s: &str, max: (usize, usize)) -> Option<&'static str> {
        if let Some(found) = self.set.get(s) {
            return Some(found);
        }
        if self.set.len() >= max.0 || self.bytes.saturating_add(s.len()) > max.1 {
            return None;
        }
        let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
        self.bytes = self.bytes.saturating_add(s.len());
        self.set.insert(leaked);
        Some(leaked)
    }
}

fn lock(set: &'static OnceLock<Mutex<Interned>>) -> std::sync::MutexGuard<'static, Interned> {
    set.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// `s` as a `&'static str`, made once per distinct text: span names and the
/// constant attributes of a handle (database, server), so that a span copies
/// no string for them. The set only grows with new handle descriptions.
pub(crate) fn intern(s: &str) -> &'static str {
    static SET: OnceLock<Mutex<Interned>> = OnceLock::new();
    lock(&SET)
        .get(s, (usize::MAX, usize::MAX))
        .unwrap_or_else(|| unreachable!("no bound: saturating sizes never pass usize::MAX"))
}

/// Statement texts kept for the life of the process, at most: a service
/// runs a bounded set of statements; past this, texts are copied per span.
const TEXTS_MAX: usize = 4096;
/// … and at most this many bytes of them.
const TEXT_BYTES_MAX: usize = 4 << 20;

/// `text` as a `&'static str` while the bounds above allow.
fn intern_text(text: &str) -> Option<&'static str> {
    static SET: OnceLock<Mutex<Interned>> = OnceLock::new();
    lock(&SET).get(text, (TEXTS_MAX, TEXT_BYTES_MAX))
}

/// One slot of a thread's statement-text cache: the statement as it came
/// (where it was and its text, to tell a reused address from the same
/// statement) and its text as telemetry shows it.
struct CachedText {
    address: usize,
    parameterized: bool,
    raw: Box<str>,
    shown: &'static str,
}

const TEXT_CACHE_SLOTS: usize = 128;

thread_local! {
    static TEXT_CACHE: std::cell::RefCell<Vec<Option<CachedText>>> =
        std::cell::RefCell::new((0..TEXT_CACHE_SLOTS).map(|_| None).collect());
}

/// The longest `db.query.text`, in bytes, before it is cut (with `…`):
/// `OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT`, else
/// `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`, else [`DEFAULT_TEXT_LIMIT`]. A
/// generated statement (ten thousand rows in one `INSERT … VALUES`) must not
/// make spans of a megabyte: a collector refuses a request over 4 MiB, and
/// with it every span of the batch.
pub(crate) fn text_limit() -> usize {
    static LIMIT: OnceLock<usize> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        [
            "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
            "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
        ]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.trim().parse::<usize>().ok())
        .unwrap_or(DEFAULT_TEXT_LIMIT)
    })
}

/// `db.query.text`'s limit when no variable sets one: longer than any
/// statement written by hand.
pub(crate) const DEFAULT_TEXT_LIMIT: usize = 4096;

/// `db.query.text` of a statement: its text when it came with parameters,
/// with literals replaced by `?` when it did not, cut at [`text_limit`]. A
/// statement a thread has seen before costs one comparison: no copy, no
/// redaction.
pub(crate) fn query_text(sql: &str, parameterized: bool) -> Text {
    query_text_within(sql, parameterized, text_limit())
}

fn query_text_within(sql: &str, parameterized: bool, limit: usize) -> Text {
    let address = sql.as_ptr() as usize;
    let slot = (address >> 3 ^ sql.len()) % TEXT_CACHE_SLOTS;
    let cached = TEXT_CACHE.try_with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(hit) = &cache[slot]
            && hit.address == address
            && hit.parameterized == parameterized
            && *hit.raw == *sql
        {
            return Text::Static(hit.shown);
        }
        let shown = crate::sql::QueryText::new(sql, parameterized)
            .truncated(limit)
            .to_cow();
        match intern_text(&shown) {
            Some(shown) => {
                cache[slot] = Some(CachedText {
                    address,
                    parameterized,
                    raw: sql.into(),
                    shown,
                });
                Text::Static(shown)
            }
            None => Text::Owned(shown.into()),
        }
    });
    // Only while the thread is tearing down.
    cached.unwrap_or_else(|_| {
        Text::Owned(
            crate::sql::QueryText::new(sql, parameterized)
                .truncated(limit)
                .to_cow()
                .into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_names_follow_the_sdk() {
        let p = |name, arg| SamplerChoice::parse(name, arg).0;
        assert_eq!(p("", None), SamplerChoice::default());
        assert_eq!(
            p("always_off", None),
            SamplerChoice {
                parent_based: false,
                root: Rule::AlwaysOff
            }
        );
        assert_eq!(
            p("parentbased_traceidratio", Some("0.25")),
            SamplerChoice {
                parent_based: true,
                root: Rule::Ratio(0.25)
            }
        );
        // A bad ratio keeps every trace rather than none.
        assert_eq!(p("traceidratio", Some("2")).root, Rule::AlwaysOn);
        assert_eq!(p("xray", None), SamplerChoice::default());
        let (_, warning) = SamplerChoice::parse("traceidratio", None);
        assert!(warning.is_some_and(|w| w.contains("OTEL_TRACES_SAMPLER_ARG")));
        assert_eq!(SamplerChoice::parse("always_off", None).1, None);
    }

    #[test]
    fn children_follow_their_parent_when_parent_based() {
        let choice = SamplerChoice::parse("parentbased_always_off", None).0;
        let id = TraceId::from(7u128);
        let parent = |sampled| Parent {
            trace_id: id,
            span_id: SpanId::from(1u64),
            sampled,
            remote: false,
        };
        assert!(!choice.sampled(None, id), "roots follow the root rule");
        assert!(choice.sampled(Some(parent(true)), id));
        assert!(!choice.sampled(Some(parent(false)), id));
        let always = SamplerChoice::parse("always_on", None).0;
        assert!(always.sampled(Some(parent(false)), id));
    }

    #[test]
    fn a_ratio_of_zero_keeps_nothing_and_one_keeps_everything() {
        let none = SamplerChoice::parse("traceidratio", Some("0")).0;
        let all = SamplerChoice::parse("traceidratio", Some("1")).0;
        for i in 1..200u128 {
            let id = TraceId::from(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835));
            assert!(!none.sampled(None, id));
            assert!(all.sampled(None, id));
        }
    }

    #[test]
    fn the_current_operation_is_set_while_polled_and_restored_after() {
        let parent = Parent {
            trace_id: TraceId::from(3u128),
            span_id: SpanId::from(4u64),
            sampled: true,
            remote: false,
        };
        let inner = std::pin::pin!(async { CURRENT.with(Cell::get) });
        let seen = futures_lite_block_on(InScope::new(inner, Some(parent)));
        assert_eq!(seen, Some(parent));
        assert_eq!(CURRENT.with(Cell::get), None);
    }

    fn futures_lite_block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .map(|rt| rt.block_on(f))
            .unwrap_or_else(|e| panic!("runtime: {e}"))
    }

    fn shown(text: Text) -> String {
        match text {
            Text::Static(s) => s.to_owned(),
            Text::Owned(s) => s.into(),
        }
    }

    #[test]
    fn a_long_statement_text_is_cut_at_the_limit() {
        let shown = |text: Text| match text {
            Text::Static(s) => s.to_owned(),
            Text::Owned(s) => s.into(),
        };
        let long = format!("INSERT INTO t VALUES {}", "($1, $2), ".repeat(1000));
        let text = shown(query_text_within(&long, true, 64));
        assert!(text.ends_with('…'), "{text}");
        assert!(text.len() <= 64 + '…'.len_utf8(), "{}", text.len());
        assert!(long.starts_with(text.trim_end_matches('…')));
        // Under the limit: whole.
        assert_eq!(shown(query_text_within("SELECT 1", true, 64)), "SELECT 1");
        let set = [
            "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
            "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
        ]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
        if !set {
            assert_eq!(text_limit(), DEFAULT_TEXT_LIMIT);
        }
    }

    #[test]
    fn a_reused_buffer_never_shows_the_text_it_held_before() {
        // The same address, the same length, another statement: the cache
        // must compare the text, not only where it lives.
        let mut buffer = String::from("SELECT a FROM t WHERE b = $1");
        assert_eq!(
            shown(query_text(&buffer, true)),
            "SELECT a FROM t WHERE b = $1"
        );
        buffer.replace_range(7..8, "z");
        assert_eq!(
            shown(query_text(&buffer, true)),
            "SELECT z FROM t WHERE b = $1"
        );
        // Without parameters the literals go, whatever the cache holds.
        buffer.clear();
        buffer.push_str("SELECT 'secret-42' FROM t WHERE b = 1");
        assert_eq!(
            shown(query_text(&buffer, false)),
            "SELECT ? FROM t WHERE b = ?"
        );
        assert_eq!(
            shown(query_text(&buffer, true)),
            "SELECT 'secret-42' FROM t WHERE b = 1",
            "text that came with parameters is shown as written"
        );
    }

    #[test]
    fn interned_strings_are_shared() {
        let a = intern(&String::from("SELECT plant"));
        let b = intern("SELECT plant");
        assert!(std::ptr::eq(a, b));
    }
}

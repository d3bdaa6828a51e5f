//! Histogram records kept on the thread that made them until there are
//! [`FLUSH_AT`] of them or metrics are collected.
//!
//! The SDK's bound histogram is one `Mutex` around its buckets. Every
//! statement records into three of them (`db.client.operation.duration`,
//! `wait_time`, `use_time`), and on a multi-threaded runtime the workers
//! take turns at the same three locks: each record then pulls the lock's
//! cache line from the other core. Measured on the bench machine, that cost
//! a statement about 0.15 µs more with two workers than with one — as much
//! as the records themselves.
//!
//! Here each thread appends `(histogram, value)` to a buffer of its own,
//! under a lock only the thread and a collection take, and hands the
//! values to the SDK [`FLUSH_AT`] at a time: the SDK's locks change cores
//! once per flush instead of once per record. Every collection (a
//! Prometheus scrape, an OTLP export, a flush, the shutdown) first hands
//! over what all threads hold ([`LocalHistograms::drain`], called from an
//! observable instrument's callback, which the SDK runs before it reads the
//! histograms), so a collection sees every value recorded before it began,
//! as it would without the buffers.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use opentelemetry::metrics::BoundHistogram;

/// A thread hands its values to the SDK when it holds this many.
pub(crate) const FLUSH_AT: usize = 256;

/// The values one thread recorded and has not handed over yet.
#[derive(Default)]
struct Buffer {
    values: Mutex<Vec<(u32, f64)>>,
}

impl Buffer {
    fn lock(&self) -> MutexGuard<'_, Vec<(u32, f64)>> {
        self.values.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

thread_local! {
    /// This thread's buffer for each set of histograms (usually one), by id.
    static LOCAL: RefCell<Vec<(u64, Arc<Buffer>)>> = const { RefCell::new(Vec::new()) };
}

/// Ids of [`LocalHistograms`], unique in the process.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

struct Inner {
    id: u64,
    /// The SDK histograms, by slot.
    histograms: RwLock<Vec<BoundHistogram<f64>>>,
    /// Every thread's buffer.
    buffers: Mutex<Vec<Arc<Buffer>>>,
}

impl Inner {
    /// Hands `values` to the SDK.
    fn record(&self, values: &[(u32, f64)]) {
        let histograms = self
            .histograms
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        for &(slot, value) in values {
            if let Some(histogram) = histograms.get(slot as usize) {
                histogram.record(value);
            }
        }
    }
}

/// The per-thread buffers of one [`Metrics`](crate::Metrics)' histograms.
#[derive(Clone)]
pub(crate) struct LocalHistograms {
    inner: Arc<Inner>,
}

impl LocalHistograms {
    pub(crate) fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                histograms: RwLock::new(Vec::new()),
                buffers: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Records into `histogram` through the per-thread buffers.
    pub(crate) fn add(&self, histogram: BoundHistogram<f64>) -> LocalHistogram {
        let mut histograms = self
            .inner
            .histograms
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        histograms.push(histogram);
        LocalHistogram {
            inner: Arc::clone(&self.inner),
            slot: u32::try_from(histograms.len() - 1).unwrap_or(u32::MAX),
        }
    }

    /// Hands every thread's values to the SDK; forgets the buffers of
    /// threads that have ended. Called before each collection.
    pub(crate) fn drain(&self) {
        let inner = &self.inner;
        let mut buffers = inner.buffers.lock().unwrap_or_else(PoisonError::into_inner);
        buffers.retain(|buffer| {
            let mut values = buffer.lock();
            inner.record(&values);
            values.clear();
            drop(values);
            // Only this list holds it: its thread has ended.
            Arc::strong_count(buffer) > 1
        });
    }

    /// How many threads have a buffer.
    #[cfg(test)]
    fn threads(&self) -> usize {
        self.inner
            .buffers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// One histogram recorded through [`LocalHistograms`]. Cheap to clone.
#[derive(Clone)]
pub(crate) struct LocalHistogram {
    inner: Arc<Inner>,
    slot: u32,
}

impl LocalHistogram {
    /// Records `value`: kept on this thread until [`FLUSH_AT`] values are
    /// waiting or metrics are collected.
    pub(crate) fn record(&self, value: f64) {
        let inner = &self.inner;
        // `try_with`: a record may come while its thread is tearing down;
        // the value then goes to the SDK at once.
        let kept = LOCAL.try_with(|local| {
            let mut local = local.borrow_mut();
            let buffer = crate::per_thread::buffer(&mut local, inner.id, &inner.buffers);
            let mut values = buffer.lock();
            values.push((self.slot, value));
            if values.len() >= FLUSH_AT {
                inner.record(&values);
                values.clear();
            }
        });
        if kept.is_err() {
            inner.record(&[(self.slot, value)]);
        }
    }
}

impl std::fmt::Debug for LocalHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalHistogram")
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::SdkMeterProvider;

    use super::*;

    /// A provider read as Prometheus text whose collections drain `local`
    /// first, as `Metrics`' do.
    fn provider(local: &LocalHistograms) -> (SdkMeterProvider, prometheus::Registry) {
        let registry = prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .build()
            .unwrap();
        let provider = SdkMeterProvider::builder().with_reader(exporter).build();
        let drain = local.clone();
        provider
            .meter("test")
            .u64_observable_counter("drain")
            .with_callback(move |_| drain.drain())
            .build();
        (provider, registry)
    }

    /// Count and sum of the histogram named `name`, collected now.
    fn histogram(registry: &prometheus::Registry, name: &str) -> (u64, f64) {
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        let value = |suffix: &str| {
            let prefix = format!("{name}_{suffix}");
            text.lines()
                .find(|l| l.starts_with(&prefix))
                .and_then(|l| l.rsplit(' ').next())
                .map_or(0.0, |v| v.parse::<f64>().unwrap())
        };
        (value("count") as u64, value("sum"))
    }

    #[test]
    fn a_collection_sees_every_value_recorded_before_it_on_any_thread() {
        let local = LocalHistograms::new();
        let (provider, registry) = provider(&local);
        let meter = provider.meter("test");
        let a = local.add(meter.f64_histogram("a").build().bind(&[]));
        let b = local.add(meter.f64_histogram("b").build().bind(&[]));
        // Fewer than FLUSH_AT on each thread: all of them still buffered.
        // Joined, not scoped: a scoped thread counts as finished before its
        // thread-locals (its buffer's handle) are dropped; a joined one has
        // exited.
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (a, b) = (a.clone(), b.clone());
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        a.record(1.0);
                        b.record(0.5);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        for _ in 0..3 {
            a.record(2.0);
        }
        assert_eq!(histogram(&registry, "a"), (43, 46.0));
        assert_eq!(histogram(&registry, "b"), (40, 20.0));
        // The four threads have ended: their buffers are gone.
        assert_eq!(local.threads(), 1);
        // Nothing is counted twice.
        a.record(1.0);
        assert_eq!(histogram(&registry, "a"), (44, 47.0));
    }

    #[test]
    fn a_thread_hands_its_values_over_when_its_buffer_is_full() {
        let local = LocalHistograms::new();
        let meter = opentelemetry_sdk::metrics::SdkMeterProvider::default().meter("test");
        let a = local.add(meter.f64_histogram("a").build().bind(&[]));
        for _ in 0..FLUSH_AT - 1 {
            a.record(1.0);
        }
        let held = |local: &LocalHistograms| local.inner.buffers.lock().unwrap()[0].lock().len();
        assert_eq!(held(&local), FLUSH_AT - 1);
        a.record(1.0);
        assert_eq!(held(&local), 0);
    }

    #[test]
    fn many_threads_lose_no_value() {
        let local = LocalHistograms::new();
        let (provider, registry) = provider(&local);
        let a = local.add(provider.meter("test").f64_histogram("a").build().bind(&[]));
        // More threads than cores, each past several flushes, with
        // collections running meanwhile.
        std::thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| {
                    for i in 0..3000 {
                        a.record(f64::from(i % 2));
                    }
                });
            }
            s.spawn(|| {
                for _ in 0..20 {
                    histogram(&registry, "a");
                }
            });
        });
        assert_eq!(histogram(&registry, "a"), (48_000, 24_000.0));
    }

    #[test]
    fn a_thread_forgets_the_buffers_of_histograms_that_are_gone() {
        let meter = opentelemetry_sdk::metrics::SdkMeterProvider::default().meter("test");
        for _ in 0..100 {
            let local = LocalHistograms::new();
            local
                .add(meter.f64_histogram("a").build().bind(&[]))
                .record(1.0);
        }
        let kept = LOCAL.with(|l| l.borrow().len());
        assert!(kept <= 2, "{kept} buffers kept");
    }
}

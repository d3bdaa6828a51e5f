//! The measuring loop shared by every pool: a warm-up, then a fixed window in
//! which each task (or thread) counts completed operations and records their
//! latency in a histogram of its own; the histograms are merged at the end.
//!
//! Every run is bounded by the clock the loop reads itself, never by a timer
//! task: a pool whose `acquire` is always ready (it never yields to the
//! scheduler) cannot starve the measurement's end.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;

/// Highest latency the histograms track (60 s, in nanoseconds); longer ones
/// are clamped to it.
const MAX_NS: u64 = 60_000_000_000;

/// How long to warm up and how long to measure.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Operations run but not counted, so pools fill and caches warm.
    pub warmup: Duration,
    /// The window whose completions are counted.
    pub measure: Duration,
}

/// The outcome of one measurement.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Operations completed inside the window.
    pub ops: u64,
    /// The window's length.
    pub window: Duration,
    /// Latency of each counted operation, in nanoseconds.
    pub latency_ns: Histogram<u64>,
}

impl Sample {
    /// Completed operations per second.
    pub fn ops_per_sec(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 {
            self.ops as f64 / secs
        } else {
            0.0
        }
    }

    /// The latency at `quantile` (0..=1) in microseconds; `None` without samples.
    pub fn quantile_us(&self, quantile: f64) -> Option<f64> {
        (!self.latency_ns.is_empty())
            .then(|| self.latency_ns.value_at_quantile(quantile) as f64 / 1000.0)
    }
}

/// A new latency histogram: nanoseconds, 3 significant digits.
pub fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_NS, 3).context("creating a latency histogram")
}

/// One benchmark operation on an async pool: acquire, work, release.
pub trait AsyncOp: Send + Sync + 'static {
    /// Runs one operation for task number `task` (tasks are numbered from 0).
    fn run(&self, task: usize) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// One benchmark operation on a pool used from OS threads.
pub trait ThreadOp: Send + Sync {
    /// Runs one operation for thread number `thread`.
    fn run(&self, thread: usize) -> anyhow::Result<()>;
}

/// The measured window: operations before `start` are the warm-up.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// End of the warm-up.
    pub start: Instant,
    /// End of the measurement.
    pub end: Instant,
}

impl Window {
    /// The window of `timing`, starting after its warm-up from now.
    pub fn after_warmup(timing: Timing) -> Self {
        let start = Instant::now() + timing.warmup;
        Self {
            start,
            end: start + timing.measure,
        }
    }

    /// The window's length.
    pub fn duration(&self) -> Duration {
        self.end.saturating_duration_since(self.start)
    }
}

/// Per-task tally.
struct Tally {
    ops: u64,
    hist: Histogram<u64>,
}

impl Tally {
    /// Accounts for `n` operations that ran back to back from `started` to `done`.
    ///
    /// Throughput counts the operations that *complete* inside the window.
    /// Latency is recorded for every operation in flight at some point of the
    /// window, however early it started or late it completes: the loop stops
    /// starting operations at the window's end but lets the ones in flight
    /// finish, so a task an unfair queue kept waiting through the window
    /// still reports its wait instead of vanishing from the percentiles. A
    /// batch of `n` is recorded as `n` operations of its average latency.
    #[inline]
    fn count(&mut self, window: &Window, started: Instant, done: Instant, n: u32) {
        if done >= window.start && done < window.end {
            self.ops += u64::from(n);
        }
        // Every operation starts before the window's end (the loop's condition).
        if done >= window.start {
            let each = (done - started) / n.max(1);
            let ns = u64::try_from(each.as_nanos()).unwrap_or(MAX_NS);
            // Cannot fail after clamping to the histogram's bounds.
            let _ = self.hist.record_n(ns.clamp(1, MAX_NS), u64::from(n));
        }
    }
}

/// How a task paces its operations.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Operations between two clock reads (1: every operation is timed on
    /// its own). Larger batches keep the clock's cost (about 35 ns in a VM)
    /// out of measurements of sub-microsecond operations.
    pub batch: u32,
    /// Yield to the scheduler after this many operations (rounded up to whole
    /// batches), so tasks of a pool whose acquire never waits still
    /// interleave. `None`: never yield.
    pub yield_every: Option<u32>,
}

impl Pace {
    /// Every operation timed, no yields: for operations that do IO.
    pub const IO: Pace = Pace {
        batch: 1,
        yield_every: None,
    };
}

/// Runs `op` from `concurrency` tokio tasks on the current runtime until the
/// end of `window` (the time before its start is the warm-up).
///
/// Latency is measured from the end of one operation (or batch, see [`Pace`])
/// to the end of the next on the same task, one clock read per batch, so it
/// covers acquire, work and release. Throughput counts the operations that
/// complete inside the window; latency is recorded for every operation in
/// flight during the window, however late it completes (tasks stop starting
/// operations at the window's end but finish the ones in flight), so a task
/// an unfair queue kept waiting still shows in the percentiles.
///
/// Each task checks the clock itself after every batch, so the run ends on
/// time even when the pool never yields to the scheduler.
pub async fn measure_async<O: AsyncOp>(
    op: Arc<O>,
    concurrency: usize,
    window: Window,
    pace: Pace,
) -> anyhow::Result<Sample> {
    let batch = pace.batch.max(1);
    let mut tasks = Vec::with_capacity(concurrency);
    for task in 0..concurrency {
        let op = Arc::clone(&op);
        let hist = new_histogram()?;
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally { ops: 0, hist };
            let mut prev = Instant::now();
            let mut since_yield = 0u32;
            while prev < window.end {
                for _ in 0..batch {
                    op.run(task).await?;
                }
                let now = Instant::now();
                tally.count(&window, prev, now, batch);
                prev = now;
                if let Some(every) = pace.yield_every {
                    since_yield += batch;
                    if since_yield >= every {
                        since_yield = 0;
                        tokio::task::yield_now().await;
                        prev = Instant::now();
                    }
                }
            }
            anyhow::Ok(tally)
        }));
    }
    let mut total = Tally {
        ops: 0,
        hist: new_histogram()?,
    };
    let mut first_error = None;
    for task in tasks {
        match task.await {
            Ok(Ok(tally)) => merge(&mut total, &tally)?,
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(anyhow::anyhow!("benchmark task failed: {e}"));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(Sample {
        ops: total.ops,
        window: window.duration(),
        latency_ns: total.hist,
    })
}

/// Like [`measure_async`] (every operation timed, no yields) for very many
/// tasks. An HDR histogram per task (about 200 KB each over this range) would
/// take 2 GB for 10,000 tasks, and a growing vector per task puts a cold
/// cache line on every operation. Instead each worker thread records into
/// one of a few shared histograms (picked per thread, so a lock is almost
/// never contended and the histogram stays in that core's cache); they are
/// merged at the end.
pub async fn measure_async_many<O: AsyncOp>(
    op: Arc<O>,
    concurrency: usize,
    window: Window,
) -> anyhow::Result<Sample> {
    let shards: Arc<Vec<std::sync::Mutex<Tally>>> = Arc::new(
        (0..SHARDS)
            .map(|_| new_histogram().map(|hist| std::sync::Mutex::new(Tally { ops: 0, hist })))
            .collect::<anyhow::Result<_>>()?,
    );
    let mut tasks = Vec::with_capacity(concurrency);
    for task in 0..concurrency {
        let op = Arc::clone(&op);
        let shards = Arc::clone(&shards);
        tasks.push(tokio::spawn(async move {
            let mut prev = Instant::now();
            while prev < window.end {
                op.run(task).await?;
                let now = Instant::now();
                if now >= window.start {
                    let shard = &shards[shard_index()];
                    let mut tally = shard
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    tally.count(&window, prev, now, 1);
                }
                prev = now;
            }
            anyhow::Ok(())
        }));
    }
    let mut first_error = None;
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(anyhow::anyhow!("benchmark task failed: {e}"));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let mut total = Tally {
        ops: 0,
        hist: new_histogram()?,
    };
    for shard in shards.iter() {
        let part = shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        merge(&mut total, &part)?;
    }
    Ok(Sample {
        ops: total.ops,
        window: window.duration(),
        latency_ns: total.hist,
    })
}

/// Shared histograms of [`measure_async_many`].
const SHARDS: usize = 8;

/// This thread's shard: threads are numbered in the order they first ask.
fn shard_index() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Relaxed) % SHARDS;
    }
    INDEX.with(|i| *i)
}

/// Runs `op` from `threads` OS threads until the end of `window`; the same
/// loop as [`measure_async`] without batches or yields.
pub fn measure_threads<O: ThreadOp>(
    op: &O,
    threads: usize,
    window: Window,
) -> anyhow::Result<Sample> {
    let results: Vec<anyhow::Result<Tally>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                scope.spawn(move || {
                    let mut tally = Tally {
                        ops: 0,
                        hist: new_histogram()?,
                    };
                    let mut prev = Instant::now();
                    while prev < window.end {
                        op.run(thread)?;
                        let now = Instant::now();
                        tally.count(&window, prev, now, 1);
                        prev = now;
                    }
                    Ok(tally)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("benchmark thread panicked")))
            })
            .collect()
    });
    let mut total = Tally {
        ops: 0,
        hist: new_histogram()?,
    };
    for result in results {
        merge(&mut total, &result?)?;
    }
    Ok(Sample {
        ops: total.ops,
        window: window.duration(),
        latency_ns: total.hist,
    })
}

fn merge(total: &mut Tally, part: &Tally) -> anyhow::Result<()> {
    total.ops += part.ops;
    total
        .hist
        .add(&part.hist)
        .context("merging latency histograms")
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nop;

    impl AsyncOp for Nop {
        async fn run(&self, _task: usize) -> anyhow::Result<()> {
            Ok(())
        }
    }

    impl ThreadOp for Nop {
        fn run(&self, _thread: usize) -> anyhow::Result<()> {
            Ok(())
        }
    }

    const SHORT: Timing = Timing {
        warmup: Duration::from_millis(20),
        measure: Duration::from_millis(50),
    };

    #[test]
    fn a_never_yielding_op_still_ends() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        // Without yields: tasks hog their worker until the window ends.
        let sample = rt
            .block_on(measure_async(
                Arc::new(Nop),
                8,
                Window::after_warmup(SHORT),
                Pace::IO,
            ))
            .unwrap();
        assert!(sample.ops > 0);
        assert!(sample.quantile_us(0.5).is_some());
        let sample = rt
            .block_on(measure_async(
                Arc::new(Nop),
                8,
                Window::after_warmup(SHORT),
                Pace {
                    batch: 4,
                    yield_every: Some(16),
                },
            ))
            .unwrap();
        assert!(sample.ops > 0);
    }

    #[test]
    fn threads_count_ops() {
        let sample = measure_threads(&Nop, 3, Window::after_warmup(SHORT)).unwrap();
        assert!(sample.ops > 0);
        assert!(sample.ops_per_sec() > 0.0);
    }
}

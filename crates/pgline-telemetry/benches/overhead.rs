//! What telemetry costs on the hot path: `checkout_select1` (borrow a
//! connection, `SELECT 1`, return it) through a bare `PgPool` and through
//! `Traced<PgPool>` with metrics, with and without span processing.
//!
//! `cargo bench -p pgline-telemetry --bench overhead [-- SECONDS ROUNDS [VARIANT]]`
//!
//! - `bare`, `metrics`, `tracing`: 8 tasks on a pool of 8 against the
//!   testkit's PostgreSQL. `metrics` is `Traced` with metrics, the pool
//!   listener and the log subscriber, no exporter (a service without a
//!   collector); `tracing` adds span processing by the OpenTelemetry SDK, with
//!   the spans dropped at the exporter (a service exporting every span).
//! - `noio-*`: the same layers around a database that answers at once,
//!   which isolates telemetry's own cost per operation.
//!
//! Each measurement runs in a fresh process with the variant's subscriber
//! installed globally, as in the service (several subscribers in one process
//! make `tracing` consult all of them and distort the figures). Variants
//! alternate round after round so that the load of a shared machine spreads
//! over all of them; the report gives each variant's median throughput and
//! client CPU time per operation (all threads of the process, the SDK's
//! included; PostgreSQL's not), relative to the bare pool. For instruction
//! counts under callgrind, run a child directly with `SEQ_OPS=n` (or
//! `NOIO_OPS=n`), `PGLINE_BENCH_VARIANT`, `PGLINE_BENCH_PORT` and
//! `PGLINE_BENCH_DB`. The official row lives in `cargo xtask bench`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pgline_async::{PgPool, PoolOptions};
use pgline_core::Database;
use pgline_telemetry::{LogFormat, Telemetry, Traced};

const CONCURRENCY: usize = 8;
const POOL_SIZE: u32 = 8;
const VARIANTS: [&str; 6] = [
    "bare",
    "metrics",
    "tracing",
    "noio-bare",
    "noio-metrics",
    "noio-tracing",
];
/// Operations per `noio-*` measurement (`NOIO_OPS` overrides).
fn noio_ops() -> u64 {
    std::env::var("NOIO_OPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300_000)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if let Ok(variant) = std::env::var("PGLINE_BENCH_VARIANT") {
        let seconds: f64 = args[0].parse().unwrap();
        child(&variant, Duration::from_secs_f64(seconds));
        return;
    }
    let seconds: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let rounds: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    // An optional third argument runs one variant only (for profiling).
    let only = args.get(2).cloned();

    let server = pgline_testkit::PgServer::shared();
    let db = server.fresh_database_blocking().unwrap();
    println!(
        "checkout_select1: pool {POOL_SIZE}, concurrency {CONCURRENCY}, {rounds} rounds of {seconds} s per variant"
    );
    let mut results: Vec<Vec<(f64, f64, f64, f64)>> = vec![Vec::new(); VARIANTS.len()];
    for round in 0..rounds {
        for k in 0..VARIANTS.len() {
            // Rotate the order so that no variant always runs first.
            let i = (k + round) % VARIANTS.len();
            if only.as_deref().is_some_and(|o| o != VARIANTS[i]) {
                continue;
            }
            let output = Command::new(std::env::current_exe().unwrap())
                .arg(seconds.to_string())
                .env("PGLINE_BENCH_VARIANT", VARIANTS[i])
                .env("PGLINE_BENCH_PORT", server.port().to_string())
                .env("PGLINE_BENCH_DB", &db)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(output.status.success(), "{}: {stdout}{stderr}", VARIANTS[i]);
            let mut figures = stdout.split_whitespace().map(|f| f.parse::<f64>().unwrap());
            let mut next = || figures.next().unwrap();
            results[i].push((next(), next(), next(), next()));
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let ops: Vec<f64> = results
        .iter()
        .map(|r| median(r.iter().map(|s| s.0).collect()))
        .collect();
    let cpu: Vec<f64> = results
        .iter()
        .map(|r| median(r.iter().map(|s| s.1).collect()))
        .collect();
    let p50: Vec<f64> = results
        .iter()
        .map(|r| median(r.iter().map(|s| s.2).collect()))
        .collect();
    let p99: Vec<f64> = results
        .iter()
        .map(|r| median(r.iter().map(|s| s.3).collect()))
        .collect();
    let mut json = Vec::new();
    for (i, variant) in VARIANTS.iter().enumerate() {
        if results[i].is_empty() {
            continue;
        }
        if !variant.starts_with("noio") {
            // The `cargo xtask bench` row (DESIGN's format, plus the telemetry
            // variant and the client CPU per operation).
            json.push(format!(
                "{{\"scenario\":\"checkout_select1_telemetry\",\"pool\":\"pgline\",\"telemetry\":\"{variant}\",\"pool_size\":{POOL_SIZE},\"concurrency\":{CONCURRENCY},\"ops_per_sec\":{:.1},\"p50_us\":{:.1},\"p99_us\":{:.1},\"cpu_us_per_op\":{:.2},\"cpu_overhead_pct\":{:.1}}}",
                ops[i],
                p50[i],
                p99[i],
                cpu[i],
                (cpu[i] / cpu[0] - 1.0) * 100.0,
            ));
        }
        if variant.starts_with("noio") {
            let base = cpu[3] * 1000.0;
            println!(
                "{variant:<13} {:>7.0} ns/op of client CPU, {:>+6.0} ns/op over noio-bare   runs {:?}",
                cpu[i] * 1000.0,
                cpu[i] * 1000.0 - base,
                results[i]
                    .iter()
                    .map(|s| (s.1 * 1000.0).round() as u64)
                    .collect::<Vec<_>>(),
            );
            continue;
        }
        println!(
            "{variant:<8} {:>8.0} ops/s {:>+6.1} %   client CPU {:>5.1} us/op {:>+6.1} %   runs {:?}",
            ops[i],
            (ops[i] / ops[0] - 1.0) * 100.0,
            cpu[i],
            (cpu[i] / cpu[0] - 1.0) * 100.0,
            results[i]
                .iter()
                .map(|s| s.0.round() as u64)
                .collect::<Vec<_>>(),
        );
    }
    for line in json {
        println!("{line}");
    }
}

/// One measurement: prints `ops_per_sec cpu_us_per_op`.
fn child(variant: &str, period: Duration) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Some(mode) = variant.strip_prefix("noio-") {
        let (ops, cpu) = runtime.block_on(noio(mode));
        println!("{ops} {cpu} 0 0");
        return;
    }
    runtime.block_on(async {
        let config = pgline_config::Config::from_vars([
            ("NODE_ENV", "test".to_owned()),
            ("DB_HOST", "127.0.0.1".to_owned()),
            ("DB_PORT", std::env::var("PGLINE_BENCH_PORT").unwrap()),
            ("DB_NAME", std::env::var("PGLINE_BENCH_DB").unwrap()),
            ("DB_USER", "postgres".to_owned()),
            ("LOG_LEVEL", "info".to_owned()),
        ])
        .unwrap();
        let options =
            PoolOptions::new(POOL_SIZE, POOL_SIZE).with_acquire_timeout(Duration::from_secs(10));
        let telemetry = match variant {
            "bare" => None,
            // Metrics only: no endpoint, so no tracer provider.
            "metrics" => Some(Telemetry::builder(&config.telemetry).build().unwrap()),
            // Spans processed by the SDK and dropped at the exporter.
            _ => Some(
                Telemetry::builder(&config.telemetry)
                    .discard_export()
                    .build()
                    .unwrap(),
            ),
        };
        let sample = match &telemetry {
            None => {
                let pool = PgPool::connect_with(&config, options).await.unwrap();
                measure(pool, period).await
            }
            Some(telemetry) => {
                let subscriber = telemetry
                    .subscriber(&config.log, LogFormat::Text, std::io::sink)
                    .unwrap();
                tracing::subscriber::set_global_default(subscriber).unwrap();
                let pool = PgPool::connect_with(
                    &config,
                    options.with_listener(telemetry.pool_listener("bench")),
                )
                .await
                .unwrap();
                let stats = pool.clone();
                telemetry
                    .metrics()
                    .register_pool("bench", move || stats.stats());
                let db = Traced::from_config(pool, &config).with_metrics(telemetry.metrics());
                measure(db, period).await
            }
        };
        println!("{} {} {} {}", sample.0, sample.1, sample.2, sample.3);
        if let Some(telemetry) = telemetry {
            tokio::task::spawn_blocking(move || telemetry.shutdown())
                .await
                .unwrap()
                .unwrap();
        }
    });
}

/// User plus system CPU time of this process so far (all threads), from
/// `/proc/self/stat` (clock ticks of 10 ms).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are the 14th and 15th fields.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Operations per second and client CPU microseconds per operation of
/// `CONCURRENCY` tasks running `SELECT 1` for `period`, after a short warm-up.
async fn measure<D: Database + Clone>(db: D, period: Duration) -> (f64, f64, f64, f64) {
    // `SEQ_OPS=n`: n statements one after another instead of a timed run, for
    // counting instructions under callgrind.
    if let Some(n) = std::env::var("SEQ_OPS")
        .ok()
        .and_then(|n| n.parse::<u64>().ok())
    {
        let started = Instant::now();
        for _ in 0..n {
            db.query("SELECT 1", &[]).await.unwrap();
        }
        return (n as f64 / started.elapsed().as_secs_f64(), 0.0, 0.0, 0.0);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    // Latencies are kept only inside the measured window.
    let recording = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (db, stop, done, recording) =
            (db.clone(), stop.clone(), done.clone(), recording.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(1 << 16);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                db.query("SELECT 1", &[]).await.unwrap();
                if recording.load(Ordering::Relaxed) {
                    latencies.push(t.elapsed().as_nanos() as u64);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            latencies
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    recording.store(true, Ordering::Relaxed);
    let (ops0, cpu0, started) = (done.load(Ordering::Relaxed), process_cpu(), Instant::now());
    tokio::time::sleep(period).await;
    let (ops1, cpu1, elapsed) = (
        done.load(Ordering::Relaxed),
        process_cpu(),
        started.elapsed(),
    );
    recording.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    latencies.sort_unstable();
    let quantile = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(f64::NAN, |ns| *ns as f64 / 1000.0)
    };
    let ops = (ops1 - ops0) as f64;
    (
        ops / elapsed.as_secs_f64(),
        (cpu1 - cpu0).as_secs_f64() * 1e6 / ops,
        quantile(0.5),
        quantile(0.99),
    )
}

/// A database that answers at once, emitting the pool events a real pool
/// would: what telemetry itself costs per operation, without network noise.
#[derive(Clone)]
struct Instant_ {
    listener: Option<Arc<pgline_telemetry::PoolObserver>>,
}

impl Database for Instant_ {
    async fn query(
        &self,
        _sql: &str,
        _params: &[&(dyn pgline_core::ToSql + Sync)],
    ) -> Result<Vec<pgline_core::Row>, pgline_core::DbError> {
        use pgline_core::{PoolEvent, PoolListener as _};
        if let Some(listener) = &self.listener {
            listener.on_event(&PoolEvent::Acquire {
                connection_id: 1,
                wait: Duration::from_micros(5),
            });
            listener.on_event(&PoolEvent::Release {
                connection_id: 1,
                held: Duration::from_micros(20),
            });
        }
        Ok(Vec::new())
    }

    async fn execute(
        &self,
        _sql: &str,
        _params: &[&(dyn pgline_core::ToSql + Sync)],
    ) -> Result<u64, pgline_core::DbError> {
        Ok(0)
    }

    async fn batch_execute(&self, _sql: &str) -> Result<(), pgline_core::DbError> {
        Ok(())
    }

    async fn transaction<T, E, F>(&self, _f: F) -> Result<T, E>
    where
        T: Send,
        E: pgline_core::TransactionError,
        F: for<'s> Fn(&'s mut dyn pgline_core::Session) -> pgline_core::BoxFuture<'s, Result<T, E>>
            + Send
            + Sync,
    {
        Err(pgline_core::DbError::new(pgline_core::ErrorKind::Rejected).into())
    }

    fn stats(&self) -> pgline_core::PoolStats {
        pgline_core::PoolStats::default()
    }

    async fn health(&self, _timeout: Duration) -> pgline_core::HealthReport {
        pgline_core::HealthReport::new(true, Duration::ZERO, self.stats(), "noio", None)
    }

    async fn close(&self, _timeout: Duration) -> pgline_core::CloseReport {
        pgline_core::CloseReport::default()
    }

    fn backend(&self) -> &'static str {
        "noio"
    }
}

/// [`noio_ops`] sequential `SELECT 1`s on [`Instant_`]: returns
/// `ops_per_sec cpu_us_per_op`.
async fn noio(mode: &str) -> (f64, f64) {
    let config = pgline_config::Config::from_vars([("LOG_LEVEL", "info")]).unwrap();
    let telemetry = match mode {
        "bare" => None,
        "metrics" => Some(Telemetry::builder(&config.telemetry).build().unwrap()),
        _ => Some(
            Telemetry::builder(&config.telemetry)
                .discard_export()
                .build()
                .unwrap(),
        ),
    };
    let run = |db: &'static (dyn Fn() -> pgline_core::BoxFuture<'static, ()> + Send + Sync)| async move {
        let n = noio_ops();
        for _ in 0..n / 10 {
            db().await;
        }
        let (cpu0, started) = (process_cpu(), Instant::now());
        for _ in 0..n {
            db().await;
        }
        let (cpu, elapsed) = (process_cpu() - cpu0, started.elapsed());
        (
            n as f64 / elapsed.as_secs_f64(),
            cpu.as_secs_f64() * 1e6 / n as f64,
        )
    };
    match telemetry {
        None => {
            let db = Instant_ { listener: None };
            run(Box::leak(Box::new(move || {
                let db = db.clone();
                Box::pin(async move {
                    db.query("SELECT 1", &[]).await.unwrap();
                }) as pgline_core::BoxFuture<'static, ()>
            })))
            .await
        }
        Some(telemetry) => {
            let subscriber = telemetry
                .subscriber(&config.log, LogFormat::Text, std::io::sink)
                .unwrap();
            tracing::subscriber::set_global_default(subscriber).unwrap();
            let db = Traced::new(
                Instant_ {
                    listener: Some(telemetry.pool_listener("bench")),
                },
                "bench",
                "127.0.0.1",
                5432,
            )
            .with_metrics(telemetry.metrics());
            let result = run(Box::leak(Box::new(move || {
                let db = db.clone();
                Box::pin(async move {
                    db.query("SELECT 1", &[]).await.unwrap();
                }) as pgline_core::BoxFuture<'static, ()>
            })))
            .await;
            tokio::task::spawn_blocking(move || telemetry.shutdown())
                .await
                .unwrap()
                .unwrap();
            result
        }
    }
}

//! What telemetry costs on the hot path: `checkout_select1` (borrow a
//! connection, `SELECT 1`, return it) through a bare `PgPool` and through
//! `Traced<PgPool>` with metrics, with and without span export.
//!
//! `cargo bench -p pgline-telemetry --bench overhead [-- SECONDS ROUNDS [noio]]`
//!
//! - `bare`, `metrics`, `tracing`, `otlp`: 8 tasks on a pool of 8 against the
//!   testkit's PostgreSQL. `metrics` is `Traced` with metrics and the pool
//!   listener, no span export (a service without a collector); `tracing`
//!   also makes a span for every statement, queued, encoded as OTLP protobuf and
//!   dropped at the sink; `otlp` exports them (and the
//!   metrics) over OTLP/gRPC to a collector in the bench's parent process,
//!   encoding and sending included (a service exporting every span).
//!   The four run in one process, each with a pool of its own, one after
//!   another in slices of SECONDS, ROUNDS times, the order rotating each
//!   round: the machine's load drifts over seconds, so comparing neighbouring
//!   slices is far steadier than comparing separate runs. The process has the
//!   service's log subscriber installed throughout, as a service does.
//! - `noio-*`: the same layers around a database that answers at once, each
//!   in a process of its own, which isolates telemetry's own cost per
//!   operation. `noio-otlp` (run on its own, `PGLINE_BENCH_VARIANT=noio-otlp`)
//!   exports every span to a collector in the process, sleeping a
//!   millisecond after every `NOIO_PACE` statements (30: at most 30 000
//!   statements/s; 0 runs flat out, and the span queue then drops most
//!   spans), and prints the export threads' and the collector's CPU per
//!   span: the export path's cost without PostgreSQL's noise, for comparing
//!   builds.
//!
//! The report gives, per variant, the median throughput and client CPU time
//! per operation (all threads of the process, the SDK's export thread
//! included; PostgreSQL's not), and the median over rounds of each variant's
//! ratio to the bare slice of the same round; then, per variant, the whole
//! machine's CPU per operation (this process, the testkit server's
//! processes and the collector's threads) and how much of it each added
//! over bare. For instruction counts under
//! callgrind, run a child directly with `SEQ_OPS=n` (or `NOIO_OPS=n`),
//! `PGLINE_BENCH_VARIANT`, `PGLINE_BENCH_PORT` and `PGLINE_BENCH_DB`. The
//! official rows live in `cargo xtask bench`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pgline_async::{PgPool, PoolOptions};
use pgline_core::Database;
use pgline_telemetry::{LogFormat, Telemetry, Traced};

const CONCURRENCY: usize = 8;
const POOL_SIZE: u32 = 8;
/// The variants against PostgreSQL, measured side by side in one process.
const REAL: [&str; 4] = ["bare", "metrics", "tracing", "otlp"];
/// The variants without I/O, each in a process of its own.
const NOIO: [&str; 3] = ["noio-bare", "noio-metrics", "noio-tracing"];
/// Not measured: the start of each slice, while tasks and connections warm up.
const WARM_UP: Duration = Duration::from_millis(100);

/// Operations per `noio-*` measurement (`NOIO_OPS` overrides).
fn noio_ops() -> u64 {
    std::env::var("NOIO_OPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300_000)
}

/// One measured slice.
#[derive(Debug, Clone, Copy)]
struct Sample {
    ops_per_sec: f64,
    cpu_us_per_op: f64,
    p50_us: f64,
    p99_us: f64,
    /// CPU of the span-export threads (encoding, and sending for `otlp`)
    /// per operation: part of `cpu_us_per_op`, and steadier than the
    /// throughput on a shared machine.
    export_us_per_op: f64,
    /// CPU of PostgreSQL's processes per operation (NaN without schedstat).
    postgres_us_per_op: f64,
    /// CPU of the bench's collector per operation (NaN without schedstat).
    collector_us_per_op: f64,
}

impl Sample {
    /// The machine's CPU per operation: this process, PostgreSQL and the
    /// collector (everything the slice runs).
    fn machine_us_per_op(&self) -> f64 {
        self.cpu_us_per_op + self.postgres_us_per_op + self.collector_us_per_op
    }
}

/// The median of the finite values (NaN when there are none: a figure the
/// kernel did not give in any round).
fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if let Ok(variant) = std::env::var("PGLINE_BENCH_VARIANT") {
        child(&variant, &args);
        return;
    }
    let seconds: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let rounds: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    // `noio` as a third argument runs the no-I/O variants only.
    let noio_only = args.get(2).is_some_and(|a| a == "noio");

    if !noio_only {
        let server = pgline_testkit::PgServer::shared();
        let db = server.fresh_database_blocking().unwrap();
        // The collector of the `otlp` variant, in this process (not measured).
        let (collector, collector_addr) = Collector::start();
        println!(
            "checkout_select1: pool {POOL_SIZE}, concurrency {CONCURRENCY}, {rounds} rounds of one {seconds} s slice per variant"
        );
        let output = Command::new(std::env::current_exe().unwrap())
            .args([seconds.to_string(), rounds.to_string()])
            .env("PGLINE_BENCH_VARIANT", "interleaved")
            .env("PGLINE_BENCH_PORT", server.port().to_string())
            .env(
                "PGLINE_BENCH_PG_PID",
                server.pid().map_or(String::new(), |p| p.to_string()),
            )
            .env("PGLINE_BENCH_DB", &db)
            .env("PGLINE_BENCH_OTLP", format!("http://{collector_addr}"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "interleaved: {stdout}{stderr}");
        // What the collector took from the same two cores (read while its
        // threads still run): not pgline's cost, but part of the `otlp` row's.
        let collector_cpu = threads_cpu(&[COLLECTOR_THREAD]);
        let received = collector.stop();
        // Lines `round variant ops cpu p50 p99 export`.
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); REAL.len()];
        for line in stdout.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let Some(i) = f.get(1).and_then(|v| REAL.iter().position(|r| r == v)) else {
                continue;
            };
            let n = |k: usize| f[k].parse::<f64>().unwrap();
            samples[i].push(Sample {
                ops_per_sec: n(2),
                cpu_us_per_op: n(3),
                p50_us: n(4),
                p99_us: n(5),
                export_us_per_op: n(6),
                postgres_us_per_op: n(7),
                collector_us_per_op: n(8),
            });
        }
        report(&samples);
        match collector_cpu {
            Some(cpu) if received > 0 => println!(
                "otlp: the collector received {received} spans, {:.2} us of CPU per span",
                cpu.as_secs_f64() * 1e6 / received as f64
            ),
            _ => println!("otlp: the collector received {received} spans"),
        }
        assert!(received > 0, "the otlp variant exported nothing");
    }

    if std::env::var("PGLINE_BENCH_ONLY").is_ok() {
        // Profiling some of the variants against PostgreSQL: no `noio-*`.
        return;
    }
    let mut noio: Vec<Vec<f64>> = vec![Vec::new(); NOIO.len()];
    for round in 0..3 {
        for k in 0..NOIO.len() {
            let i = (k + round) % NOIO.len();
            let output = Command::new(std::env::current_exe().unwrap())
                .env("PGLINE_BENCH_VARIANT", NOIO[i])
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(output.status.success(), "{}: {stdout}", NOIO[i]);
            let cpu = stdout.split_whitespace().nth(1).unwrap();
            noio[i].push(cpu.parse::<f64>().unwrap());
        }
    }
    let base = median(noio[0].clone()) * 1000.0;
    for (i, variant) in NOIO.iter().enumerate() {
        let cpu = median(noio[i].clone()) * 1000.0;
        println!(
            "{variant:<13} {cpu:>7.0} ns/op of client CPU, {:>+6.0} ns/op over noio-bare   runs {:?}",
            cpu - base,
            noio[i]
                .iter()
                .map(|c| (c * 1000.0).round() as u64)
                .collect::<Vec<_>>(),
        );
    }
}

/// Prints the medians, the paired ratios and the JSON rows.
fn report(samples: &[Vec<Sample>]) {
    let bare = &samples[0];
    let mut json = Vec::new();
    for (i, variant) in REAL.iter().enumerate() {
        let s = &samples[i];
        if s.is_empty() {
            // Left out with `PGLINE_BENCH_ONLY`: no row (NaN is not JSON).
            continue;
        }
        let pick = |f: fn(&Sample) -> f64| median(s.iter().map(f).collect());
        // Each round's slice against the bare slice of the same round.
        let ratio =
            |f: fn(&Sample) -> f64| median(s.iter().zip(bare).map(|(v, b)| f(v) / f(b)).collect());
        let ops = pick(|x| x.ops_per_sec);
        let cpu = pick(|x| x.cpu_us_per_op);
        let ops_ratio = ratio(|x| x.ops_per_sec);
        let cpu_ratio = ratio(|x| x.cpu_us_per_op);
        // The spread of the paired ratios: the middle half of the rounds.
        let quartiles = |f: fn(&Sample) -> f64| {
            let mut r: Vec<f64> = s.iter().zip(bare).map(|(v, b)| f(v) / f(b)).collect();
            r.sort_by(f64::total_cmp);
            let at = |q: f64| {
                r.get((r.len() as f64 * q) as usize)
                    .copied()
                    .unwrap_or(f64::NAN)
            };
            ((at(0.25) - 1.0) * 100.0, (at(0.75) - 1.0) * 100.0)
        };
        let (ops_q1, ops_q3) = quartiles(|x| x.ops_per_sec);
        let (cpu_q1, cpu_q3) = quartiles(|x| x.cpu_us_per_op);
        let export = pick(|x| x.export_us_per_op);
        println!(
            "{variant:<8} {ops:>8.0} ops/s {:>+6.1} % [{ops_q1:+.0} .. {ops_q3:+.0}]   client CPU {cpu:>5.1} us/op {:>+6.1} % [{cpu_q1:+.0} .. {cpu_q3:+.0}]   export threads {export:>4.2} us/op   (paired medians [middle half of rounds])",
            (ops_ratio - 1.0) * 100.0,
            (cpu_ratio - 1.0) * 100.0,
        );
        // Where the extra CPU went, each part against the whole machine's
        // CPU per operation in the bare slice of the same round: with the
        // two cores saturated, these parts add up to the throughput cost,
        // and they tell pgline's own share from the collector's.
        let share = |f: fn(&Sample) -> f64| {
            median(
                s.iter()
                    .zip(bare)
                    .map(|(v, b)| (f(v) - f(b)) / b.machine_us_per_op() * 100.0)
                    .collect(),
            )
        };
        let machine = pick(Sample::machine_us_per_op);
        let process_share = share(|x| x.cpu_us_per_op);
        let collector_share = share(|x| x.collector_us_per_op);
        if i == 0 {
            println!(
                "         machine CPU {machine:>5.1} us/op (this process, PostgreSQL and the collector)"
            );
        } else {
            println!(
                "         machine CPU {machine:>5.1} us/op, over bare's: {:+.1} % [this process {process_share:+.1} %, PostgreSQL {:+.1} %, collector {collector_share:+.1} %]",
                share(Sample::machine_us_per_op),
                share(|x| x.postgres_us_per_op),
            );
        }
        let pct = |x: f64| {
            if x.is_finite() {
                format!("{x:.1}")
            } else {
                "null".to_owned()
            }
        };
        // The `cargo xtask bench` row (DESIGN's format, plus the telemetry
        // variant, the client CPU per operation, the paired overheads and
        // this process's and the collector's shares of the machine).
        json.push(format!(
            "{{\"scenario\":\"checkout_select1_telemetry\",\"pool\":\"pgline\",\"telemetry\":\"{variant}\",\"pool_size\":{POOL_SIZE},\"concurrency\":{CONCURRENCY},\"ops_per_sec\":{ops:.1},\"p50_us\":{:.1},\"p99_us\":{:.1},\"cpu_us_per_op\":{cpu:.2},\"throughput_overhead_pct\":{:.1},\"cpu_overhead_pct\":{:.1},\"export_us_per_op\":{},\"process_cpu_share_pct\":{},\"collector_cpu_share_pct\":{},\"rounds\":{}}}",
            pick(|x| x.p50_us),
            pick(|x| x.p99_us),
            (1.0 - ops_ratio) * 100.0,
            (cpu_ratio - 1.0) * 100.0,
            if export.is_finite() {
                format!("{export:.2}")
            } else {
                "null".to_owned()
            },
            pct(process_share),
            pct(collector_share),
            s.len(),
        ));
    }
    for line in json {
        println!("{line}");
    }
}

fn child(variant: &str, args: &[String]) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(
            std::env::var("BENCH_WORKERS")
                .ok()
                .and_then(|w| w.parse().ok())
                .unwrap_or(2),
        )
        .enable_all()
        .build()
        .unwrap();
    if let Some(mode) = variant.strip_prefix("noio-") {
        let (ops, cpu) = runtime.block_on(noio(mode));
        println!("{ops} {cpu}");
        return;
    }
    let seconds: f64 = args[0].parse().unwrap();
    let period = Duration::from_secs_f64(seconds);
    let config = pgline_config::Config::from_vars([
        ("NODE_ENV", "test".to_owned()),
        ("DB_HOST", "127.0.0.1".to_owned()),
        ("DB_PORT", std::env::var("PGLINE_BENCH_PORT").unwrap()),
        ("DB_NAME", std::env::var("PGLINE_BENCH_DB").unwrap()),
        ("DB_USER", "postgres".to_owned()),
        ("LOG_LEVEL", "info".to_owned()),
    ])
    .unwrap();
    if variant != "interleaved" {
        // `SEQ_OPS` runs of one variant, for callgrind.
        runtime.block_on(async {
            let (db, telemetry) = real_variant(variant, &config).await;
            let sample = measure(&db, period).await;
            println!("{}", sample.ops_per_sec);
            drop(db);
            shutdown(telemetry).await;
        });
        return;
    }
    let rounds: usize = args[1].parse().unwrap();
    runtime.block_on(async {
        let mut variants = Vec::new();
        for name in REAL {
            variants.push(real_variant(name, &config).await);
        }
        // The service's log subscriber, installed for every variant alike.
        if let Some(telemetry) = &variants[3].1 {
            let subscriber = telemetry
                .subscriber(&config.log, LogFormat::Text, std::io::sink)
                .unwrap();
            tracing::subscriber::set_global_default(subscriber).unwrap();
        }
        // `PGLINE_BENCH_ONLY=a,b`: measure those variants only (profiling).
        let only = std::env::var("PGLINE_BENCH_ONLY").ok();
        for round in 0..rounds {
            for k in 0..REAL.len() {
                // Rotate the order so that no variant always runs first.
                let i = (k + round) % REAL.len();
                if only
                    .as_deref()
                    .is_some_and(|o| !o.split(',').any(|v| v == REAL[i]))
                {
                    continue;
                }
                let s = measure(&variants[i].0, period).await;
                // Out of the window: what this variant left in the span
                // buffers is exported now, not in the next one's window.
                if let Some(telemetry) = &variants[i].1
                    && let Err(e) = telemetry.force_flush()
                {
                    eprintln!("{}: flush after the round failed: {e}", REAL[i]);
                }
                println!(
                    "{round} {} {} {} {} {} {} {} {}",
                    REAL[i],
                    s.ops_per_sec,
                    s.cpu_us_per_op,
                    s.p50_us,
                    s.p99_us,
                    s.export_us_per_op,
                    s.postgres_us_per_op,
                    s.collector_us_per_op,
                );
            }
        }
        for (db, telemetry) in variants {
            drop(db);
            shutdown(telemetry).await;
        }
    });
}

/// A handle of the dyn-compatible kind the measurement loop needs.
type Run = Arc<dyn Fn() -> pgline_core::BoxFuture<'static, ()> + Send + Sync>;

/// The handle of one variant, with its own pool (and its telemetry).
async fn real_variant(variant: &str, config: &pgline_config::Config) -> (Run, Option<Telemetry>) {
    let options =
        PoolOptions::new(POOL_SIZE, POOL_SIZE).with_acquire_timeout(Duration::from_secs(10));
    let telemetry = match variant {
        "bare" => None,
        // Metrics only: no endpoint, so no spans.
        "metrics" => Some(Telemetry::builder(&config.telemetry).build().unwrap()),
        // Spans processed and dropped at the exporter.
        "tracing" => Some(
            Telemetry::builder(&config.telemetry)
                .discard_export()
                .build()
                .unwrap(),
        ),
        // Spans (and metrics) exported over OTLP/gRPC to the collector in
        // the parent process: encoding and sending included.
        "otlp" => {
            let mut exporting = config.telemetry.clone();
            exporting.otlp_endpoint = Some(std::env::var("PGLINE_BENCH_OTLP").unwrap());
            Some(
                Telemetry::builder(&exporting)
                    .without_metric_export()
                    .build()
                    .unwrap(),
            )
        }
        other => panic!("unknown variant {other}"),
    };
    let run: Run = match &telemetry {
        None => {
            let pool = PgPool::connect_with(config, options).await.unwrap();
            Arc::new(move || {
                let pool = pool.clone();
                Box::pin(async move {
                    pool.query("SELECT 1", &[]).await.unwrap();
                })
            })
        }
        Some(telemetry) => {
            let pool = PgPool::connect_with(
                config,
                options.with_listener(telemetry.pool_listener(variant)),
            )
            .await
            .unwrap();
            let stats = pool.clone();
            telemetry
                .metrics()
                .register_pool(variant, move || stats.stats());
            let db = Traced::from_config(pool, config).with_metrics(telemetry.metrics());
            Arc::new(move || {
                let db = db.clone();
                Box::pin(async move {
                    db.query("SELECT 1", &[]).await.unwrap();
                })
            })
        }
    };
    (run, telemetry)
}

async fn shutdown(telemetry: Option<Telemetry>) {
    if let Some(telemetry) = telemetry {
        tokio::task::spawn_blocking(move || telemetry.shutdown())
            .await
            .unwrap()
            .unwrap();
    }
}

/// CPU time of this process so far (all threads), to the nanosecond.
fn process_cpu() -> Duration {
    use nix::time::{ClockId, clock_gettime};
    let t = clock_gettime(ClockId::CLOCK_PROCESS_CPUTIME_ID).expect("clock_gettime");
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

/// CPU time so far of the other processes a slice runs.
struct Others {
    /// The testkit server's postmaster and its children (its backends and
    /// background processes); every process named `postgres` when the
    /// parent could not give the postmaster's pid.
    postgres: Option<Duration>,
    /// The collector's threads, in the parent process.
    collector: Option<Duration>,
}

fn others_cpu() -> Others {
    let schedstat = |path: std::path::PathBuf| -> Option<u64> {
        std::fs::read_to_string(path)
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let postmaster: Option<u32> = std::env::var("PGLINE_BENCH_PG_PID")
        .ok()
        .and_then(|p| p.parse().ok());
    let mut postgres = None;
    if let Ok(procs) = std::fs::read_dir("/proc") {
        let mut total = 0u64;
        let mut any = false;
        for entry in procs.flatten() {
            let path = entry.path();
            if !entry
                .file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
            {
                continue;
            }
            if !is_postgres(&path, postmaster) {
                continue;
            }
            if let Some(ns) = schedstat(path.join("schedstat")) {
                total += ns;
                any = true;
            }
        }
        postgres = any.then(|| Duration::from_nanos(total));
    }
    let mut collector = None;
    let parent = format!("/proc/{}/task", std::os::unix::process::parent_id());
    if let Ok(tasks) = std::fs::read_dir(parent) {
        let mut total = 0u64;
        for task in tasks.flatten() {
            let path = task.path();
            let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            if comm.trim() == COLLECTOR_THREAD {
                total += schedstat(path.join("schedstat")).unwrap_or(0);
                collector = Some(Duration::from_nanos(total));
            }
        }
    }
    Others {
        postgres,
        collector,
    }
}

/// Whether the process at `path` (`/proc/N`) is the server's: the postmaster
/// `postmaster` or one of its children, else (no pid given) any `postgres`.
fn is_postgres(path: &std::path::Path, postmaster: Option<u32>) -> bool {
    let Some(postmaster) = postmaster else {
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        return comm.trim() == "postgres";
    };
    let pid = path
        .file_name()
        .and_then(|n| n.to_str()?.parse::<u32>().ok());
    if pid == Some(postmaster) {
        return true;
    }
    // `/proc/N/stat`: `pid (comm) state ppid ...`; the command may hold
    // spaces and parentheses, so read after the last `)`.
    let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
    let ppid = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
    ppid == Some(postmaster)
}

/// The name of the bench collector's threads.
const COLLECTOR_THREAD: &str = "otlp-collector";

/// A counting OTLP collector on a thread (and a one-thread runtime) of its
/// own, named [`COLLECTOR_THREAD`].
struct Collector {
    thread: std::thread::JoinHandle<u64>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Collector {
    fn start() -> (Self, std::net::SocketAddr) {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name(COLLECTOR_THREAD)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let (receiver, addr) = pgline_testkit::otlp::Receiver::start_counting()
                    .await
                    .unwrap();
                addr_tx.send(addr).unwrap();
                let _ = stop_rx.await;
                receiver.span_count()
            })
        });
        let addr = addr_rx.recv().unwrap();
        (Self { thread, stop }, addr)
    }

    /// Stops the collector; the spans it received.
    fn stop(self) -> u64 {
        let _ = self.stop.send(());
        self.thread.join().unwrap()
    }
}

/// CPU time so far of this process's span-export threads (all variants':
/// only the one measured has spans to export; each is flushed after its
/// window); `None` as in [`threads_cpu`].
fn export_threads_cpu() -> Option<Duration> {
    threads_cpu(&["pgline-span-exp", "pgline-otlp"])
}

/// CPU time so far of this process's threads with one of these names, from
/// the scheduler's per-thread nanoseconds; `None` when the kernel does not
/// keep them (no `/proc/self/task/*/schedstat`).
fn threads_cpu(names: &[&str]) -> Option<Duration> {
    let mut total = 0u64;
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !names.contains(&comm.trim()) {
            continue;
        }
        let schedstat = std::fs::read_to_string(path.join("schedstat")).ok()?;
        total += schedstat
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())?;
    }
    Some(Duration::from_nanos(total))
}

/// Throughput, client CPU per operation and latency of `CONCURRENCY` tasks
/// running `run` for `period`, after [`WARM_UP`].
async fn measure(run: &Run, period: Duration) -> Sample {
    // `SEQ_OPS=n`: n statements one after another instead of a timed run, for
    // counting instructions under callgrind.
    if let Some(n) = std::env::var("SEQ_OPS")
        .ok()
        .and_then(|n| n.parse::<u64>().ok())
    {
        let started = Instant::now();
        for _ in 0..n {
            run().await;
        }
        return Sample {
            ops_per_sec: n as f64 / started.elapsed().as_secs_f64(),
            cpu_us_per_op: 0.0,
            p50_us: 0.0,
            p99_us: 0.0,
            export_us_per_op: 0.0,
            postgres_us_per_op: 0.0,
            collector_us_per_op: 0.0,
        };
    }
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    // Latencies are kept only inside the measured window.
    let recording = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (run, stop, done, recording) =
            (run.clone(), stop.clone(), done.clone(), recording.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(1 << 16);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                run().await;
                if recording.load(Ordering::Relaxed) {
                    latencies.push(t.elapsed().as_nanos() as u64);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            latencies
        }));
    }
    tokio::time::sleep(WARM_UP).await;
    recording.store(true, Ordering::Relaxed);
    // Read outside this process's CPU window, with the operations counted
    // half-way through each reading (it scans `/proc`).
    let before = done.load(Ordering::Relaxed);
    let others0 = others_cpu();
    let others_ops0 = (before + done.load(Ordering::Relaxed)) / 2;
    let (ops0, cpu0, export0, started) = (
        done.load(Ordering::Relaxed),
        process_cpu(),
        export_threads_cpu(),
        Instant::now(),
    );
    tokio::time::sleep(period).await;
    let (ops1, cpu1, export1, elapsed) = (
        done.load(Ordering::Relaxed),
        process_cpu(),
        export_threads_cpu(),
        started.elapsed(),
    );
    let before = done.load(Ordering::Relaxed);
    let others1 = others_cpu();
    let others_ops1 = (before + done.load(Ordering::Relaxed)) / 2;
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
    let others_ops = others_ops1.saturating_sub(others_ops0) as f64;
    let per_op = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) => b.saturating_sub(a).as_secs_f64() * 1e6 / others_ops,
        _ => f64::NAN,
    };
    Sample {
        postgres_us_per_op: per_op(others0.postgres, others1.postgres),
        collector_us_per_op: per_op(others0.collector, others1.collector),
        ops_per_sec: ops / elapsed.as_secs_f64(),
        cpu_us_per_op: (cpu1 - cpu0).as_secs_f64() * 1e6 / ops,
        p50_us: quantile(0.5),
        p99_us: quantile(0.99),
        // NaN (`null` in the JSON row) when the kernel keeps no schedstat.
        export_us_per_op: match (export0, export1) {
            (Some(e0), Some(e1)) => e1.saturating_sub(e0).as_secs_f64() * 1e6 / ops,
            _ => f64::NAN,
        },
    }
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
    let mut counting = None;
    let telemetry = match mode {
        "bare" => None,
        // Export to a collector in this process: the export threads' and
        // the collector's CPU per span, without PostgreSQL's noise.
        "otlp" => {
            let (collector, addr) = Collector::start();
            counting = Some(collector);
            let mut exporting = config.telemetry.clone();
            exporting.otlp_endpoint = Some(format!("http://{addr}"));
            Some(
                Telemetry::builder(&exporting)
                    .without_metric_export()
                    .build()
                    .unwrap(),
            )
        }
        "metrics" => Some(Telemetry::builder(&config.telemetry).build().unwrap()),
        _ => Some(
            Telemetry::builder(&config.telemetry)
                .discard_export()
                .build()
                .unwrap(),
        ),
    };
    // Statements per millisecond (`NOIO_PACE`; `noio-otlp` only).
    let pace: u64 = if mode == "otlp" {
        std::env::var("NOIO_PACE")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(30)
    } else {
        0
    };
    let run = |db: &'static (dyn Fn() -> pgline_core::BoxFuture<'static, ()> + Send + Sync)| async move {
        let n = noio_ops();
        for i in 0..n / 10 {
            db().await;
            if pace > 0 && i % pace == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let (cpu0, started) = (process_cpu(), Instant::now());
        for i in 0..n {
            db().await;
            // A station-like rate for `noio-otlp`: flat out, the span queue
            // overflows and drops most spans.
            if pace > 0 && i % pace == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
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
            let telemetry = tokio::task::spawn_blocking(move || {
                telemetry.force_flush().unwrap();
                telemetry
            })
            .await
            .unwrap();
            // Read while the export threads and the collector still run.
            let (export, collector_cpu) = (export_threads_cpu(), threads_cpu(&[COLLECTOR_THREAD]));
            tokio::task::spawn_blocking(move || telemetry.shutdown())
                .await
                .unwrap()
                .unwrap();
            // Stopped after the telemetry, which may still be sending.
            if let Some(collector) = counting {
                let n = collector.stop();
                let per_span = |cpu: Option<Duration>| {
                    cpu.map_or("?".to_owned(), |c| {
                        format!("{:.3}", c.as_secs_f64() * 1e6 / n as f64)
                    })
                };
                println!(
                    "noio-otlp: the collector received {n} spans; CPU per span: export threads {} us, collector {} us",
                    per_span(export),
                    per_span(collector_cpu),
                );
            }
            result
        }
    }
}

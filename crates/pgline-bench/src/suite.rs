//! The whole run: which cases, in which order, on which runtime.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::ValueEnum;
use tokio::runtime::Runtime;

use crate::cpu::{CpuProbe, CpuUse};
use crate::measure::{
    AsyncOp, Pace, Sample, Timing, Window, measure_async, measure_async_many, measure_threads,
};
use crate::noio::{Bb8NoIo, DeadpoolNoIo, Hold, PglineNoIo};
use crate::pools::{
    Bb8, Deadpool, Pgline, PglinePipelined, PglineSync, Protocol, R2d2, Raw, RawPipelined,
};
use crate::report::{Record, Sink, summary};

/// A benchmark scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Scenario {
    /// acquire → prepared `SELECT 1` → release.
    CheckoutSelect1,
    /// acquire → `simple_query("SELECT 1")` → release.
    CheckoutSimple1,
    /// acquire + release of a fake connection (no IO).
    AcquireReleaseNoio,
    /// acquire → yield → release of a fake connection with more tasks than
    /// connections: every acquire waits for a hand-off (an extra scenario).
    HandoffNoio,
    /// prepared `SELECT 1` through pgline's shared lane: concurrent
    /// statements pipelined on the pool's connections.
    QuerySelect1Pipelined,
    /// acquire → yield → release of a fake connection by 100 or 10,000 tasks
    /// on a pool of 20: the cost of a long queue, and memory per waiter.
    #[value(name = "waiters_10k")]
    Waiters10k,
}

impl Scenario {
    /// The name in the JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Self::CheckoutSelect1 => "checkout_select1",
            Self::CheckoutSimple1 => "checkout_simple1",
            Self::AcquireReleaseNoio => "acquire_release_noio",
            Self::HandoffNoio => "handoff_noio",
            Self::QuerySelect1Pipelined => "query_select1_pipelined",
            Self::Waiters10k => "waiters_10k",
        }
    }

    /// Whether the scenario runs without a server.
    pub fn is_noio(self) -> bool {
        matches!(
            self,
            Self::AcquireReleaseNoio | Self::HandoffNoio | Self::Waiters10k
        )
    }
}

/// A contender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Contender {
    /// pgline's async pool.
    Pgline,
    /// deadpool (deadpool-postgres for the IO scenarios).
    Deadpool,
    /// bb8 (bb8-postgres for the IO scenarios).
    Bb8,
    /// r2d2 + r2d2_postgres on OS threads.
    R2d2,
    /// pgline's blocking backend (on r2d2) on OS threads.
    PglineSync,
    /// Dedicated tokio-postgres connections, no pool.
    Raw,
    /// pgbench with 20 clients.
    Pgbench,
}

impl Contender {
    /// The name in the JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pgline => "pgline",
            Self::Deadpool => "deadpool",
            Self::Bb8 => "bb8",
            Self::R2d2 => "r2d2",
            Self::PglineSync => "pgline-sync",
            Self::Raw => "raw",
            Self::Pgbench => "pgbench",
        }
    }
}

/// Command-line arguments of `pgline-bench` (and of `cargo xtask bench`).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "pgline-bench",
    about = "Compares pgline's pool with deadpool, bb8, r2d2, raw tokio-postgres and pgbench"
)]
pub struct Args {
    /// Short windows (0.5 s warm-up, 1.5 s measured) and no r2d2 rows: under 2 minutes.
    #[arg(long)]
    pub quick: bool,
    /// Also write the JSON lines to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seconds measured per case (default 5, 1.5 with --quick).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Seconds of warm-up per case (default 1, 0.5 with --quick).
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Run only these scenarios (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub scenario: Vec<Scenario>,
    /// Run only these contenders (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub pool: Vec<Contender>,
    /// Run only these concurrencies (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub concurrency: Vec<u32>,
    /// Connections per pool.
    #[arg(long, default_value_t = 20)]
    pub pool_size: u32,
    /// Measure every case this many times (rounds interleaved) and report the
    /// round with the median throughput.
    #[arg(long, default_value_t = 1)]
    pub rounds: u32,
    /// In acquire_release_noio, each task reads the clock once per this many
    /// operations (latency percentiles are of batch averages).
    #[arg(long, default_value_t = 64)]
    pub noio_batch: u32,
    /// In acquire_release_noio, each task yields after this many operations
    /// (0: never), so tasks of a pool whose acquire never waits still interleave.
    #[arg(long, default_value_t = 1024)]
    pub noio_yield: u32,
    /// Where to write the SVG chart (default: beside --out with the
    /// extension .svg, else target/bench/bench.svg).
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Internal: run the waiters_10k memory probe for this pool (`pgline`,
    /// `deadpool`, `bb8` or `floor`) with --concurrency waiters, print the
    /// bytes per waiter and exit.
    #[arg(long, hide = true)]
    pub waiter_memory: Option<String>,
}

/// One measurement to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Case {
    /// What is measured.
    pub scenario: Scenario,
    /// Who is measured.
    pub contender: Contender,
    /// Tasks, threads or pgbench clients.
    pub concurrency: u32,
}

const IO_CONCURRENCY: [u32; 3] = [8, 64, 512];
const THREAD_CONCURRENCY: [u32; 2] = [8, 64];
const NOIO_CONCURRENCY: [u32; 2] = [1, 64];
const HANDOFF_CONCURRENCY: [u32; 1] = [512];
const PIPELINED_CONCURRENCY: [u32; 2] = [64, 512];
const WAITERS_CONCURRENCY: [u32; 2] = [100, 10_000];

/// The cases of a run, in order: scenario, then concurrency, then contender.
pub fn plan(args: &Args) -> Vec<Case> {
    let wanted_scenario = |s| args.scenario.is_empty() || args.scenario.contains(&s);
    let wanted_pool = |p| args.pool.is_empty() || args.pool.contains(&p);
    let wanted_c = |c| args.concurrency.is_empty() || args.concurrency.contains(&c);
    // r2d2 (OS threads) only when asked for in a quick run.
    let r2d2 = !args.quick
        || args.pool.contains(&Contender::R2d2)
        || args.pool.contains(&Contender::PglineSync);
    let mut cases = Vec::new();
    let mut push = |scenario, contender, concurrency| {
        if wanted_scenario(scenario) && wanted_pool(contender) && wanted_c(concurrency) {
            cases.push(Case {
                scenario,
                contender,
                concurrency,
            });
        }
    };
    for scenario in [Scenario::CheckoutSelect1, Scenario::CheckoutSimple1] {
        for c in IO_CONCURRENCY {
            for contender in [
                Contender::Pgline,
                Contender::Deadpool,
                Contender::Bb8,
                Contender::Raw,
            ] {
                push(scenario, contender, c);
            }
            if r2d2 && THREAD_CONCURRENCY.contains(&c) {
                push(scenario, Contender::PglineSync, c);
                push(scenario, Contender::R2d2, c);
            }
        }
        push(scenario, Contender::Pgbench, args.pool_size);
    }
    for c in NOIO_CONCURRENCY {
        for contender in [Contender::Pgline, Contender::Deadpool, Contender::Bb8] {
            push(Scenario::AcquireReleaseNoio, contender, c);
        }
    }
    for c in HANDOFF_CONCURRENCY {
        for contender in [Contender::Pgline, Contender::Deadpool, Contender::Bb8] {
            push(Scenario::HandoffNoio, contender, c);
        }
    }
    for c in PIPELINED_CONCURRENCY {
        for contender in [Contender::Pgline, Contender::Raw] {
            push(Scenario::QuerySelect1Pipelined, contender, c);
        }
    }
    push(
        Scenario::QuerySelect1Pipelined,
        Contender::Pgbench,
        args.pool_size,
    );
    for c in WAITERS_CONCURRENCY {
        for contender in [Contender::Pgline, Contender::Deadpool, Contender::Bb8] {
            push(Scenario::Waiters10k, contender, c);
        }
    }
    cases
}

fn timing(args: &Args) -> Timing {
    let (warmup, measure) = if args.quick { (0.5, 1.5) } else { (1.0, 5.0) };
    Timing {
        warmup: Duration::from_secs_f64(args.warmup.unwrap_or(warmup).max(0.0)),
        measure: Duration::from_secs_f64(args.duration.unwrap_or(measure).max(0.01)),
    }
}

/// Runs the benchmark: starts a throwaway PostgreSQL when a case needs one,
/// measures every case, writes the JSON lines and prints the summary.
pub fn run(args: &Args) -> anyhow::Result<()> {
    if let Some(which) = &args.waiter_memory {
        let n = args.concurrency.first().copied().unwrap_or(10_000) as usize;
        let bytes = crate::noio::waiter_memory(which, n, args.pool_size)?;
        println!("{bytes:.1}");
        return Ok(());
    }
    let started = Instant::now();
    let cases = plan(args);
    anyhow::ensure!(!cases.is_empty(), "no benchmark case matches the filters");
    let timing = timing(args);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let needs_server = cases.iter().any(|c| !c.scenario.is_noio());
    let server = if needs_server {
        eprintln!("starting a throwaway PostgreSQL…");
        let server = runtime
            .block_on(
                pgline_testkit::PgServer::builder()
                    .max_connections(300)
                    .start(),
            )
            .context("starting a throwaway PostgreSQL")?;
        eprintln!(
            "PostgreSQL on 127.0.0.1:{} ({:.1} s)",
            server.port(),
            started.elapsed().as_secs_f64()
        );
        Some(server)
    } else {
        None
    };
    if cases
        .iter()
        .any(|c| c.scenario == Scenario::AcquireReleaseNoio)
    {
        // What the loop itself costs: the floor under every noio number.
        let window = Window::after_warmup(Timing {
            warmup: Duration::from_millis(100),
            measure: Duration::from_millis(500),
        });
        let sample =
            runtime.block_on(measure_async(Arc::new(Nothing), 1, window, noio_pace(args)))?;
        eprintln!(
            "harness floor (an operation that does nothing, 1 task): {:.1} M ops/s, {:.1} ns per operation",
            sample.ops_per_sec() / 1e6,
            1e9 / sample.ops_per_sec().max(1.0)
        );
    }
    let bench = Bench {
        runtime: &runtime,
        server: server.as_ref(),
        args,
        timing,
        pgbench: crate::pgbench::find(),
    };
    let mut sink = Sink::new(args.out.as_deref())?;
    let rounds = args.rounds.max(1);
    let mut samples: Vec<Vec<Record>> = vec![Vec::new(); cases.len()];
    for round in 0..rounds {
        for (i, case) in cases.iter().enumerate() {
            let label = format!(
                "[{}/{}] {} {} c={}{}",
                i + 1,
                cases.len(),
                case.scenario.name(),
                case.contender.name(),
                case.concurrency,
                if rounds > 1 {
                    format!(" (round {}/{rounds})", round + 1)
                } else {
                    String::new()
                }
            );
            eprint!("{label} … ");
            let Some((record, note)) = bench.case(*case).with_context(|| label.clone())? else {
                eprintln!("skipped: pgbench not found");
                continue;
            };
            eprintln!(
                "{:.0} ops/s, p50 {} µs, p99 {} µs{note}",
                record.ops_per_sec,
                fmt_us(record.p50_us),
                fmt_us(record.p99_us)
            );
            if rounds == 1 {
                sink.push(record)?;
            } else {
                samples[i].push(record);
            }
        }
    }
    if rounds > 1 {
        for mut round_records in samples {
            round_records.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
            if let Some(median) = round_records.get(round_records.len() / 2) {
                sink.push(median.clone())?;
            }
        }
    }
    drop(server);
    let svg_path = args.svg.clone().unwrap_or_else(|| match &args.out {
        Some(out) => out.with_extension("svg"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench/bench.svg"),
    });
    if let Some(dir) = svg_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let title = format!(
        "cargo xtask bench: {} rows, pool size {}, {} round(s)",
        sink.records().len(),
        args.pool_size,
        rounds
    );
    std::fs::write(&svg_path, crate::chart::svg(sink.records(), &title))
        .with_context(|| format!("writing {}", svg_path.display()))?;
    eprintln!();
    eprintln!("chart: {}", svg_path.display());
    eprint!("{}", summary(sink.records()));
    eprintln!("finished in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// An operation that only yields: `waiters_10k`'s work without a pool.
struct YieldOnly;

impl AsyncOp for YieldOnly {
    async fn run(&self, _task: usize) -> anyhow::Result<()> {
        tokio::task::yield_now().await;
        Ok(())
    }
}

/// The operation that does nothing (the harness's own cost).
struct Nothing;

impl AsyncOp for Nothing {
    async fn run(&self, _task: usize) -> anyhow::Result<()> {
        std::hint::black_box(());
        Ok(())
    }
}

fn noio_pace(args: &Args) -> Pace {
    Pace {
        batch: args.noio_batch.max(1),
        yield_every: (args.noio_yield > 0).then_some(args.noio_yield),
    }
}

fn fmt_us(v: Option<f64>) -> String {
    v.map_or_else(|| "null".into(), |v| format!("{v:.1}"))
}

fn to_record(case: Case, pool_size: u32, sample: &Sample) -> Record {
    Record {
        scenario: case.scenario.name().into(),
        pool: case.contender.name().into(),
        pool_size,
        concurrency: case.concurrency,
        ops_per_sec: round1(sample.ops_per_sec()),
        p50_us: sample.quantile_us(0.50).map(round3),
        p99_us: sample.quantile_us(0.99).map(round3),
        max_us: (!sample.latency_ns.is_empty())
            .then(|| round3(sample.latency_ns.max() as f64 / 1000.0)),
        ..Record::default()
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// A measured sample with the CPU used during its window.
struct Measured {
    sample: Sample,
    cpu: Option<CpuUse>,
}

impl Measured {
    fn note(&self) -> String {
        self.cpu
            .map(|cpu| format!(", {}", cpu.per_op(self.sample.ops)))
            .unwrap_or_default()
    }
}

/// What every case needs.
struct Bench<'a> {
    runtime: &'a Runtime,
    server: Option<&'a pgline_testkit::PgServer>,
    args: &'a Args,
    timing: Timing,
    pgbench: Option<std::path::PathBuf>,
}

impl Bench<'_> {
    /// Measures one case: its record and a note for the progress line;
    /// `None` when pgbench is missing.
    fn case(&self, case: Case) -> anyhow::Result<Option<(Record, String)>> {
        if case.contender == Contender::Pgbench {
            let Some(pgbench) = &self.pgbench else {
                return Ok(None);
            };
            return self.pgbench(pgbench, case).map(Some);
        }
        let measured = self.measure(case)?;
        let mut record = to_record(case, self.args.pool_size, &measured.sample);
        let mut note = measured.note();
        if let Some(cpu) = measured.cpu {
            let per =
                |d: Duration| round3(d.as_secs_f64() * 1e6 / measured.sample.ops.max(1) as f64);
            record.cpu_us_per_op = Some(per(cpu.client));
            if !case.scenario.is_noio() {
                record.server_cpu_us_per_op = Some(per(cpu.server));
            }
        }
        if case.scenario == Scenario::Waiters10k && case.contender == Contender::Pgline {
            // What 100 or 10,000 tasks cost without any pool: the floor
            // under the CPU per acquire.
            let floor = self.runtime.block_on(async {
                let window = Window::after_warmup(self.timing);
                let probe = CpuProbe::spawn(window, None);
                let sample =
                    measure_async_many(Arc::new(YieldOnly), case.concurrency as usize, window)
                        .await?;
                anyhow::Ok((sample, probe.finish()))
            })?;
            if let (sample, Some(cpu)) = floor {
                note.push_str(&format!(
                    "; floor without a pool (yield only, same tasks): {:.0} ops/s, {}",
                    sample.ops_per_sec(),
                    cpu.per_op(sample.ops)
                ));
            }
        }
        if case.scenario == Scenario::Waiters10k && case.concurrency >= 1000 {
            match waiter_memory_probe(case.contender.name(), case.concurrency, self.args.pool_size)
                .and_then(|pool| {
                    waiter_memory_probe("floor", case.concurrency, self.args.pool_size)
                        .map(|floor| (pool, floor))
                }) {
                Ok((bytes, floor)) => {
                    record.bytes_per_waiter = Some(round1(bytes));
                    note.push_str(&format!(
                        ", {bytes:.0} B of RSS per parked waiter (a task parked on a Notify: {floor:.0} B)"
                    ));
                }
                Err(e) => note.push_str(&format!(", memory probe failed: {e:#}")),
            }
        }
        Ok(Some((record, note)))
    }

    fn pgbench(&self, pgbench: &std::path::Path, case: Case) -> anyhow::Result<(Record, String)> {
        let port = self.server.map_or(0, |s| s.port());
        let mode = match case.scenario {
            Scenario::CheckoutSimple1 => "simple",
            _ => "prepared",
        };
        let clients = self.args.pool_size;
        let outcome = crate::pgbench::run(pgbench, port, mode, clients, self.timing)?;
        let note = outcome
            .reported_tps
            .map(|tps| format!(" (pgbench itself reports {tps:.0} tps over its whole run)"))
            .unwrap_or_default();
        let record = match outcome.sample {
            Some(sample) => to_record(case, clients, &sample),
            None => Record {
                scenario: case.scenario.name().into(),
                pool: case.contender.name().into(),
                pool_size: clients,
                concurrency: case.concurrency,
                ops_per_sec: round1(outcome.reported_tps.unwrap_or(0.0)),
                ..Record::default()
            },
        };
        Ok((record, note))
    }

    fn server_pid(&self) -> Option<u32> {
        self.server.and_then(pgline_testkit::PgServer::pid)
    }

    /// Measures `op` from `case.concurrency` tasks, probing CPU use.
    async fn measure_op<O: AsyncOp>(
        &self,
        op: O,
        case: Case,
        pace: Pace,
    ) -> anyhow::Result<(Measured, Arc<O>)> {
        let op = Arc::new(op);
        let window = Window::after_warmup(self.timing);
        let probe = CpuProbe::spawn(window, self.server_pid());
        let n = case.concurrency as usize;
        let sample = if case.scenario == Scenario::Waiters10k {
            measure_async_many(Arc::clone(&op), n, window).await?
        } else {
            measure_async(Arc::clone(&op), n, window, pace).await?
        };
        let cpu = probe.finish();
        Ok((Measured { sample, cpu }, op))
    }

    fn measure(&self, case: Case) -> anyhow::Result<Measured> {
        let size = self.args.pool_size;
        if case.scenario.is_noio() {
            let (pace, hold) = if case.scenario == Scenario::AcquireReleaseNoio {
                (noio_pace(self.args), Hold::Nothing)
            } else {
                (Pace::IO, Hold::Yield)
            };
            return self.runtime.block_on(async {
                Ok(match case.contender {
                    Contender::Pgline => {
                        let pool = PglineNoIo::new(size, hold).await?;
                        self.measure_op(pool, case, pace).await?.0
                    }
                    Contender::Deadpool => {
                        let pool = DeadpoolNoIo::new(size, hold)?;
                        self.measure_op(pool, case, pace).await?.0
                    }
                    Contender::Bb8 => {
                        let pool = Bb8NoIo::new(size, hold).await?;
                        self.measure_op(pool, case, pace).await?.0
                    }
                    other => anyhow::bail!("{} has no {} case", other.name(), case.scenario.name()),
                })
            });
        }
        let server = self.server.context("no PostgreSQL server")?;
        let protocol = match case.scenario {
            Scenario::CheckoutSimple1 => Protocol::Simple,
            _ => Protocol::Prepared,
        };
        if case.contender == Contender::PglineSync {
            let pool = PglineSync::new(server.config("postgres"), size, protocol)?;
            let window = Window::after_warmup(self.timing);
            let probe = CpuProbe::spawn(window, self.server_pid());
            let sample = measure_threads(&pool, case.concurrency as usize, window)?;
            let cpu = probe.finish();
            return Ok(Measured { sample, cpu });
        }
        if case.contender == Contender::R2d2 {
            // A blocking pool on OS threads, outside the runtime.
            let pool = R2d2::new(&server.url("postgres"), size, protocol)?;
            let window = Window::after_warmup(self.timing);
            let probe = CpuProbe::spawn(window, self.server_pid());
            let sample = measure_threads(&pool, case.concurrency as usize, window)?;
            let cpu = probe.finish();
            return Ok(Measured { sample, cpu });
        }
        let config = server.config("postgres");
        let io = Pace::IO;
        let measured = self.runtime.block_on(async {
            if case.scenario == Scenario::QuerySelect1Pipelined {
                return anyhow::Ok(match case.contender {
                    Contender::Pgline => {
                        let lane = PglinePipelined::new(&config, size).await?;
                        let (measured, lane) = self.measure_op(lane, case, io).await?;
                        lane.close().await;
                        measured
                    }
                    Contender::Raw => {
                        let raw = RawPipelined::new(&config, size).await?;
                        self.measure_op(raw, case, io).await?.0
                    }
                    other => anyhow::bail!("{} has no pipelined case", other.name()),
                });
            }
            anyhow::Ok(match case.contender {
                Contender::Pgline => {
                    let pool = Pgline::new(&config, size, protocol).await?;
                    let (measured, pool) = self.measure_op(pool, case, io).await?;
                    pool.close().await;
                    measured
                }
                Contender::Deadpool => {
                    let pool = Deadpool::new(&config, size, protocol)?;
                    let (measured, pool) = self.measure_op(pool, case, io).await?;
                    pool.close();
                    measured
                }
                Contender::Bb8 => {
                    let pool = Bb8::new(&config, size, protocol).await?;
                    self.measure_op(pool, case, io).await?.0
                }
                Contender::Raw => {
                    let raw = Raw::new(&config, size, protocol).await?;
                    self.measure_op(raw, case, io).await?.0
                }
                other => anyhow::bail!("{} is not measured here", other.name()),
            })
        })?;
        // Let the server reap the closed sessions before the next case.
        std::thread::sleep(Duration::from_millis(200));
        Ok(measured)
    }
}

/// Runs the `waiters_10k` memory probe in a fresh copy of this binary (so
/// no earlier case left freed memory behind for the waiters to reuse) and
/// returns its bytes per waiter.
fn waiter_memory_probe(which: &str, waiters: u32, pool_size: u32) -> anyhow::Result<f64> {
    let exe = std::env::current_exe().context("locating pgline-bench")?;
    let output = std::process::Command::new(exe)
        .arg("--waiter-memory")
        .arg(which)
        .arg("--concurrency")
        .arg(waiters.to_string())
        .arg("--pool-size")
        .arg(pool_size.to_string())
        .output()
        .context("running the memory probe")?;
    anyhow::ensure!(
        output.status.success(),
        "memory probe failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .context("reading the memory probe's answer")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn the_quick_plan_has_every_required_row_and_no_threads() {
        let args = Args::parse_from(["pgline-bench", "--quick"]);
        let cases = plan(&args);
        assert!(!cases.iter().any(|c| c.contender == Contender::R2d2));
        let noio = cases
            .iter()
            .filter(|c| c.scenario == Scenario::AcquireReleaseNoio)
            .count();
        assert_eq!(noio, 6);
        // 2 IO scenarios × 3 concurrencies × 4 contenders + 2 pgbench rows + 6 noio
        // + 3 hand-off + 2 × 2 pipelined + 1 pgbench + 2 × 3 waiters.
        assert_eq!(cases.len(), 46);
        let pipelined: Vec<_> = cases
            .iter()
            .filter(|c| c.scenario == Scenario::QuerySelect1Pipelined)
            .map(|c| (c.contender, c.concurrency))
            .collect();
        assert!(pipelined.contains(&(Contender::Pgline, 512)));
        assert!(pipelined.contains(&(Contender::Pgbench, 20)));
    }

    #[test]
    fn filters_narrow_the_plan() {
        let args = Args::parse_from([
            "pgline-bench",
            "--scenario",
            "acquire_release_noio",
            "--pool",
            "pgline,deadpool",
            "--concurrency",
            "1",
        ]);
        assert_eq!(plan(&args).len(), 2);
    }
}

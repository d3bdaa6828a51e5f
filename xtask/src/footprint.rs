//! `cargo xtask footprint`: what `pgline-server` costs at rest — resident
//! memory idle with N open connections, memory per connection, and the time
//! from process start to `/ready`.
//!
//! Builds the release binary, starts a throwaway PostgreSQL, then starts the
//! server several times with `DB_POOL_MIN = DB_POOL_MAX = N` for each N. After
//! `/ready` answers and the pool reports N idle connections, it waits a moment
//! and reads `VmRSS` and `VmHWM` from `/proc/<pid>/status`. Memory per
//! connection is the slope between the smallest and the largest N. Everything
//! stays on 127.0.0.1 and every wait is bounded.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::demo::{ChildGuard, agent, free_port, get_json};

/// Arguments of `cargo xtask footprint`.
#[derive(clap::Args)]
pub(crate) struct FootprintArgs {
    /// Pool sizes to measure (open connections at rest).
    #[arg(long, value_delimiter = ',', default_value = "1,20,50")]
    connections: Vec<u32>,
    /// Start-ups per pool size (the report gives the median).
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// One start-up of the server.
struct Sample {
    ready: Duration,
    rss_kib: u64,
    hwm_kib: u64,
}

/// Runs `cargo xtask footprint`.
pub(crate) fn run(args: FootprintArgs) -> anyhow::Result<()> {
    if args.connections.is_empty() || args.runs == 0 {
        bail!("footprint: give at least one pool size and one run");
    }
    eprintln!("footprint: building pgline-server (release)");
    let status = Command::new("cargo")
        .args(["build", "--quiet", "--release", "-p", "pgline-server"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building pgline-server failed");
    }
    let binary = crate::demo::target_dir().join("release/pgline-server");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let max = args.connections.iter().copied().max().unwrap_or(1);
    let server = runtime
        .block_on(
            pgline_testkit::PgServer::builder()
                .config("max_connections", (max + 20).to_string())
                .start(),
        )
        .context("starting PostgreSQL")?;
    let database_url = server.url("postgres");
    println!(
        "pgline-server footprint (release build; `cargo xtask footprint`), median of {} start-ups",
        args.runs
    );
    println!(
        "{:>11} {:>12} {:>12} {:>14}",
        "connections", "rss_mib", "peak_mib", "ready_ms"
    );
    let mut medians = Vec::new();
    for &n in &args.connections {
        let mut samples = Vec::new();
        for _ in 0..args.runs {
            samples.push(start_once(&binary, &database_url, n)?);
        }
        let median = |mut v: Vec<u64>| {
            v.sort_unstable();
            v[v.len() / 2]
        };
        let rss = median(samples.iter().map(|s| s.rss_kib).collect());
        let hwm = median(samples.iter().map(|s| s.hwm_kib).collect());
        let ready = median(samples.iter().map(|s| s.ready.as_micros() as u64).collect());
        println!(
            "{n:>11} {:>12.1} {:>12.1} {:>14.1}",
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0,
            ready as f64 / 1000.0
        );
        println!(
            "{{\"scenario\":\"footprint\",\"pool\":\"pgline\",\"pool_size\":{n},\"rss_kib\":{rss},\"peak_rss_kib\":{hwm},\"ready_ms\":{:.1}}}",
            ready as f64 / 1000.0
        );
        medians.push((n, rss));
    }
    if let (Some(&(n0, r0)), Some(&(n1, r1))) = (medians.first(), medians.last())
        && n1 > n0
    {
        let per = (r1 as f64 - r0 as f64) / f64::from(n1 - n0);
        println!("memory per connection: {per:.0} KiB (slope from {n0} to {n1} connections)");
    }
    drop(server);
    Ok(())
}

/// Starts the server with `n` connections, waits until they are open and
/// idle, measures, and stops it.
fn start_once(binary: &std::path::Path, database_url: &str, n: u32) -> anyhow::Result<Sample> {
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let child = Command::new(binary)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .env("LOG_LEVEL", "warn")
        .env("NODE_ENV", "development")
        .env("DATABASE_URL", database_url)
        .env("DB_POOL_MIN", n.to_string())
        .env("DB_POOL_MAX", n.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let mut child = ChildGuard(child);
    let agent = agent(Duration::from_secs(5));
    let mut ready = None;
    while started.elapsed() < Duration::from_secs(60) {
        if let Some(status) = child.0.try_wait()? {
            bail!("pgline-server exited during start-up ({status})");
        }
        if ready.is_none()
            && let Ok(response) = agent.get(&format!("{base}/ready")).call()
            && response.status().as_u16() == 200
        {
            ready = Some(started.elapsed());
        }
        if ready.is_some() {
            let status = get_json(&agent, &format!("{base}/status")).unwrap_or(Value::Null);
            if status["pool"]["idle"].as_u64() == Some(u64::from(n)) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let Some(ready) = ready else {
        bail!("pgline-server was not ready within 60 s");
    };
    // Let start-up garbage settle (allocator caches, the first requests).
    std::thread::sleep(Duration::from_secs(2));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.0.id()))
        .context("reading /proc/<pid>/status")?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let sample = Sample {
        ready,
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
    };
    child.stop();
    Ok(sample)
}

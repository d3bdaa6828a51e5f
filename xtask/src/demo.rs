//! `cargo xtask demo`: the main job on an embedded default — a throwaway
//! PostgreSQL (unless one is configured), `pgline-server`, and 8 simulated
//! stations creating orders and scanning panels, with live progress.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

const STATIONS: usize = 8;
const PANELS_PER_ORDER: usize = 4;

/// Options of `cargo xtask demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Stop by itself after this long (e.g. `20s`, `2m`); without it, run until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}`: expected a duration like 20s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "`{text}`: unknown unit `{unit}` (use ms, s, m or h)"
            ));
        }
    };
    if !(seconds > 0.0 && seconds.is_finite()) {
        return Err(format!("`{text}`: the duration must be positive"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// What one station did.
#[derive(Default)]
struct StationStats {
    requests: AtomicU64,
    orders: AtomicU64,
    events: AtomicU64,
    errors: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
    last_error: Mutex<Option<String>>,
}

/// Runs the demo.
pub(crate) fn run(args: DemoArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let configured =
        std::env::var_os("DATABASE_URL").is_some() || std::env::var_os("DB_HOST").is_some();
    let server = if configured {
        eprintln!("demo: using the configured database (DATABASE_URL / DB_HOST)");
        None
    } else {
        eprintln!("demo: starting a throwaway PostgreSQL");
        Some(
            runtime
                .block_on(pgline_testkit::PgServer::start())
                .context("starting PostgreSQL")?,
        )
    };
    eprintln!("demo: building pgline-server");
    let status = Command::new("cargo")
        .args(["build", "--quiet", "-p", "pgline-server"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building pgline-server failed");
    }
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let mut command = Command::new(server_binary()?);
    command
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .env(
            "LOG_LEVEL",
            std::env::var("LOG_LEVEL").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null());
    if let Some(server) = &server {
        command
            .env("DATABASE_URL", server.url("postgres"))
            .env("NODE_ENV", "development");
    }
    let mut child = ChildGuard(command.spawn().context("starting pgline-server")?);
    let agent = agent(Duration::from_secs(10));
    wait_ready(&agent, &base, &mut child.0)?;
    eprintln!(
        "demo: pgline-server is ready — dashboard at {base}/  (status: {base}/status, metrics: {base}/metrics)"
    );

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        runtime.spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("\ndemo: Ctrl-C — stopping the stations");
            stop.store(true, SeqCst);
        });
    }
    let started = Instant::now();
    let run_id = std::process::id();
    let stats: Vec<Arc<StationStats>> = (0..STATIONS)
        .map(|_| Arc::new(StationStats::default()))
        .collect();
    let workers: Vec<_> = stats
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (s, stop, base, agent) = (s.clone(), stop.clone(), base.clone(), agent.clone());
            std::thread::spawn(move || station(i + 1, run_id, &agent, &base, &s, &stop))
        })
        .collect();

    let mut peak_utilization = 0.0f64;
    while !stop.load(SeqCst) {
        std::thread::sleep(Duration::from_secs(1));
        if args.duration.is_some_and(|d| started.elapsed() >= d) {
            stop.store(true, SeqCst);
        }
        let status = get_json(&agent, &format!("{base}/status")).unwrap_or(Value::Null);
        let utilization = status["pool"]["utilization_percent"]
            .as_f64()
            .unwrap_or(0.0);
        peak_utilization = peak_utilization.max(utilization);
        let per_station: Vec<String> = stats
            .iter()
            .map(|s| s.requests.load(SeqCst).to_string())
            .collect();
        let errors: u64 = stats.iter().map(|s| s.errors.load(SeqCst)).sum();
        println!(
            "[{:>5.1}s] requests per station {} | pool {:>3.0}% in_use={} idle={} waiting={} | breaker {} | errors {errors}",
            started.elapsed().as_secs_f64(),
            per_station.join("/"),
            utilization,
            status["pool"]["in_use"],
            status["pool"]["idle"],
            status["pool"]["waiting"],
            status["breaker"]["state"].as_str().unwrap_or("?"),
        );
    }
    for w in workers {
        let _ = w.join();
    }
    let elapsed = started.elapsed();
    let final_status = get_json(&agent, &format!("{base}/status")).unwrap_or(Value::Null);
    child.stop();

    let mut latencies: Vec<u64> = stats
        .iter()
        .flat_map(|s| s.latencies_us.lock().map(|v| v.clone()).unwrap_or_default())
        .collect();
    latencies.sort_unstable();
    let pct = |q: f64| {
        latencies
            .get(((latencies.len().saturating_sub(1)) as f64 * q) as usize)
            .copied()
            .unwrap_or(0)
    };
    let requests: u64 = stats.iter().map(|s| s.requests.load(SeqCst)).sum();
    let orders: u64 = stats.iter().map(|s| s.orders.load(SeqCst)).sum();
    let events: u64 = stats.iter().map(|s| s.events.load(SeqCst)).sum();
    let errors: u64 = stats.iter().map(|s| s.errors.load(SeqCst)).sum();
    println!(
        "\n== pgline demo summary ({:.1}s, {STATIONS} stations) ==",
        elapsed.as_secs_f64()
    );
    println!("orders created:   {orders}");
    println!("barcode events:   {events}");
    println!(
        "requests:         {requests} ({:.0}/s)",
        requests as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency:          p50 {:.2} ms, p99 {:.2} ms",
        pct(0.5) as f64 / 1000.0,
        pct(0.99) as f64 / 1000.0
    );
    println!("peak utilization: {peak_utilization:.0}%");
    println!(
        "pool at the end:  total={} acquired={} timeouts={} errors={}",
        final_status["pool"]["total"],
        final_status["pool"]["acquired_total"],
        final_status["pool"]["acquire_timeouts_total"],
        final_status["pool"]["errors_total"]
    );
    println!("errors:           {errors}");
    if errors > 0 {
        for (i, s) in stats.iter().enumerate() {
            if let Ok(Some(e)) = s.last_error.lock().map(|e| e.clone()) {
                println!("  ST-{:02}: {e}", i + 1);
            }
        }
        bail!("{errors} requests failed");
    }
    drop(server);
    Ok(())
}

/// One station: create an order, then scan, pass and complete its panels.
fn station(
    number: usize,
    run_id: u32,
    agent: &ureq::Agent,
    base: &str,
    stats: &StationStats,
    stop: &AtomicBool,
) {
    let name = format!("ST-{number:02}");
    let mut n = 0u64;
    while !stop.load(SeqCst) {
        n += 1;
        let order_number = format!("MO-{run_id}-{number:02}-{n:05}");
        let barcodes: Vec<String> = (0..PANELS_PER_ORDER)
            .map(|p| format!("P-{run_id}-{number:02}-{n:05}-{p}"))
            .collect();
        let order = json!({
            "order_number": order_number,
            "panel_type": "FR4-1.6mm",
            "panels": barcodes.iter().map(|b| json!({"barcode": b})).collect::<Vec<_>>(),
        });
        if !request(agent, stats, &format!("{base}/api/orders"), &order, 201) {
            continue;
        }
        stats.orders.fetch_add(1, SeqCst);
        for (p, barcode) in barcodes.iter().enumerate() {
            let events: &[&str] = if p == PANELS_PER_ORDER - 1 && n.is_multiple_of(5) {
                &["SCANNED", "FAILED"]
            } else {
                &["SCANNED", "PASSED", "COMPLETED"]
            };
            for event in events {
                if stop.load(SeqCst) {
                    return;
                }
                let body = json!({"event_type": event, "station": name});
                if request(
                    agent,
                    stats,
                    &format!("{base}/api/panels/{barcode}/events"),
                    &body,
                    201,
                ) {
                    stats.events.fetch_add(1, SeqCst);
                }
            }
        }
    }
}

fn request(
    agent: &ureq::Agent,
    stats: &StationStats,
    url: &str,
    body: &Value,
    expect: u16,
) -> bool {
    let t = Instant::now();
    let outcome = agent.post(url).send_json(body);
    let took = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
    stats.requests.fetch_add(1, SeqCst);
    if let Ok(mut v) = stats.latencies_us.lock() {
        v.push(took);
    }
    let error = match outcome {
        Ok(response) if response.status().as_u16() == expect => return true,
        Ok(mut response) => format!(
            "{} from {url}: {}",
            response.status(),
            response.body_mut().read_to_string().unwrap_or_default()
        ),
        Err(e) => format!("{url}: {e}"),
    };
    stats.errors.fetch_add(1, SeqCst);
    if let Ok(mut last) = stats.last_error.lock() {
        *last = Some(error);
    }
    false
}

pub(crate) fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

pub(crate) fn get_json(agent: &ureq::Agent, url: &str) -> anyhow::Result<Value> {
    let mut response = agent.get(url).call()?;
    Ok(response.body_mut().read_json::<Value>()?)
}

fn wait_ready(agent: &ureq::Agent, base: &str, child: &mut Child) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if let Some(status) = child.try_wait()? {
            bail!("pgline-server exited during start-up ({status})");
        }
        if let Ok(response) = agent.get(&format!("{base}/ready")).call()
            && response.status().as_u16() == 200
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("pgline-server was not ready within 60 s")
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The workspace's target directory (`CARGO_TARGET_DIR` when set).
pub(crate) fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn server_binary() -> anyhow::Result<std::path::PathBuf> {
    let binary = target_dir().join("debug/pgline-server");
    if !binary.is_file() {
        bail!("{} not found after building", binary.display());
    }
    Ok(binary)
}

/// Stops the server with SIGTERM (graceful shutdown) when dropped.
pub(crate) struct ChildGuard(pub(crate) Child);

impl ChildGuard {
    pub(crate) fn stop(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(15) {
            match self.0.try_wait() {
                Ok(Some(status)) => {
                    eprintln!("xtask: pgline-server stopped ({status})");
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(_) => break,
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

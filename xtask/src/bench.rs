//! `cargo xtask bench`: the comparison benchmarks of docs/benchmarks.md.
//!
//! The harness is the `pgline-bench` binary of `crates/pgline-bench`, built
//! and run in release mode (`cargo run --release -p pgline-bench`) while xtask
//! itself stays a debug build. It starts a throwaway PostgreSQL, measures
//! pgline against deadpool, bb8, r2d2, raw tokio-postgres and pgbench, writes
//! one JSON object per line to stdout (and to `--out`), draws an SVG chart
//! of the rows (throughput and p99 against concurrency, one line per pool)
//! beside `--out` (`FILE.svg`) or at `target/bench/bench.svg`, and prints
//! progress and a ratio summary to stderr.
//!
//! Then, unless `--no-telemetry` or a `--scenario` filter that does not name
//! it, the telemetry rows: `checkout_select1_telemetry` with the pool bare,
//! with metrics and logs, with a span per statement (made and encoded, not
//! sent) and with every span exported to a collector, from
//! `cargo bench -p pgline-telemetry --bench overhead` (the four side by side
//! in one process, in alternating slices, compared round by round). They are
//! appended to stdout and `--out`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// Arguments of `cargo xtask bench`.
#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    /// Short windows and fewer cases: finishes in under 2 minutes once built.
    #[arg(long)]
    quick: bool,
    /// Also write the JSON lines to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Skip the telemetry-overhead rows (`checkout_select1_telemetry`).
    #[arg(long)]
    no_telemetry: bool,
    /// More arguments for pgline-bench after `--`, e.g. `-- --pool pgline,deadpool
    /// --rounds 3` (`cargo xtask bench -- --help` lists them).
    #[arg(last = true)]
    extra: Vec<String>,
}

/// Builds and runs `pgline-bench` in release mode with the given arguments.
pub(crate) fn run(args: BenchArgs) -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent folder")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root).args([
        "run",
        "--release",
        "--package",
        "pgline-bench",
        "--bin",
        "pgline-bench",
        "--",
    ]);
    if args.quick {
        cmd.arg("--quick");
    }
    // Relative to where the command was typed, not to the workspace root.
    let out = match &args.out {
        Some(out) => {
            Some(std::path::absolute(out).with_context(|| format!("resolving {}", out.display()))?)
        }
        None => None,
    };
    if let Some(out) = &out {
        cmd.arg("--out").arg(out);
    }
    // The telemetry row is not pgline-bench's: with a filter naming only it,
    // pgline-bench does not run.
    let (scenarios, rest) = split_scenarios(&args.extra);
    let pool_scenarios: Vec<&str> = scenarios
        .iter()
        .map(String::as_str)
        .filter(|s| *s != TELEMETRY_ROW)
        .collect();
    cmd.args(&rest);
    if !pool_scenarios.is_empty() {
        cmd.arg("--scenario").arg(pool_scenarios.join(","));
    }
    if scenarios.is_empty() || !pool_scenarios.is_empty() {
        let status = cmd
            .status()
            .context("running cargo run --release -p pgline-bench")?;
        if !status.success() {
            bail!("pgline-bench failed ({status})");
        }
    }
    if !args.no_telemetry && wants_telemetry(&args.extra) {
        telemetry_rows(root, args.quick, out.as_deref())?;
    }
    Ok(())
}

/// The telemetry rows' scenario name.
const TELEMETRY_ROW: &str = "checkout_select1_telemetry";

/// The names of `--scenario` filters in `extra`, and the other arguments.
fn split_scenarios(extra: &[String]) -> (Vec<String>, Vec<String>) {
    let mut scenarios = Vec::new();
    let mut rest = Vec::new();
    let mut args = extra.iter();
    while let Some(arg) = args.next() {
        let value = match arg.strip_prefix("--scenario=") {
            Some(value) => Some(value.to_owned()),
            None if arg == "--scenario" => args.next().cloned(),
            None => None,
        };
        match value {
            Some(value) => scenarios.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            ),
            None => rest.push(arg.clone()),
        }
    }
    (scenarios, rest)
}

/// True unless a `--scenario` filter leaves the telemetry rows out.
fn wants_telemetry(extra: &[String]) -> bool {
    let mut filter = None;
    for (i, arg) in extra.iter().enumerate() {
        if let Some(value) = arg.strip_prefix("--scenario=") {
            filter = Some(value.to_owned());
        } else if arg == "--scenario" {
            filter = extra.get(i + 1).cloned();
        }
    }
    filter.is_none_or(|f| {
        f.split(',')
            .any(|s| "checkout_select1_telemetry".contains(s.trim()))
    })
}

/// Runs the telemetry-overhead bench and passes its JSON rows on.
fn telemetry_rows(root: &Path, quick: bool, out: Option<&Path>) -> anyhow::Result<()> {
    // Many short paired slices: the machine's load drifts over seconds, and
    // even 250 rounds leave 1–2 % between runs (docs/tracing.md, "Against
    // the target"); 100 rounds of 0.3 s take about three minutes.
    let (seconds, rounds) = if quick { ("0.3", "10") } else { ("0.3", "100") };
    eprintln!(
        "[telemetry] checkout_select1_telemetry: bare, metrics, tracing, otlp ({rounds} rounds of a {seconds} s slice each)"
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(root)
        .args([
            "bench",
            "--package",
            "pgline-telemetry",
            "--bench",
            "overhead",
            "--",
            seconds,
            rounds,
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo bench -p pgline-telemetry --bench overhead")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("the telemetry bench failed ({}):\n{stdout}", output.status);
    }
    let mut rows = String::new();
    for line in stdout.lines() {
        if line.starts_with('{') {
            println!("{line}");
            rows.push_str(line);
            rows.push('\n');
        } else {
            eprintln!("[telemetry] {line}");
        }
    }
    if let Some(out) = out {
        use std::io::Write as _;
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(out)
            .and_then(|mut f| f.write_all(rows.as_bytes()))
            .with_context(|| format!("appending the telemetry rows to {}", out.display()))?;
    }
    Ok(())
}

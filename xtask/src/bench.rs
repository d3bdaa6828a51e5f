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
    if let Some(out) = &args.out {
        // Relative to where the command was typed, not to the workspace root.
        let out =
            std::path::absolute(out).with_context(|| format!("resolving {}", out.display()))?;
        cmd.arg("--out").arg(out);
    }
    cmd.args(&args.extra);
    let status = cmd
        .status()
        .context("running cargo run --release -p pgline-bench")?;
    if !status.success() {
        bail!("pgline-bench failed ({status})");
    }
    Ok(())
}

//! `cargo xtask`: the workspace's automation (matklad's xtask pattern).
//!
//! Every check CI runs lives here, so `.ci/run` is one line and a developer runs
//! exactly what CI runs.

mod bench;
mod chaos;
mod ci;
mod db;
mod demo;
mod footprint;
mod fuzz;
mod integration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Automation for the pgline workspace")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job: a throwaway PostgreSQL, pgline-server and 8 simulated stations with live progress.
    Demo(demo::DemoArgs),
    /// Everything CI checks: fmt, clippy -D warnings, all tests against real PostgreSQL, doc tests, a short fuzz run.
    Ci,
    /// Start a throwaway PostgreSQL, print its DATABASE_URL and keep it until Ctrl-C.
    Db,
    /// Comparison benchmarks (pgline vs deadpool, bb8, r2d2, raw, pgbench) as JSON lines.
    Bench(bench::BenchArgs),
    /// The seed's ten-point pool test, each point printed, then `N passed, N failed`.
    Integration,
    /// The fault suite: restarts, terminated backends, connection limit, stalls, latency, failover, exhaustion, cancellation.
    Chaos {
        /// Only scenarios whose name contains this text.
        filter: Option<String>,
    },
    /// The cargo-fuzz targets (config_parse, request_decode) for N seconds each on nightly, then `N passed, N failed`.
    Fuzz(fuzz::FuzzArgs),
    /// pgline-server at rest: resident memory with N open connections, memory per connection, time to ready.
    Footprint(footprint::FootprintArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Ci => ci::run(),
        Command::Bench(args) => bench::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Db => db::run(),
        Command::Integration => integration::run(),
        Command::Chaos { filter } => chaos::run(filter),
        Command::Fuzz(args) => fuzz::run(args),
        Command::Footprint(args) => footprint::run(args),
    }
}

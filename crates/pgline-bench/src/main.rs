//! `pgline-bench`: the comparison benchmarks behind `cargo xtask bench`.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    pgline_bench::run(&pgline_bench::Args::parse())
}

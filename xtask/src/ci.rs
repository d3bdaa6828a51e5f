//! `cargo xtask ci`: the same steps CI runs, stopping at the first failure;
//! last, a short bounded run of the fuzz targets (`cargo xtask fuzz`).

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

/// Seconds each fuzz target runs in CI: a smoke run that the targets still
/// build and the seeds and their near mutations pass; `cargo xtask fuzz
/// --seconds N` runs longer, and optimized.
const CI_FUZZ_SECONDS: u64 = 20;
/// CI builds the fuzz targets without optimizations: the cold build is
/// half as long (about 6 CPU-minutes instead of 13), which matters more
/// than the slower runs in a 20-second smoke run.
const CI_FUZZ_DEV: bool = true;

/// One CI step: a name for the report and the cargo arguments.
struct Step {
    name: &'static str,
    args: Vec<&'static str>,
}

fn has_nextest() -> bool {
    Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Runs fmt, clippy, the tests and the doc tests; returns an error naming the failed step.
pub(crate) fn run() -> anyhow::Result<()> {
    let mut steps = vec![
        Step {
            name: "fmt",
            args: vec!["fmt", "--all", "--check"],
        },
        Step {
            name: "clippy",
            args: vec![
                "clippy",
                "--workspace",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ],
        },
    ];
    if has_nextest() {
        steps.push(Step {
            name: "tests (nextest)",
            args: vec![
                "nextest",
                "run",
                "--workspace",
                "--locked",
                "--no-fail-fast",
                "--failure-output",
                "final",
            ],
        });
    } else {
        steps.push(Step {
            name: "tests (cargo test)",
            args: vec!["test", "--workspace", "--all-targets", "--locked"],
        });
    }
    steps.push(Step {
        name: "doc tests",
        args: vec!["test", "--workspace", "--doc", "--locked"],
    });
    steps.push(Step {
        name: "docs build",
        args: vec!["doc", "--workspace", "--no-deps", "--locked"],
    });

    let started = Instant::now();
    for step in &steps {
        println!(
            "==> xtask ci: {} (cargo {})",
            step.name,
            step.args.join(" ")
        );
        let t = Instant::now();
        let mut cmd = Command::new("cargo");
        cmd.args(&step.args);
        if step.name == "docs build" {
            cmd.env("RUSTDOCFLAGS", "-D warnings");
        }
        let status = cmd
            .status()
            .with_context(|| format!("could not run cargo for step `{}`", step.name))?;
        if !status.success() {
            bail!(
                "xtask ci: step `{}` failed ({status}); run `cargo {}` to reproduce",
                step.name,
                step.args.join(" ")
            );
        }
        println!("==> xtask ci: {} ok in {:.1?}", step.name, t.elapsed());
    }
    println!(
        "==> xtask ci: fuzz (cargo +nightly fuzz, {CI_FUZZ_SECONDS} s per target: {})",
        crate::fuzz::TARGETS.join(", ")
    );
    let t = Instant::now();
    crate::fuzz::run_targets(crate::fuzz::TARGETS, CI_FUZZ_SECONDS, CI_FUZZ_DEV).with_context(
        || {
            format!(
                "xtask ci: step `fuzz` failed; run `cargo xtask fuzz --dev --seconds {CI_FUZZ_SECONDS}` to reproduce"
            )
        },
    )?;
    println!("==> xtask ci: fuzz ok in {:.1?}", t.elapsed());
    println!(
        "==> xtask ci: all {} steps passed in {:.1?}",
        steps.len() + 1,
        started.elapsed()
    );
    Ok(())
}

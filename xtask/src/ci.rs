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
        // A CI build is built once: incremental state would only take disk
        // (tens of GiB over the steps), and CI machines have run out of it.
        cmd.env("CARGO_INCREMENTAL", "0");
        if step.name == "docs build" {
            cmd.env("RUSTDOCFLAGS", "-D warnings");
        }
        let status = if step.name == "tests (nextest)" {
            // Streams nextest's report through and tallies the contract
            // suite per backend from it.
            let (status, lines) = run_teeing_stderr(cmd)
                .with_context(|| format!("could not run cargo for step `{}`", step.name))?;
            print_contract_summary(&lines);
            status
        } else {
            cmd.status()
                .with_context(|| format!("could not run cargo for step `{}`", step.name))?
        };
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

/// Runs `cmd`, copying its stderr to ours line by line, and returns its exit
/// status and those lines.
fn run_teeing_stderr(mut cmd: Command) -> anyhow::Result<(std::process::ExitStatus, Vec<String>)> {
    use std::io::{BufRead as _, BufReader, Write as _};
    let mut child = cmd.stderr(std::process::Stdio::piped()).spawn()?;
    let mut lines = Vec::new();
    if let Some(stderr) = child.stderr.take() {
        let mut out = std::io::stderr();
        for line in BufReader::new(stderr).split(b'\n') {
            let line = String::from_utf8_lossy(&line?).into_owned();
            let _ = writeln!(out, "{line}");
            lines.push(line);
        }
    }
    Ok((child.wait()?, lines))
}

/// Prints `contract suite: <backend> N passed, N failed` for each backend of
/// `tests/tests/contract.rs`, from nextest's status lines
/// (`PASS [ 0.7s] (1/9) pgline-tests::contract async_pool::query_...`).
fn print_contract_summary(lines: &[String]) {
    const BINARY: &str = "pgline-tests::contract ";
    // The last status of each test wins (retries print several).
    let mut outcome = std::collections::BTreeMap::<String, bool>::new();
    for line in lines {
        let Some(at) = line.find(BINARY) else {
            continue;
        };
        let status = line.split_whitespace().find(|w| {
            matches!(
                *w,
                "PASS" | "FAIL" | "TIMEOUT" | "SIGSEGV" | "SIGABRT" | "SIGKILL" | "ABORT"
            )
        });
        let Some(status) = status else { continue };
        let test = line[at + BINARY.len()..].trim().to_owned();
        outcome.insert(test, status == "PASS");
    }
    let mut per_backend = std::collections::BTreeMap::<&str, (u32, u32)>::new();
    for (test, passed) in &outcome {
        let backend = test.split("::").next().unwrap_or(test);
        let entry = per_backend.entry(backend).or_default();
        if *passed {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }
    if per_backend.is_empty() {
        println!("==> xtask ci: contract suite: no results found in the test report");
        return;
    }
    for (backend, (passed, failed)) in per_backend {
        println!("==> xtask ci: contract suite: {backend:<28} {passed} passed, {failed} failed");
    }
}

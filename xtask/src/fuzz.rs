//! `cargo xtask fuzz [--seconds N] [TARGET]`: the cargo-fuzz targets in
//! `fuzz/` (configuration parsing, request decoding), each run for a bounded
//! time on the nightly toolchain; a line per target, then `N passed, N
//! failed`.
//!
//! Each run starts from the committed seeds in `fuzz/corpus/<target>/` and
//! adds what libFuzzer finds there (git ignores it). A crash is saved under
//! `fuzz/artifacts/<target>/` and printed with the command that replays it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The fuzz targets, in the order they run.
pub(crate) const TARGETS: &[&str] = &["config_parse", "request_decode"];

/// Seconds per target when `--seconds` is not given.
const DEFAULT_SECONDS: u64 = 30;
/// Slack on top of `-max_total_time` before a run counts as hung and is
/// killed: libFuzzer's start-up, the final merge of a large corpus.
const KILL_SLACK: Duration = Duration::from_secs(120);

/// The arguments of `cargo xtask fuzz`.
#[derive(Debug, clap::Args)]
pub(crate) struct FuzzArgs {
    /// Seconds to fuzz each target (libFuzzer's -max_total_time).
    #[arg(long, default_value_t = DEFAULT_SECONDS)]
    seconds: u64,
    /// Only this target (config_parse or request_decode).
    target: Option<String>,
    /// Build without optimizations: the cold build takes half the time, the
    /// runs are about 20 times slower. What `cargo xtask ci` uses.
    #[arg(long)]
    dev: bool,
}

/// `cargo xtask fuzz`.
pub(crate) fn run(args: FuzzArgs) -> anyhow::Result<()> {
    let targets: Vec<&str> = match &args.target {
        None => TARGETS.to_vec(),
        Some(name) => match TARGETS.iter().find(|t| **t == name.as_str()) {
            Some(target) => vec![*target],
            None => bail!("unknown fuzz target {name:?}; the targets are {TARGETS:?}"),
        },
    };
    run_targets(&targets, args.seconds, args.dev)
}

/// Runs `targets` for `seconds` each, built without optimizations when
/// `dev`; fails when one fails or the tools are missing. For `cargo xtask
/// ci`, too.
pub(crate) fn run_targets(targets: &[&str], seconds: u64, dev: bool) -> anyhow::Result<()> {
    let root = workspace_root()?;
    ensure_cargo_fuzz()?;
    let flags = build_flags(dev);
    let started = Instant::now();
    println!(
        "fuzz: building the targets (cargo +nightly fuzz build {})",
        flags.join(" ")
    );
    let status = Command::new("cargo")
        .args(["+nightly", "fuzz", "build"])
        .args(&flags)
        .current_dir(&root)
        .status()
        .context("running cargo +nightly fuzz build")?;
    if !status.success() {
        bail!("fuzz: cargo +nightly fuzz build failed ({status})");
    }
    println!("fuzz: built in {:.1?}", started.elapsed());

    let (mut passed, mut failed) = (0, 0);
    for target in targets {
        match run_one(&root, target, seconds, &flags) {
            Ok(summary) => {
                passed += 1;
                println!("  ok    {target}: {summary}");
            }
            Err(error) => {
                failed += 1;
                println!("  FAIL  {target}: {error:#}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        bail!("fuzz: {failed} target(s) failed");
    }
    Ok(())
}

/// cargo-fuzz flags shared by build and run, so `run` reuses the build:
/// release with debug assertions (cargo-fuzz's default), or `--dev`; no
/// sanitizer (the workspace forbids `unsafe`: the fuzzers look for panics,
/// 5xx answers and leaked secrets, which Rust's own checks and the targets'
/// assertions catch); 16 codegen units, which shortens the release build for
/// slightly slower runs.
fn build_flags(dev: bool) -> Vec<&'static str> {
    let mut flags = vec!["--sanitizer", "none"];
    match dev {
        true => flags.push("--dev"),
        false => flags.extend(["--codegen-units", "16"]),
    }
    flags
}

fn workspace_root() -> anyhow::Result<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest
        .parent()
        .context("xtask's manifest has no parent directory")?;
    Ok(root.to_owned())
}

/// The target triple cargo-fuzz builds for by default: the nightly
/// compiler's host.
fn host_triple() -> anyhow::Result<String> {
    let output = Command::new("rustc")
        .args(["+nightly", "-vV"])
        .output()
        .context("running rustc +nightly -vV")?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_owned)
        .context("rustc +nightly -vV names no host triple")
}

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// `cargo +nightly fuzz` works, installing cargo-fuzz when only it is
/// missing; a missing nightly toolchain is an error that says so.
fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    if !succeeds("cargo", &["+nightly", "--version"]) {
        bail!(
            "fuzz: no nightly toolchain (`cargo +nightly --version` fails); cargo-fuzz needs one \
             for libFuzzer's instrumentation: `rustup toolchain install nightly`"
        );
    }
    if succeeds("cargo", &["+nightly", "fuzz", "--version"]) {
        return Ok(());
    }
    println!("fuzz: cargo-fuzz is missing; installing it (cargo install cargo-fuzz --locked)");
    let status = Command::new("cargo")
        .args(["install", "cargo-fuzz", "--locked"])
        .status()
        .context("running cargo install cargo-fuzz")?;
    if !status.success() || !succeeds("cargo", &["+nightly", "fuzz", "--version"]) {
        bail!(
            "fuzz: cargo-fuzz could not be installed ({status}); install it with \
             `cargo install cargo-fuzz --locked` and check `cargo +nightly fuzz --version`"
        );
    }
    Ok(())
}

/// Runs `target` for `seconds`; the summary from libFuzzer's final
/// statistics, or why it failed.
fn run_one(root: &Path, target: &str, seconds: u64, flags: &[&str]) -> anyhow::Result<String> {
    let logs = root.join("fuzz").join("target");
    std::fs::create_dir_all(&logs).context("creating fuzz/target")?;
    let log_path = logs.join(format!("xtask-{target}.log"));
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    // The binary `cargo fuzz build` made, run directly: `cargo fuzz run`
    // would rebuild first when a source changed meanwhile, and that time
    // would count against the run's bound.
    let profile = if flags.contains(&"--dev") {
        "debug"
    } else {
        "release"
    };
    let binary = root
        .join("fuzz/target")
        .join(host_triple()?)
        .join(profile)
        .join(target);
    let fuzz = root.join("fuzz");
    let artifacts = fuzz.join("artifacts").join(target);
    std::fs::create_dir_all(&artifacts)
        .with_context(|| format!("creating {}", artifacts.display()))?;
    let mut child = Command::new(&binary)
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg(format!("-max_total_time={seconds}"))
        // A slow input is a bug too (10 s), as is a runaway allocation.
        .args(["-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1"])
        .arg(fuzz.join("corpus").join(target))
        .current_dir(root)
        .stdout(log.try_clone().context("log file")?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("running {}", binary.display()))?;
    let deadline = Instant::now() + Duration::from_secs(seconds) + KILL_SLACK;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for the fuzzer")? {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    let stat = |name: &str| {
        output
            .lines()
            .find_map(|line| line.strip_prefix(&format!("stat::{name}:")))
            .map(str::trim)
            .unwrap_or("?")
            .to_owned()
    };
    let coverage = output
        .lines()
        .rev()
        .find_map(|line| line.split_once(" cov: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or("?");
    match status {
        Some(status) if status.success() => Ok(format!(
            "{} runs in {seconds} s ({} per second), coverage {coverage}, corpus fuzz/corpus/{target}",
            stat("number_of_executed_units"),
            stat("average_exec_per_sec"),
        )),
        Some(status) => {
            let tail: Vec<&str> = output.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "{status}; the input that failed is under fuzz/artifacts/{target}/ \
                 (replay: cargo +nightly fuzz run {} {target} <file>); log {}:\n{}",
                flags.join(" "),
                log_path.display(),
                tail.join("\n")
            )
        }
        None => bail!(
            "still running {KILL_SLACK:?} after -max_total_time={seconds}; killed (log {})",
            log_path.display()
        ),
    }
}

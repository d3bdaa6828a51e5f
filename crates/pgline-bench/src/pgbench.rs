//! `pgbench` as the server's ceiling: `SELECT 1` from 20 clients with no pool
//! in between, measured like the pools (warm-up, then a fixed window).
//!
//! pgbench runs with `--log`, which writes one line per transaction with its
//! latency and completion time; throughput and p50/p99 are computed from the
//! transactions completed inside the window. If the log cannot be read, the
//! row falls back to the `tps` pgbench prints and null latencies.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::measure::{Sample, Timing, new_histogram};

/// What one pgbench run produced.
#[derive(Debug)]
pub struct PgbenchOutcome {
    /// The transactions inside the window, when the log could be read.
    pub sample: Option<Sample>,
    /// The `tps` pgbench reported for its whole run.
    pub reported_tps: Option<f64>,
}

/// Finds `pgbench`: `$PGLINE_TESTKIT_PG_BIN`, then `PATH`, then the highest
/// version under `/usr/lib/postgresql/*/bin` (the order the testkit uses).
pub fn find() -> Option<PathBuf> {
    let from_env = std::env::var_os(pgline_testkit::BIN_DIR_ENV).map(PathBuf::from);
    let from_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| {
                    let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                    Some((v, e.path().join("bin")))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by_key(|v| std::cmp::Reverse(v.0));
    from_env
        .into_iter()
        .chain(from_path)
        .chain(versions.into_iter().map(|(_, p)| p))
        .map(|dir| dir.join("pgbench"))
        .find(|p| p.is_file())
}

/// Runs `pgbench -n -M <mode> -c <clients> -j 2 -f <SELECT 1>` against
/// `127.0.0.1:port` as user `postgres` for the warm-up plus the window.
pub fn run(
    pgbench: &Path,
    port: u16,
    mode: &str,
    clients: u32,
    timing: Timing,
) -> anyhow::Result<PgbenchOutcome> {
    let dir = tempfile::Builder::new()
        .prefix("pgline-bench-")
        .tempdir()
        .context("creating a folder for pgbench")?;
    let script = dir.path().join("select1.sql");
    std::fs::write(&script, "SELECT 1;\n").context("writing the pgbench script")?;
    let prefix = dir.path().join("txlog");
    // -T takes whole seconds; the extra half second keeps the window's end
    // clear of pgbench's shutdown.
    let secs = (timing.warmup + timing.measure + Duration::from_millis(500))
        .as_secs_f64()
        .ceil() as u64;
    let output = Command::new(pgbench)
        .args(["-n", "-M", mode, "-j", "2"])
        .arg("-c")
        .arg(clients.to_string())
        .arg("-T")
        .arg(secs.to_string())
        .arg("-f")
        .arg(&script)
        .args(["-h", "127.0.0.1", "-U", "postgres"])
        .arg("-p")
        .arg(port.to_string())
        .arg("--log")
        .arg(format!("--log-prefix={}", prefix.display()))
        .arg("postgres")
        .env_remove("PGPASSWORD")
        .output()
        .with_context(|| format!("running {}", pgbench.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "pgbench failed ({}): {}{}",
            output.status,
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let reported_tps = parse_tps(&stdout);
    let sample = match read_logs(dir.path(), timing) {
        Ok(sample) => Some(sample),
        Err(e) => {
            eprintln!("pgbench: cannot use the transaction log ({e:#}); latencies unavailable");
            None
        }
    };
    Ok(PgbenchOutcome {
        sample,
        reported_tps,
    })
}

/// The `tps = N (without initial connection time)` line of pgbench's report.
fn parse_tps(stdout: &str) -> Option<f64> {
    stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// One logged transaction: completion time and latency, in microseconds.
fn parse_line(line: &str) -> Option<(u64, u64)> {
    // client_id transaction_no time script_no time_epoch time_us [...]
    let mut fields = line.split_whitespace();
    let latency: u64 = fields.nth(2)?.parse().ok()?;
    let epoch: u64 = fields.nth(1)?.parse().ok()?;
    let micros: u64 = fields.next()?.parse().ok()?;
    Some((epoch * 1_000_000 + micros, latency))
}

fn read_logs(dir: &Path, timing: Timing) -> anyhow::Result<Sample> {
    let mut transactions = Vec::new();
    for entry in std::fs::read_dir(dir).context("listing pgbench's logs")? {
        let entry = entry?;
        if !entry.file_name().to_string_lossy().starts_with("txlog") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path())?;
        transactions.extend(text.lines().filter_map(parse_line));
    }
    let Some(first_start) = transactions
        .iter()
        .map(|&(done, latency)| done.saturating_sub(latency))
        .min()
    else {
        bail!("no transactions logged");
    };
    let start = first_start + timing.warmup.as_micros() as u64;
    let end = start + timing.measure.as_micros() as u64;
    let mut hist = new_histogram()?;
    let mut ops = 0u64;
    let mut last = 0;
    for &(done, latency) in &transactions {
        last = last.max(done);
        if done >= start && done < end {
            ops += 1;
            hist.record((latency * 1000).max(1))
                .context("recording a pgbench latency")?;
        }
    }
    // Had pgbench stopped early, the window ends with its last transaction.
    let window = Duration::from_micros(end.min(last).saturating_sub(start));
    if window.is_zero() {
        bail!("pgbench's log ends before the warm-up does");
    }
    Ok(Sample {
        ops,
        window,
        latency_ns: hist,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_report_and_log_lines() {
        let report = "number of failed transactions: 0 (0.000%)\n\
                      latency average = 0.170 ms\n\
                      initial connection time = 10.113 ms\n\
                      tps = 117593.416542 (without initial connection time)\n";
        assert_eq!(parse_tps(report), Some(117_593.416_542));
        assert_eq!(
            parse_line("3 1042 187 0 1700000000 123456"),
            Some((1_700_000_000_123_456, 187))
        );
        assert_eq!(parse_line("garbage"), None);
    }
}

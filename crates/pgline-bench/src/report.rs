//! The output: one JSON object per measurement (the contract of
//! `cargo xtask bench` in DESIGN.md) and the ratio summary on stderr.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// One result line: the contract fields of DESIGN.md, then optional extras
/// (left out of the line when absent).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// `checkout_select1`, `checkout_simple1` or `acquire_release_noio`.
    pub scenario: String,
    /// `pgline`, `pgline-sync`, `deadpool`, `bb8`, `r2d2`, `raw` or `pgbench`.
    pub pool: String,
    /// Connections in the pool (for `raw` and `pgbench`: connections opened).
    pub pool_size: u32,
    /// Concurrent tasks (OS threads for `r2d2`, clients for `pgbench`).
    pub concurrency: u32,
    /// Operations completed per second in the measured window.
    pub ops_per_sec: f64,
    /// Median latency of one operation (acquire → work → release), µs.
    pub p50_us: Option<f64>,
    /// 99th percentile latency of one operation, µs.
    pub p99_us: Option<f64>,
    /// Longest latency of one operation, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_us: Option<f64>,
    /// CPU time of the benchmark process (pool, driver, runtime) per
    /// operation during the window, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_us_per_op: Option<f64>,
    /// CPU time of the PostgreSQL server per operation during the window, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cpu_us_per_op: Option<f64>,
    /// `waiters_10k`: resident memory per parked waiter (its task included),
    /// in bytes: the growth of a fresh process's RSS when `concurrency`
    /// tasks queue on a pool whose connections are all held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_waiter: Option<f64>,
}

/// Writes records to stdout and, when given, to a file, one JSON object a line.
pub struct Sink {
    file: Option<BufWriter<File>>,
    records: Vec<Record>,
}

impl Sink {
    /// A sink that also writes to `out` (created or truncated).
    pub fn new(out: Option<&Path>) -> anyhow::Result<Self> {
        let file = match out {
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                let file =
                    File::create(path).with_context(|| format!("creating {}", path.display()))?;
                Some(BufWriter::new(file))
            }
            None => None,
        };
        Ok(Self {
            file,
            records: Vec::new(),
        })
    }

    /// Writes one record (flushed at once, so partial runs keep their lines).
    pub fn push(&mut self, record: Record) -> anyhow::Result<()> {
        let line = serde_json::to_string(&record)?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{line}")?;
        stdout.flush()?;
        if let Some(file) = &mut self.file {
            writeln!(file, "{line}")?;
            file.flush()?;
        }
        self.records.push(record);
        Ok(())
    }

    /// Every record written so far.
    pub fn records(&self) -> &[Record] {
        &self.records
    }
}

fn find<'a>(records: &'a [Record], scenario: &str, pool: &str, c: u32) -> Option<&'a Record> {
    records
        .iter()
        .find(|r| r.scenario == scenario && r.pool == pool && r.concurrency == c)
}

fn ratio(a: Option<&Record>, b: Option<&Record>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b.ops_per_sec > 0.0 => {
            format!("{:.2}", a.ops_per_sec / b.ops_per_sec)
        }
        _ => "-".into(),
    }
}

fn ops(r: Option<&Record>) -> String {
    r.map_or_else(|| "-".into(), |r| format!("{:.0}", r.ops_per_sec))
}

fn us(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.1}"))
}

/// The summary table: per scenario and concurrency, throughput of every
/// contender and pgline's ratios to deadpool, bb8, raw and pgbench, and the
/// p99 of pgline and deadpool.
pub fn summary(records: &[Record]) -> String {
    let mut keys: Vec<(String, u32)> = Vec::new();
    for r in records {
        if r.pool == "pgbench" {
            continue;
        }
        let key = (r.scenario.clone(), r.concurrency);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<22} {:>4} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9} {:>6} {:>6} {:>8} {:>10} {:>12}",
        "scenario",
        "c",
        "pgline",
        "deadpool",
        "bb8",
        "raw",
        "r2d2",
        "/deadpool",
        "/bb8",
        "/raw",
        "/pgbench",
        "p99 pgline",
        "p99 deadpool"
    );
    for (scenario, c) in keys {
        let pgline = find(records, &scenario, "pgline", c);
        let deadpool = find(records, &scenario, "deadpool", c);
        let bb8 = find(records, &scenario, "bb8", c);
        let raw = find(records, &scenario, "raw", c);
        let r2d2 = find(records, &scenario, "r2d2", c);
        let pgbench = records
            .iter()
            .find(|r| r.scenario == scenario && r.pool == "pgbench");
        let _ = writeln!(
            out,
            "{:<22} {:>4} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9} {:>6} {:>6} {:>8} {:>10} {:>12}",
            scenario,
            c,
            ops(pgline),
            ops(deadpool),
            ops(bb8),
            ops(raw),
            ops(r2d2),
            ratio(pgline, deadpool),
            ratio(pgline, bb8),
            ratio(pgline, raw),
            ratio(pgline, pgbench),
            us(pgline.and_then(|r| r.p99_us)),
            us(deadpool.and_then(|r| r.p99_us)),
        );
    }
    for r in records.iter().filter(|r| r.pool == "pgbench") {
        let _ = writeln!(
            out,
            "pgbench ({}, {} clients): {:.0} ops/s, p50 {} µs, p99 {} µs",
            r.scenario,
            r.concurrency,
            r.ops_per_sec,
            us(r.p50_us),
            us(r.p99_us)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(pool: &str, c: u32, ops: f64) -> Record {
        Record {
            scenario: "checkout_select1".into(),
            pool: pool.into(),
            pool_size: 20,
            concurrency: c,
            ops_per_sec: ops,
            p50_us: Some(100.0),
            p99_us: None,
            ..Record::default()
        }
    }

    #[test]
    fn the_json_line_has_the_contract_fields() {
        let line = serde_json::to_string(&rec("pgline", 8, 1.5)).unwrap();
        assert_eq!(
            line,
            r#"{"scenario":"checkout_select1","pool":"pgline","pool_size":20,"concurrency":8,"ops_per_sec":1.5,"p50_us":100.0,"p99_us":null}"#
        );
    }

    #[test]
    fn the_summary_shows_ratios() {
        let records = [
            rec("pgline", 8, 110.0),
            rec("deadpool", 8, 100.0),
            rec("pgbench", 20, 220.0),
        ];
        let table = summary(&records);
        assert!(table.contains("1.10"), "{table}");
        assert!(table.contains("0.50"), "{table}");
    }
}

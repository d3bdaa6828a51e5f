//! CPU time spent during a measured window by the benchmark process (the
//! client: pool, driver, runtime) and by the PostgreSQL server (postmaster and
//! backends), from `/proc`. On a machine where both share the cores, the
//! client's CPU per operation is what a pool can win or lose.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::measure::Window;

/// Clock ticks per second of `/proc/*/stat` (`USER_HZ`, 100 on Linux).
const TICKS_PER_SEC: u64 = 100;

/// CPU time (user + system) of a process and its threads, from `/proc/PID/stat`,
/// with its parent's pid.
fn read_stat(path: &std::path::Path) -> Option<(u32, Duration)> {
    let text = std::fs::read_to_string(path).ok()?;
    // The command name is in parentheses and may contain anything; the
    // fields after the last ')' are: state ppid … utime (12th) stime (13th).
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = utime + stime;
    Some((ppid, Duration::from_millis(ticks * 1000 / TICKS_PER_SEC)))
}

/// CPU used so far by this process and by the server whose postmaster is `server_pid`.
#[derive(Debug, Clone, Copy, Default)]
struct Snapshot {
    client: Duration,
    server: Duration,
}

fn snapshot(server_pid: Option<u32>) -> Snapshot {
    let client = read_stat(std::path::Path::new("/proc/self/stat")).map_or(Duration::ZERO, |s| s.1);
    let mut server = Duration::ZERO;
    if let Some(postmaster) = server_pid
        && let Ok(dir) = std::fs::read_dir("/proc")
    {
        for entry in dir.filter_map(Result::ok) {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some((ppid, cpu)) = read_stat(&entry.path().join("stat"))
                && (pid == postmaster || ppid == postmaster)
            {
                server += cpu;
            }
        }
    }
    Snapshot { client, server }
}

/// CPU time used during a window.
#[derive(Debug, Clone, Copy)]
pub struct CpuUse {
    /// By this process.
    pub client: Duration,
    /// By the PostgreSQL server.
    pub server: Duration,
}

impl CpuUse {
    /// A short text with the CPU per operation, e.g. `client 21.0 µs/op, server 30.2 µs/op`.
    pub fn per_op(&self, ops: u64) -> String {
        let per = |d: Duration| d.as_secs_f64() * 1e6 / ops.max(1) as f64;
        format!(
            "CPU/op: client {:.2} µs, server {:.2} µs",
            per(self.client),
            per(self.server)
        )
    }
}

/// A thread that takes CPU snapshots at the start and the end of a window;
/// it runs outside any async runtime, so a busy runtime cannot delay it.
pub struct CpuProbe(JoinHandle<CpuUse>);

impl CpuProbe {
    /// Starts probing `window`, counting the server whose postmaster is `server_pid`.
    pub fn spawn(window: Window, server_pid: Option<u32>) -> Self {
        Self(std::thread::spawn(move || {
            sleep_until(window.start);
            let a = snapshot(server_pid);
            sleep_until(window.end);
            let b = snapshot(server_pid);
            CpuUse {
                client: b.client.saturating_sub(a.client),
                server: b.server.saturating_sub(a.server),
            }
        }))
    }

    /// Waits for the window's end and returns the CPU used during it.
    pub fn finish(self) -> Option<CpuUse> {
        self.0.join().ok()
    }
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_cpu_time() {
        let (ppid, _) = read_stat(std::path::Path::new("/proc/self/stat")).unwrap();
        assert!(ppid > 0);
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(snapshot(None).client > Duration::ZERO);
    }
}

//! Helpers shared by the test modules.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// `pid cmdline` of every live process (zombies have no command line) whose command
/// line mentions `needle`, found by scanning `/proc`, other than this test process.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == me || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!("{name} {}", cmdline.trim_end()));
        }
    }
    found
}

/// What `pgrep -a -f <pattern>` prints (empty when nothing matches); `None` when there
/// is no `pgrep` on this machine.
pub fn pgrep_f(pattern: &str) -> Option<Vec<String>> {
    let out = Command::new("pgrep")
        .args(["-a", "-f", pattern])
        .output()
        .ok()?;
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect(),
    )
}

/// Whether `pid` is a live process (not gone, not a zombie).
pub fn is_running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        .unwrap_or("X");
    !matches!(state, "Z" | "X" | "x")
}

/// Polls `done` every 20 ms until it holds or `bound` passes; returns whether it held.
pub fn eventually(bound: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + bound;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts that within `bound` nothing runs on `data_dir` any more: no process mentions
/// it (checked with `pgrep -f` and a `/proc` scan), the postmaster `pid` is gone and the
/// server folder (the parent of `data_dir`) is removed.
pub fn assert_all_gone(data_dir: &Path, pid: Option<u32>, bound: Duration) {
    let needle = data_dir.to_string_lossy().into_owned();
    let root = data_dir
        .parent()
        .expect("data dir has a parent")
        .to_path_buf();
    let gone = eventually(bound, || {
        processes_mentioning(&needle).is_empty()
            && pgrep_f(&needle).is_none_or(|lines| lines.is_empty())
            && pid.is_none_or(|p| !is_running(p))
            && !root.exists()
    });
    assert!(
        gone,
        "after {bound:?}: processes mentioning {needle}: {:?}; pgrep -f: {:?}; postmaster {pid:?} running: {}; folder {} exists: {}",
        processes_mentioning(&needle),
        pgrep_f(&needle),
        pid.is_some_and(is_running),
        root.display(),
        root.exists()
    );
}

//! Process helpers: `/proc` inspection, signals, the child-subreaper flag, and the
//! identity PostgreSQL runs as.

use std::path::Path;
use std::sync::Once;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::{Pid, User};

use crate::TestkitError;

/// The OS identity initdb and postgres run as when we are root.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunAs {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

impl RunAs {
    /// `None` when we are not root (PostgreSQL runs as us); the `postgres` user otherwise.
    pub(crate) fn detect() -> Result<Option<RunAs>, TestkitError> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(None);
        }
        match User::from_name("postgres") {
            Ok(Some(user)) => Ok(Some(RunAs {
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
            })),
            Ok(None) => Err(TestkitError::NoPostgresUser),
            Err(e) => Err(TestkitError::io(
                "looking up the `postgres` user",
                std::io::Error::from(e),
            )),
        }
    }

    /// Gives `path` (not its contents) to this identity.
    pub(crate) fn chown(&self, path: &Path) -> Result<(), TestkitError> {
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid))
            .map_err(|e| TestkitError::io(format!("chown {}", path.display()), e))
    }

    /// Gives `path` and everything below it to this identity.
    pub(crate) fn chown_tree(&self, path: &Path) -> Result<(), TestkitError> {
        self.chown(path)?;
        let meta = std::fs::symlink_metadata(path)
            .map_err(|e| TestkitError::io(format!("stat {}", path.display()), e))?;
        if meta.is_dir() {
            let entries = std::fs::read_dir(path)
                .map_err(|e| TestkitError::io(format!("listing {}", path.display()), e))?;
            for entry in entries {
                let entry = entry
                    .map_err(|e| TestkitError::io(format!("listing {}", path.display()), e))?;
                self.chown_tree(&entry.path())?;
            }
        }
        Ok(())
    }

    /// Whether `path` already belongs to this identity.
    pub(crate) fn owns(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).is_ok_and(|m| m.uid() == self.uid && m.gid() == self.gid)
    }
}

/// The fields of `/proc/<pid>/stat` we use.
struct Stat {
    comm: String,
    state: char,
    ppid: i32,
    session: i32,
}

fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid pgrp session ..."; comm may hold spaces and parentheses.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let mut fields = text.get(close + 1..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let _pgrp = fields.next()?;
    let session = fields.next()?.parse().ok()?;
    Some(Stat {
        comm,
        state,
        ppid,
        session,
    })
}

/// Every process as (pid, stat).
fn all_processes() -> Vec<(i32, Stat)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, stat(pid)?)))
        .collect()
}

fn is_dead(state: char) -> bool {
    matches!(state, 'Z' | 'X' | 'x')
}

fn to_pid(pid: u32) -> Pid {
    Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX))
}

/// Whether `pid` has exited: gone, or a zombie waiting for its parent.
pub(crate) fn has_exited(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return true;
    };
    stat(pid).is_none_or(|s| is_dead(s.state))
}

/// The pids of all descendants of `pid` (children, their children, ...).
fn descendants(pid: u32) -> Vec<u32> {
    let procs = all_processes();
    let mut found: Vec<i32> = Vec::new();
    let mut frontier = vec![i32::try_from(pid).unwrap_or(-1)];
    while let Some(parent) = frontier.pop() {
        for (child, st) in &procs {
            if st.ppid == parent && !found.contains(child) {
                found.push(*child);
                frontier.push(*child);
            }
        }
    }
    found
        .into_iter()
        .filter_map(|p| u32::try_from(p).ok())
        .collect()
}

/// SIGKILLs the postmaster `pid` and all its descendants at once, like a crash.
///
/// PostgreSQL puts every child in a session (and process group) of its own, so a
/// process-group kill would reach the postmaster only; instead the postmaster is
/// stopped first (SIGSTOP: it can neither fork nor react), its descendants are killed,
/// then it is. Returns the descendants' pids, for [`wait_gone`].
pub(crate) fn kill_tree(pid: u32) -> Vec<u32> {
    signal(pid, Signal::SIGSTOP);
    let children = descendants(pid);
    for &child in &children {
        signal(child, Signal::SIGKILL);
    }
    signal(pid, Signal::SIGKILL);
    children
}

/// Waits (at most `bound`) until none of `pids` is alive, reaping orphaned postgres
/// processes handed to us meanwhile; returns whether they all went.
pub(crate) fn wait_gone(pids: &[u32], bound: Duration) -> bool {
    wait_until(bound, || {
        reap_orphaned_postgres();
        pids.iter().all(|&p| has_exited(p))
    })
}

/// Reaps zombie PostgreSQL processes whose parent is this process: children of a
/// postmaster that died, handed to us because we are child subreaper. Only processes
/// named `postgres` that lead their own session (as every postmaster child does) are
/// touched, so children this process spawned itself are left to their owners.
pub(crate) fn reap_orphaned_postgres() {
    let Ok(me) = i32::try_from(std::process::id()) else {
        return;
    };
    for (pid, st) in all_processes() {
        if st.ppid == me && is_dead(st.state) && st.session == pid && st.comm == "postgres" {
            let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
        }
    }
}

/// Sends `signal` to one process; a process that is already gone is not an error.
pub(crate) fn signal(pid: u32, signal: Signal) {
    let _ = kill(to_pid(pid), signal);
}

/// Polls `done` every few milliseconds until it returns true or `bound` passes.
pub(crate) fn wait_until(bound: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + bound;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Makes this process the child subreaper of its descendants (once per process), so the
/// backends of a postmaster that dies (kill9, a chaos test) are handed to us and reaped
/// by [`reap_orphaned_postgres`] rather than left as zombies when PID 1 does not reap.
pub(crate) fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = nix::sys::prctl::set_child_subreaper(true);
    });
}

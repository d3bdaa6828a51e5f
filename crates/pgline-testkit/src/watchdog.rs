//! The per-server watchdog: a small `sh` process that is the postmaster's parent and
//! cleans up when the test process goes away.
//!
//! The test process holds the write end of the watchdog's stdin. Commands are lines:
//! `start <port>` starts the postmaster (in its own session, away from the terminal's
//! Ctrl-C) and answers `pid <n>`; `reap` waits for a
//! postmaster the test process has already seen exit, and answers `reaped <status>`.
//! When stdin reaches end-of-file, because the owning [`crate::PgServer`] was dropped or
//! because the test process exited, panicked with `panic = "abort"`, called
//! `std::process::exit`, or was killed, the watchdog stops the postmaster (SIGINT, then
//! after 10 s SIGSTOP and SIGKILL to it and its children), waits for it, removes the
//! server folder and exits. This covers servers held in `static`s, which are never dropped.
//!
//! Being the postmaster's parent matters on machines whose PID 1 does not reap orphans:
//! the watchdog reaps the postmaster itself, so no `postgres` zombie is left behind.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use crate::TestkitError;
use crate::procs::{self, RunAs};

/// `$1` = server folder, `$2` = log file, the rest = the postgres command without `-p`.
const SCRIPT: &str = r#"
dir=$1; log=$2; shift 2
pid=
trap '' INT HUP PIPE
kill_tree() {
  kill -STOP "$1" 2>/dev/null
  for f in /proc/[0-9]*/stat; do
    { read -r l < "$f"; } 2>/dev/null || continue
    r=${l##*) }; r=${r#* }
    if [ "${r%% *}" = "$1" ]; then c=${f#/proc/}; kill -9 "${c%/stat}" 2>/dev/null; fi
  done
  kill -9 "$1" 2>/dev/null
}
alive() {
  [ -n "$1" ] || return 1
  { read -r st < "/proc/$1/stat"; } 2>/dev/null || return 1
  st=${st##*) }
  case $st in Z*|X*|x*) return 1 ;; esac
  return 0
}
while IFS=' ' read -r cmd arg; do
  case $cmd in
    start)
      setsid "$@" -p "$arg" </dev/null >>"$log" 2>&1 &
      pid=$!
      echo "pid $pid" ;;
    reap)
      if [ -n "$pid" ]; then wait "$pid" 2>/dev/null; st=$?; else st=0; fi
      pid=
      echo "reaped $st" ;;
    *)
      echo "unknown $cmd" ;;
  esac
done
if [ -n "$pid" ]; then
  kill -2 "$pid" 2>/dev/null
  i=0
  while alive "$pid" && [ "$i" -lt 500 ]; do sleep 0.02; i=$((i+1)); done
  if alive "$pid"; then kill_tree "$pid"; fi
  wait "$pid" 2>/dev/null
fi
rm -rf -- "$dir"
"#;

/// A running watchdog process and its two pipes.
pub(crate) struct Watchdog {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Watchdog {
    /// Spawns the watchdog for the server folder `dir`; `postgres` is the postmaster's
    /// command line without the port.
    pub(crate) fn spawn(
        dir: &Path,
        log: &Path,
        postgres: &[OsString],
        run_as: Option<RunAs>,
    ) -> Result<Watchdog, TestkitError> {
        use std::os::unix::process::CommandExt;

        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(SCRIPT)
            .arg("pgline-testkit-watchdog")
            .arg(dir)
            .arg(log)
            .args(postgres)
            .env("LC_ALL", "C")
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Its own process group: a terminal's Ctrl-C, or nextest killing the test's
            // process group on a timeout, must not take the watchdog down with the test.
            .process_group(0);
        if let Some(who) = run_as {
            cmd.uid(who.uid).gid(who.gid);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| TestkitError::io("spawning the watchdog (/bin/sh)", e))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| TestkitError::Internal("watchdog without stdout".into()))?;
        Ok(Watchdog {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        })
    }

    fn request(&mut self, line: &str) -> Result<String, TestkitError> {
        let lost = |e: std::io::Error| TestkitError::io("talking to the watchdog", e);
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| TestkitError::Internal("watchdog already closed".into()))?;
        stdin.write_all(line.as_bytes()).map_err(lost)?;
        stdin.write_all(b"\n").map_err(lost)?;
        stdin.flush().map_err(lost)?;
        let mut answer = String::new();
        let n = self.stdout.read_line(&mut answer).map_err(lost)?;
        if n == 0 {
            return Err(TestkitError::Internal(
                "the watchdog exited unexpectedly".into(),
            ));
        }
        Ok(answer.trim().to_owned())
    }

    /// Starts the postmaster on `port`; returns its pid.
    pub(crate) fn start(&mut self, port: u16) -> Result<u32, TestkitError> {
        let answer = self.request(&format!("start {port}"))?;
        answer
            .strip_prefix("pid ")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| TestkitError::Internal(format!("watchdog answered `{answer}`")))
    }

    /// Reaps the postmaster once it has exited (returns at once if it has).
    pub(crate) fn reap(&mut self) -> Result<(), TestkitError> {
        let answer = self.request("reap")?;
        if answer.starts_with("reaped") {
            Ok(())
        } else {
            Err(TestkitError::Internal(format!(
                "watchdog answered `{answer}`"
            )))
        }
    }

    /// Closes stdin (the watchdog then stops whatever still runs and removes the folder)
    /// and waits for it to exit, killing it after `bound`.
    pub(crate) fn finish(mut self, bound: Duration) {
        drop(self.stdin.take());
        let child = &mut self.child;
        let exited = procs::wait_until(bound, || matches!(child.try_wait(), Ok(Some(_))));
        if !exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

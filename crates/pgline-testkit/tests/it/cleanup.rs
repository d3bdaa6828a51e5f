//! Nothing outlives a server: not on drop, not on panic, not when the test process
//! exits without dropping it or is killed.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use pgline_testkit::PgServer;

use crate::support::{assert_all_gone, eventually};

const CHILD_MODE: &str = "PGLINE_TESTKIT_IT_CHILD_MODE";
const CHILD_OUT: &str = "PGLINE_TESTKIT_IT_CHILD_OUT";

#[tokio::test]
async fn drop_removes_folder_and_processes() {
    let server = PgServer::start().await.expect("start postgres");
    let data_dir = server.data_dir().to_path_buf();
    let pid = server.pid();
    assert!(data_dir.exists());
    drop(server);
    // Drop is synchronous: everything is gone when it returns.
    assert_all_gone(&data_dir, pid, Duration::ZERO);
}

#[test]
fn panic_in_a_test_still_cleans_up() {
    let (tx, rx) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let server = PgServer::start_blocking().expect("start postgres");
        tx.send((server.data_dir().to_path_buf(), server.pid()))
            .unwrap();
        panic!("deliberate panic while holding a server");
    })
    .join();
    assert!(outcome.is_err());
    let (data_dir, pid) = rx.recv().unwrap();
    assert_all_gone(&data_dir, pid, Duration::ZERO);
}

/// Not a test of its own: the body of the child processes started below. Without the
/// environment variable it does nothing.
#[test]
fn child_process_body() {
    let Ok(mode) = std::env::var(CHILD_MODE) else {
        return;
    };
    let out = PathBuf::from(std::env::var_os(CHILD_OUT).expect("child output path"));
    let server = PgServer::shared();
    server
        .execute_blocking("CREATE TABLE alive (x int)")
        .expect("query the shared server");
    let pid = server.pid().expect("running");
    let tmp = out.with_extension("tmp");
    std::fs::write(&tmp, format!("{}\n{pid}\n", server.data_dir().display())).unwrap();
    std::fs::rename(&tmp, &out).unwrap();
    match mode.as_str() {
        "exit" => std::process::exit(0),
        _ => loop {
            std::thread::sleep(Duration::from_secs(1));
        },
    }
}

/// Starts this test binary again running only `child_process_body` in `mode`; returns
/// the child and the file it reports to.
fn spawn_child(mode: &str, dir: &tempfile::TempDir) -> (std::process::Child, PathBuf) {
    let out = dir.path().join("report");
    let log = std::fs::File::create(dir.path().join("child.log")).expect("child log");
    let child = Command::new(std::env::current_exe().expect("current test binary"))
        .args([
            "cleanup::child_process_body",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_MODE, mode)
        .env(CHILD_OUT, &out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn the child test process");
    (child, out)
}

fn read_report(out: &std::path::Path, dir: &tempfile::TempDir) -> (PathBuf, u32) {
    let text = std::fs::read_to_string(out).unwrap_or_else(|e| {
        let log = std::fs::read_to_string(dir.path().join("child.log")).unwrap_or_default();
        panic!("the child reported nothing ({e}); its stderr:\n{log}")
    });
    let mut lines = text.lines();
    let data_dir = PathBuf::from(lines.next().expect("data dir line"));
    let pid = lines.next().and_then(|l| l.parse().ok()).expect("pid line");
    (data_dir, pid)
}

#[test]
fn child_that_exits_without_dropping_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, out) = spawn_child("exit", &dir);
    let exited = eventually(Duration::from_secs(60), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    assert!(exited, "the child did not exit");
    let (data_dir, pid) = read_report(&out, &dir);
    assert_all_gone(&data_dir, Some(pid), Duration::from_secs(15));
}

#[test]
fn child_killed_with_sigkill_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, out) = spawn_child("sleep", &dir);
    let reported = eventually(Duration::from_secs(60), || {
        out.exists() || matches!(child.try_wait(), Ok(Some(_)))
    });
    assert!(reported && out.exists(), "the child did not report");
    let (data_dir, pid) = read_report(&out, &dir);
    assert!(crate::support::is_running(pid));
    child.kill().unwrap(); // SIGKILL: no destructor, no atexit, nothing runs
    child.wait().unwrap();
    assert_all_gone(&data_dir, Some(pid), Duration::from_secs(15));
}

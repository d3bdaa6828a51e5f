//! stop, kill9 and restart.

use std::time::Duration;

use pgline_testkit::PgServer;

use crate::support::{is_running, processes_mentioning};

#[tokio::test]
async fn stop_and_restart_keep_data_and_port() {
    let server = PgServer::start().await.expect("start postgres");
    let port = server.port();
    server
        .execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (1), (2), (3)")
        .await
        .unwrap();
    let pid = server.pid().expect("running");

    server.stop().await.unwrap();
    assert!(server.pid().is_none());
    assert!(!is_running(pid));
    assert!(server.connect("postgres").await.is_err());
    server.stop().await.unwrap(); // stopping twice is fine
    assert!(server.data_dir().join("PG_VERSION").exists());

    server.restart().await.unwrap();
    assert_eq!(server.port(), port);
    assert_ne!(server.pid(), Some(pid));
    assert_eq!(
        server
            .query_scalar_i64("SELECT count(*) FROM kept")
            .await
            .unwrap(),
        3
    );

    // restart on a running server stops it first.
    server.restart().await.unwrap();
    assert_eq!(
        server
            .query_scalar_i64("SELECT sum(x) FROM kept")
            .await
            .unwrap(),
        6
    );
}

#[tokio::test]
async fn kill9_and_restart() {
    let server = PgServer::start().await.expect("start postgres");
    let port = server.port();
    server
        .execute("CREATE TABLE survived (x int); INSERT INTO survived VALUES (42)")
        .await
        .unwrap();
    // With synchronous_commit=off the commit may still sit in WAL buffers; a checkpoint
    // (after the commit, so not in the same batch) makes it survive SIGKILL.
    server.execute("CHECKPOINT").await.unwrap();
    // Hold a few backends open so there are children to kill.
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(server.connect("postgres").await.unwrap());
    }
    let pid = server.pid().expect("running");
    let needle = server.data_dir().to_string_lossy().into_owned();
    // Backends and auxiliary processes (checkpointer, walwriter, ...): PostgreSQL puts
    // each in a session of its own, so they must be found by parent, not by group.
    let children = children_of(pid);
    assert!(children.len() >= 6, "children of {pid}: {children:?}");

    server.kill9().await.unwrap();
    assert!(server.pid().is_none());
    assert!(!is_running(pid), "postmaster {pid} still runs");
    // No postmaster is left, and no child (their command lines do not name the data
    // folder, so they are checked by pid).
    let remaining = processes_mentioning(&needle);
    assert!(
        remaining
            .iter()
            .all(|p| p.contains("pgline-testkit-watchdog")),
        "{remaining:?}"
    );
    let survivors: Vec<u32> = children
        .iter()
        .copied()
        .filter(|&c| is_running(c))
        .collect();
    assert!(
        survivors.is_empty(),
        "children of {pid} survived: {survivors:?}"
    );
    for client in &clients {
        assert!(client.simple_query("SELECT 1").await.is_err());
    }

    server.restart().await.unwrap();
    assert_eq!(server.port(), port);
    assert_eq!(
        server
            .query_scalar_i64("SELECT x FROM survived")
            .await
            .unwrap(),
        42
    );
    let log = server.log_tail(200);
    assert!(
        log.contains("not properly shut down") || log.contains("was interrupted"),
        "no crash recovery in the log:\n{log}"
    );
    server.kill9().await.unwrap();
    server.kill9().await.unwrap(); // killing a stopped server is fine
    drop(server);
    crate::support::eventually(Duration::from_secs(5), || !is_running(pid));
}

/// The pids of the processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let child: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 1..];
            let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == pid).then_some(child)
        })
        .collect()
}

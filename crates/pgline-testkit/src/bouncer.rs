//! [`PgBouncer`]: a throwaway PgBouncer in transaction pooling mode in front of a
//! throwaway [`PgServer`].

use std::ffi::OsString;
use std::fmt;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio_postgres::{Config, NoTls, SimpleQueryMessage};

use crate::procs::{self, RunAs};
use crate::watchdog::Watchdog;
use crate::{PgServer, TestkitError, rt, template};

/// Names the `pgbouncer` binary to use (skips the search).
pub const PGBOUNCER_BIN_ENV: &str = "PGLINE_TESTKIT_PGBOUNCER";

const HOST: &str = "127.0.0.1";
const USER: &str = "postgres";
/// How long PgBouncer may take to stop after SIGTERM before it gets SIGKILL.
const STOP_BOUND: Duration = Duration::from_secs(5);

/// Configures and starts a [`PgBouncer`]; get one from [`PgBouncer::builder`].
#[derive(Debug, Clone)]
pub struct PgBouncerBuilder {
    pool_mode: String,
    default_pool_size: u32,
    max_client_conn: u32,
    users: Vec<String>,
    settings: Vec<(String, String)>,
    startup_timeout: Duration,
}

impl Default for PgBouncerBuilder {
    fn default() -> Self {
        Self {
            pool_mode: "transaction".to_owned(),
            default_pool_size: 20,
            max_client_conn: 1000,
            users: vec![USER.to_owned()],
            settings: Vec::new(),
            startup_timeout: Duration::from_secs(30),
        }
    }
}

impl PgBouncerBuilder {
    /// `pool_mode`: `transaction` (the default), `session` or `statement`.
    #[must_use]
    pub fn pool_mode(mut self, mode: impl Into<String>) -> Self {
        self.pool_mode = mode.into();
        self
    }

    /// Server connections per user and database pair (`default_pool_size`, default 20).
    #[must_use]
    pub fn default_pool_size(mut self, n: u32) -> Self {
        self.default_pool_size = n;
        self
    }

    /// Client connections PgBouncer accepts (`max_client_conn`, default 1000).
    #[must_use]
    pub fn max_client_conn(mut self, n: u32) -> Self {
        self.max_client_conn = n;
        self
    }

    /// Lets another role log in through PgBouncer (`postgres` always may). The role
    /// must exist on the server; authentication is `trust` on 127.0.0.1, as the
    /// testkit's servers do it.
    #[must_use]
    pub fn user(mut self, name: impl Into<String>) -> Self {
        self.users.push(name.into());
        self
    }

    /// Adds a `[pgbouncer]` setting; later entries win over the built-in ones.
    #[must_use]
    pub fn setting(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((key.into(), value.into()));
        self
    }

    /// How long to wait for PgBouncer to answer queries (default 30 s).
    #[must_use]
    pub fn startup_timeout(mut self, bound: Duration) -> Self {
        self.startup_timeout = bound;
        self
    }

    /// Starts PgBouncer in front of `server`. Needs a Tokio runtime (the start runs
    /// on a blocking thread); see [`start_blocking`](Self::start_blocking) otherwise.
    pub async fn start(self, server: &PgServer) -> Result<PgBouncer, TestkitError> {
        let port = server.port();
        tokio::task::spawn_blocking(move || self.start_for_port(port))
            .await
            .map_err(|e| TestkitError::Internal(format!("pgbouncer start task failed: {e}")))?
    }

    /// Starts PgBouncer in front of `server` from synchronous code.
    pub fn start_blocking(self, server: &PgServer) -> Result<PgBouncer, TestkitError> {
        self.start_for_port(server.port())
    }

    fn start_for_port(self, server_port: u16) -> Result<PgBouncer, TestkitError> {
        let program = find_pgbouncer()?;
        let run_as = RunAs::detect()?;
        procs::become_subreaper();
        let root = tempfile::Builder::new()
            .prefix("pgline-testkit-pgbouncer-")
            .tempdir_in(template::base_dir())
            .map_err(|e| TestkitError::io("creating the pgbouncer folder", e))?
            .keep();
        // From here on, dropping `bouncer` stops whatever runs and removes `root`.
        let mut bouncer = PgBouncer {
            log_path: root.join("pgbouncer.log"),
            ini_path: root.join("pgbouncer.ini"),
            root,
            port: 0,
            server_port,
            state: Mutex::new(BouncerState {
                watchdog: None,
                pid: None,
            }),
        };
        let mut last_error = None;
        for _attempt in 0..8 {
            let port = free_port()?;
            bouncer.port = port;
            self.write_files(&bouncer, run_as)?;
            let args: Vec<OsString> = vec![
                // The watchdog appends `-p <port>`; the port is in the ini file.
                "/bin/sh".into(),
                "-c".into(),
                "exec \"$0\" \"$1\"".into(),
                program.clone().into(),
                bouncer.ini_path.clone().into(),
            ];
            let mut state = bouncer.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.watchdog.is_none() {
                state.watchdog = Some(Watchdog::spawn(
                    &bouncer.root,
                    &bouncer.log_path,
                    &args,
                    run_as,
                )?);
            }
            let log_start = std::fs::metadata(&bouncer.log_path).map_or(0, |m| m.len());
            let watchdog = state
                .watchdog
                .as_mut()
                .ok_or_else(|| TestkitError::Internal("no watchdog".into()))?;
            let pid = watchdog.start(port)?;
            state.pid = Some(pid);
            match wait_ready(pid, port, self.startup_timeout) {
                Ok(()) => {
                    drop(state);
                    return Ok(bouncer);
                }
                Err(reason) => {
                    halt(&mut state);
                    let log = bouncer.log_since(log_start);
                    let port_taken = log.contains("Address already in use");
                    let error = TestkitError::Command {
                        program: format!("pgbouncer {}", bouncer.ini_path.display()),
                        status: reason,
                        output: tail(&log, 30),
                    };
                    if !port_taken {
                        return Err(error);
                    }
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| TestkitError::Internal("no pgbouncer start".into())))
    }

    fn write_files(&self, bouncer: &PgBouncer, run_as: Option<RunAs>) -> Result<(), TestkitError> {
        let userlist = bouncer.root.join("userlist.txt");
        let users: String = self
            .users
            .iter()
            .map(|u| format!("\"{}\" \"\"\n", u.replace('"', "\"\"")))
            .collect();
        write(&userlist, &users)?;
        let mut settings: Vec<(String, String)> = [
            ("listen_addr", HOST.to_owned()),
            ("listen_port", bouncer.port.to_string()),
            ("unix_socket_dir", String::new()),
            ("auth_type", "trust".to_owned()),
            ("auth_file", userlist.display().to_string()),
            ("pool_mode", self.pool_mode.clone()),
            ("default_pool_size", self.default_pool_size.to_string()),
            ("max_client_conn", self.max_client_conn.to_string()),
            // tokio-postgres sends `options` (pgline's statement_timeout); PgBouncer
            // refuses unknown startup parameters unless told to ignore them.
            (
                "ignore_startup_parameters",
                "extra_float_digits,options".to_owned(),
            ),
            ("server_login_retry", "1".to_owned()),
            ("log_connections", "0".to_owned()),
            ("log_disconnections", "0".to_owned()),
            ("admin_users", USER.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (key, value) in &self.settings {
            settings.retain(|(k, _)| k != key);
            settings.push((key.clone(), value.clone()));
        }
        let mut ini = format!(
            "[databases]\n* = host={HOST} port={}\n\n[pgbouncer]\n",
            bouncer.server_port
        );
        for (key, value) in settings {
            ini.push_str(&format!("{key} = {value}\n"));
        }
        write(&bouncer.ini_path, &ini)?;
        if !bouncer.log_path.exists() {
            write(&bouncer.log_path, "")?;
        }
        if let Some(who) = run_as {
            who.chown_tree(&bouncer.root)?;
        }
        Ok(())
    }
}

/// A throwaway PgBouncer on a free port of 127.0.0.1, in front of a [`PgServer`].
///
/// Pool mode `transaction` unless the builder says otherwise; `trust`
/// authentication for `postgres` (and the roles added with
/// [`PgBouncerBuilder::user`]); the startup parameter `options` is ignored (so
/// a client's `-c statement_timeout=…` does not reach the server: set such
/// settings on the role). Runs as the `postgres` OS user when the test runs as
/// root. Dropping it stops PgBouncer (SIGTERM, then SIGKILL) and removes its
/// folder; a watchdog process does the same when the test process dies.
///
/// When the `pgbouncer` binary is missing, starting fails with a message that
/// says how to install it (`apt-get install pgbouncer`).
///
/// ```no_run
/// # async fn demo() -> Result<(), pgline_testkit::TestkitError> {
/// use pgline_testkit::{PgBouncer, PgServer};
///
/// let server = PgServer::start().await?;
/// let bouncer = PgBouncer::start(&server).await?;
/// let client = bouncer.connect("postgres").await?;
/// let rows = client.simple_query("SELECT 1").await.expect("query");
/// # Ok(()) }
/// ```
pub struct PgBouncer {
    root: PathBuf,
    ini_path: PathBuf,
    log_path: PathBuf,
    port: u16,
    server_port: u16,
    state: Mutex<BouncerState>,
}

struct BouncerState {
    watchdog: Option<Watchdog>,
    pid: Option<u32>,
}

impl fmt::Debug for PgBouncer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgBouncer")
            .field("port", &self.port)
            .field("server_port", &self.server_port)
            .field("root", &self.root)
            .finish()
    }
}

impl PgBouncer {
    /// A builder for a PgBouncer with non-default settings.
    pub fn builder() -> PgBouncerBuilder {
        PgBouncerBuilder::default()
    }

    /// Starts PgBouncer in transaction pooling mode in front of `server`.
    pub async fn start(server: &PgServer) -> Result<PgBouncer, TestkitError> {
        Self::builder().start(server).await
    }

    /// The host to connect to: `"127.0.0.1"`.
    pub fn host(&self) -> &str {
        HOST
    }

    /// PgBouncer's TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for `dbname` through PgBouncer:
    /// `postgres://postgres@127.0.0.1:PORT/dbname`.
    pub fn url(&self, dbname: &str) -> String {
        format!("postgres://{USER}@{HOST}:{}/{dbname}", self.port)
    }

    /// Connection settings for `dbname` through PgBouncer (user `postgres`).
    pub fn config(&self, dbname: &str) -> Config {
        crate::server::config_for(self.port, dbname)
    }

    /// Opens a connection to `dbname` through PgBouncer; the connection is driven by
    /// a task spawned on the current Tokio runtime.
    pub async fn connect(&self, dbname: &str) -> Result<tokio_postgres::Client, TestkitError> {
        let (client, connection) = self.config(dbname).connect(NoTls).await.map_err(|e| {
            TestkitError::db(
                format!("connecting through pgbouncer on port {}", self.port),
                e,
            )
        })?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// The generated `pgbouncer.ini`.
    pub fn ini_path(&self) -> &Path {
        &self.ini_path
    }

    /// PgBouncer's log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of PgBouncer's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_since(0), lines)
    }

    /// PgBouncer's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pid
    }

    fn log_since(&self, offset: u64) -> String {
        let bytes = std::fs::read(&self.log_path).unwrap_or_default();
        let start = usize::try_from(offset).unwrap_or(0).min(bytes.len());
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        halt(state);
        let _ = std::fs::remove_dir_all(&self.root);
        if let Some(watchdog) = state.watchdog.take() {
            watchdog.finish(STOP_BOUND);
        }
    }
}

/// Stops PgBouncer at once (SIGTERM: immediate shutdown), then SIGKILL.
fn halt(state: &mut BouncerState) {
    let Some(pid) = state.pid.take() else {
        return;
    };
    procs::signal(pid, Signal::SIGTERM);
    if !procs::wait_until(STOP_BOUND, || procs::has_exited(pid)) {
        procs::signal(pid, Signal::SIGKILL);
        procs::wait_until(STOP_BOUND, || procs::has_exited(pid));
    }
    if let Some(watchdog) = state.watchdog.as_mut() {
        let _ = watchdog.reap();
    }
}

/// Waits until PgBouncer answers `SELECT 1` (which also opens a server connection).
fn wait_ready(pid: u32, port: u16, bound: Duration) -> Result<(), String> {
    let deadline = Instant::now() + bound;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut last = String::from("no answer");
    loop {
        if procs::has_exited(pid) {
            return Err(format!("exited during startup ({last})"));
        }
        if Instant::now() >= deadline {
            return Err(format!("did not answer within {bound:?} ({last})"));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(250)).is_ok() {
            let mut config = Config::new();
            config
                .host(HOST)
                .port(port)
                .user(USER)
                .dbname("postgres")
                .connect_timeout(Duration::from_secs(2));
            match rt::block_on(select_one(config)) {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => last = e,
                Err(e) => last = e.to_string(),
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn select_one(config: Config) -> Result<(), String> {
    let attempt = async move {
        let (client, connection) = config.connect(NoTls).await.map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let rows = client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| e.to_string())?;
        if rows.iter().any(|m| matches!(m, SimpleQueryMessage::Row(_))) {
            Ok(())
        } else {
            Err("SELECT 1 returned no row".to_owned())
        }
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .unwrap_or_else(|_| Err("SELECT 1 timed out".to_owned()))
}

/// `$PGLINE_TESTKIT_PGBOUNCER`, then `PATH`, then `/usr/sbin/pgbouncer`.
fn find_pgbouncer() -> Result<PathBuf, TestkitError> {
    let mut searched = Vec::new();
    if let Some(explicit) = std::env::var_os(PGBOUNCER_BIN_ENV) {
        let path = PathBuf::from(explicit);
        if path.is_file() {
            return Ok(path);
        }
        searched.push(format!("{PGBOUNCER_BIN_ENV}={}", path.display()));
    }
    let path_dirs = std::env::var_os("PATH").unwrap_or_default();
    let candidates = std::env::split_paths(&path_dirs)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("pgbouncer"));
    for candidate in candidates {
        if candidate.is_file() {
            return Ok(candidate);
        }
        searched.push(candidate.display().to_string());
    }
    Err(TestkitError::PgBouncerNotFound {
        searched: searched.join(", "),
    })
}

fn free_port() -> Result<u16, TestkitError> {
    let listener = TcpListener::bind((HOST, 0))
        .map_err(|e| TestkitError::io("binding 127.0.0.1:0 to find a free port", e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| TestkitError::io("reading the free port", e))
}

fn write(path: &Path, text: &str) -> Result<(), TestkitError> {
    std::fs::write(path, text)
        .map_err(|e| TestkitError::io(format!("writing {}", path.display()), e))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_pgbouncer_says_how_to_install_it() {
        let error = TestkitError::PgBouncerNotFound {
            searched: "/usr/sbin/pgbouncer".into(),
        };
        let message = error.to_string();
        assert!(
            message.contains("apt-get update && apt-get install -y pgbouncer"),
            "{message}"
        );
        assert!(message.contains(PGBOUNCER_BIN_ENV), "{message}");
    }
}

//! [`PgServer`]: one throwaway PostgreSQL server, and its builder.

use std::ffi::OsString;
use std::fmt;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio_postgres::{Client, Config, NoTls, SimpleQueryMessage};

use crate::TestkitError;
use crate::bins;
use crate::procs::{self, RunAs};
use crate::rt;
use crate::template;
use crate::watchdog::Watchdog;

/// The address every server listens on.
const HOST: &str = "127.0.0.1";
/// The superuser `initdb` creates; authentication is `trust`.
const USER: &str = "postgres";
/// How long a fast shutdown (SIGINT) may take before the server gets SIGKILL.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(10);
/// How long to wait for processes to vanish after SIGKILL.
const KILL_BOUND: Duration = Duration::from_secs(5);

/// Settings every server gets; [`PgServerBuilder::config`] entries come later and win.
const BASE_SETTINGS: &[(&str, &str)] = &[
    ("listen_addresses", HOST),
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("huge_pages", "off"),
    // Dynamic shared memory as files in the data folder: a killed server leaves no
    // segments in /dev/shm, and the folder goes on drop. (Servers live on tmpfs when
    // /dev/shm has room, so this costs nothing.)
    ("dynamic_shared_memory_type", "mmap"),
    ("logging_collector", "off"),
];

/// Configures and starts a [`PgServer`]; get one from [`PgServer::builder`].
///
/// ```no_run
/// # async fn demo() -> Result<(), pgline_testkit::TestkitError> {
/// use pgline_testkit::PgServer;
///
/// let server = PgServer::builder()
///     .max_connections(20)
///     .config("idle_session_timeout", "5s")
///     .start()
///     .await?;
/// assert_eq!(server.query_scalar_i64("SHOW max_connections").await?, 20);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PgServerBuilder {
    max_connections: u32,
    config: Vec<(String, String)>,
    bin_dir: Option<PathBuf>,
    startup_timeout: Duration,
    /// Port of a primary to clone with `pg_basebackup -R` instead of the template.
    standby_of: Option<u16>,
}

impl Default for PgServerBuilder {
    fn default() -> Self {
        Self {
            max_connections: 200,
            config: Vec::new(),
            bin_dir: None,
            startup_timeout: Duration::from_secs(30),
            standby_of: None,
        }
    }
}

impl PgServerBuilder {
    /// Sets `max_connections` (default 200).
    #[must_use]
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// Adds a server setting, passed as `-c key=value` after the defaults, so it can
    /// override them (for example `.config("fsync", "on")`). May be called many times.
    #[must_use]
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.push((key.into(), value.into()));
        self
    }

    /// Uses the `initdb` and `postgres` binaries in `dir` only, instead of searching
    /// `$PGLINE_TESTKIT_PG_BIN`, `PATH` and `/usr/lib/postgresql/*/bin`.
    #[must_use]
    pub fn bin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.bin_dir = Some(dir.into());
        self
    }

    /// How long to wait for the server to accept connections (default 30 s); past it,
    /// start fails with [`TestkitError::StartTimeout`] and the log tail.
    #[must_use]
    pub fn startup_timeout(mut self, bound: Duration) -> Self {
        self.startup_timeout = bound;
        self
    }

    /// Starts the server. Needs a Tokio runtime (the work runs on its blocking pool).
    pub async fn start(self) -> Result<PgServer, TestkitError> {
        tokio::task::spawn_blocking(move || self.start_blocking())
            .await
            .map_err(|e| TestkitError::Internal(format!("server start task failed: {e}")))?
    }

    /// Makes the server a hot standby of the server on `primary_port`: its data
    /// folder is a `pg_basebackup -R` of that primary (streaming replication),
    /// not the template. Prefer [`PgServer::start_standby`].
    #[must_use]
    pub fn standby_of(mut self, primary_port: u16) -> Self {
        self.standby_of = Some(primary_port);
        self
    }

    /// Starts the server from synchronous code; needs no runtime.
    pub fn start_blocking(self) -> Result<PgServer, TestkitError> {
        let mut trace = Trace::new();
        let bins = bins::find(self.bin_dir.as_deref())?;
        let run_as = RunAs::detect()?;
        procs::become_subreaper();
        trace.phase("find binaries");
        let template_data = template::ensure(&bins, run_as)?;
        trace.phase("template");

        let root = tempfile::Builder::new()
            .prefix("pgline-testkit-")
            .tempdir_in(template::base_dir())
            .map_err(|e| TestkitError::io("creating the server folder", e))?
            .keep();
        // From here on, dropping `inner` stops whatever runs and removes `root`.
        let mut inner = Inner {
            data_dir: root.join("data"),
            socket_dir: root.join("sock"),
            log_path: root.join("postgres.log"),
            root,
            startup_timeout: self.startup_timeout,
            state: Mutex::new(State {
                watchdog: None,
                pid: None,
                port: 0,
            }),
        };
        inner.prepare(&self, &bins, run_as, &template_data)?;
        trace.phase("copy template");
        let port = {
            let mut state = inner.lock();
            inner.launch(&mut state, None)?;
            state.port
        };
        trace.phase("postgres ready");
        trace.finish(&inner.data_dir);
        Ok(PgServer {
            inner: Arc::new(inner),
            port,
        })
    }
}

/// Phase timings of a start, printed to stderr when `PGLINE_TESTKIT_TRACE` is set.
struct Trace {
    on: bool,
    started: Instant,
    last: Instant,
    phases: Vec<(&'static str, Duration)>,
}

impl Trace {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            on: std::env::var_os("PGLINE_TESTKIT_TRACE").is_some(),
            started: now,
            last: now,
            phases: Vec::new(),
        }
    }

    fn phase(&mut self, name: &'static str) {
        let now = Instant::now();
        self.phases.push((name, now - self.last));
        self.last = now;
    }

    fn finish(&self, data_dir: &Path) {
        if self.on {
            let phases: Vec<String> = self
                .phases
                .iter()
                .map(|(name, took)| format!("{name} {took:.1?}"))
                .collect();
            eprintln!(
                "pgline-testkit: started {} in {:.1?} ({})",
                data_dir.display(),
                self.started.elapsed(),
                phases.join(", ")
            );
        }
    }
}

/// A throwaway PostgreSQL server on 127.0.0.1, owned by the test that started it.
///
/// It runs `postgres` from this machine on a free port with a copy of a cached `initdb`
/// template in a temporary folder, durability off (`fsync`, `synchronous_commit`,
/// `full_page_writes`), `trust` authentication for the superuser `postgres`, and the
/// log in `postgres.log` beside the data folder.
///
/// Dropping it stops the server (fast shutdown, SIGKILL after 10 s) and removes the
/// folder, also while a test unwinds from a panic. If the test process ends without
/// dropping it (a `static`, `std::process::exit`, SIGKILL), a watchdog process does the
/// same within moments, so no `postgres` outlives the test process.
///
/// `PgServer` is `Send + Sync`; share it by reference or in an `Arc`.
pub struct PgServer {
    inner: Arc<Inner>,
    port: u16,
}

impl fmt::Debug for PgServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgServer")
            .field("port", &self.port)
            .field("data_dir", &self.inner.data_dir)
            .field("pid", &self.pid())
            .finish()
    }
}

struct Inner {
    root: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_path: PathBuf,
    startup_timeout: Duration,
    state: Mutex<State>,
}

struct State {
    watchdog: Option<Watchdog>,
    /// The postmaster's pid while it runs.
    pid: Option<u32>,
    port: u16,
}

enum Readiness {
    Ready,
    Exited,
    TimedOut,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Halt {
    Graceful,
    Kill,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lays out the server folder and spawns the watchdog.
    fn prepare(
        &mut self,
        builder: &PgServerBuilder,
        bins: &bins::Binaries,
        run_as: Option<RunAs>,
        template_data: &Path,
    ) -> Result<(), TestkitError> {
        if let Some(who) = run_as {
            who.chown(&self.root)?;
        }
        std::fs::create_dir(&self.socket_dir)
            .map_err(|e| TestkitError::io(format!("creating {}", self.socket_dir.display()), e))?;
        std::fs::File::create(&self.log_path)
            .map_err(|e| TestkitError::io(format!("creating {}", self.log_path.display()), e))?;
        if let Some(who) = run_as {
            who.chown(&self.socket_dir)?;
            who.chown(&self.log_path)?;
        }

        let mut args: Vec<OsString> = vec![
            bins.postgres.clone().into(),
            "-D".into(),
            self.data_dir.clone().into(),
            "-k".into(),
            self.socket_dir.clone().into(),
        ];
        let max_connections = builder.max_connections.to_string();
        let settings = BASE_SETTINGS
            .iter()
            .map(|&(k, v)| (k, v))
            .chain([("max_connections", max_connections.as_str())])
            .chain(builder.config.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        for (key, value) in settings {
            args.push("-c".into());
            args.push(format!("{key}={value}").into());
        }
        let watchdog = Watchdog::spawn(&self.root, &self.log_path, &args, run_as)?;
        self.state
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .watchdog = Some(watchdog);

        match builder.standby_of {
            None => template::copy_to(template_data, &self.data_dir, run_as),
            Some(primary_port) => base_backup(bins, primary_port, &self.data_dir, run_as),
        }
    }

    /// Starts the postmaster and waits until it answers queries. `fixed_port: None`
    /// picks a free port (and retries with another if someone takes it meanwhile).
    fn launch(&self, state: &mut State, fixed_port: Option<u16>) -> Result<(), TestkitError> {
        let attempts = if fixed_port.is_some() { 20 } else { 8 };
        let mut last_error = None;
        for attempt in 1..=attempts {
            let port = match fixed_port {
                Some(port) => port,
                None => free_port()?,
            };
            let log_start = std::fs::metadata(&self.log_path).map_or(0, |m| m.len());
            let watchdog = state
                .watchdog
                .as_mut()
                .ok_or_else(|| TestkitError::Internal("no watchdog".into()))?;
            let pid = watchdog.start(port)?;
            state.pid = Some(pid);
            state.port = port;
            match self.wait_ready(pid, port) {
                Readiness::Ready => return Ok(()),
                Readiness::TimedOut => {
                    self.halt(state, Halt::Kill);
                    return Err(TestkitError::StartTimeout {
                        timeout: self.startup_timeout,
                        data_dir: self.data_dir.clone(),
                        log_tail: self.log_tail(30),
                    });
                }
                Readiness::Exited => {
                    self.halt(state, Halt::Kill);
                    let log = self.log_since(log_start);
                    let error = TestkitError::StartFailed {
                        data_dir: self.data_dir.clone(),
                        log_tail: tail(&log, 30),
                    };
                    let port_taken = log.contains("could not bind")
                        || log.contains("could not create any TCP/IP sockets");
                    if !port_taken || attempt == attempts {
                        return Err(error);
                    }
                    last_error = Some(error);
                    if fixed_port.is_some() {
                        std::thread::sleep(Duration::from_millis(250));
                    }
                }
            }
        }
        Err(last_error.unwrap_or_else(|| TestkitError::Internal("no start attempt".into())))
    }

    fn wait_ready(&self, pid: u32, port: u16) -> Readiness {
        let deadline = Instant::now() + self.startup_timeout;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let data_dir = self.data_dir.to_string_lossy().into_owned();
        loop {
            if procs::has_exited(pid) {
                return Readiness::Exited;
            }
            if Instant::now() >= deadline {
                return Readiness::TimedOut;
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(250)).is_ok() {
                // Check it is *our* server: another process may have taken the port.
                let probe = probe(config_for(port, "postgres"), data_dir.clone());
                if matches!(rt::block_on(probe), Ok(Ok(true))) {
                    return Readiness::Ready;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the postmaster if it runs; never fails (everything is bounded and
    /// best-effort, ending with SIGKILL to the postmaster and its children).
    fn halt(&self, state: &mut State, how: Halt) {
        let Some(pid) = state.pid.take() else {
            return;
        };
        match how {
            Halt::Graceful => {
                // Fast shutdown: the postmaster ends its children and waits for them.
                procs::signal(pid, Signal::SIGINT);
                if !procs::wait_until(SHUTDOWN_BOUND, || procs::has_exited(pid)) {
                    let children = procs::kill_tree(pid);
                    procs::wait_gone(&children, KILL_BOUND);
                }
            }
            Halt::Kill => {
                let children = procs::kill_tree(pid);
                procs::wait_gone(&children, KILL_BOUND);
            }
        }
        procs::wait_until(KILL_BOUND, || procs::has_exited(pid));
        if let Some(watchdog) = state.watchdog.as_mut() {
            let _ = watchdog.reap();
        }
        procs::reap_orphaned_postgres();
        self.clear_crash_leftovers(state.port);
    }

    /// After a postmaster died without shutting down: frees its SysV shared memory
    /// segment and removes its lock files, so a restart cannot mistake a reused pid for
    /// a running server. Harmless after a clean shutdown (nothing is left then).
    fn clear_crash_leftovers(&self, port: u16) {
        let pid_file = self.data_dir.join("postmaster.pid");
        let Ok(text) = std::fs::read_to_string(&pid_file) else {
            return;
        };
        // Line 7: "<shm key> <shm id>".
        if let Some(shmid) = text
            .lines()
            .nth(6)
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|id| id.parse::<u64>().ok())
        {
            let _ = std::process::Command::new("ipcrm")
                .args(["-m", &shmid.to_string()])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
        let _ = std::fs::remove_file(&pid_file);
        let _ = std::fs::remove_file(self.socket_dir.join(format!(".s.PGSQL.{port}.lock")));
        let _ = std::fs::remove_file(self.socket_dir.join(format!(".s.PGSQL.{port}")));
    }

    fn log_since(&self, offset: u64) -> String {
        let bytes = std::fs::read(&self.log_path).unwrap_or_default();
        let start = usize::try_from(offset).unwrap_or(0).min(bytes.len());
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }

    fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_since(0), lines)
    }

    fn stop(&self, how: Halt) {
        let mut state = self.lock();
        self.halt(&mut state, how);
    }

    fn restart(&self) -> Result<(), TestkitError> {
        let mut state = self.lock();
        self.halt(&mut state, Halt::Graceful);
        let port = state.port;
        self.launch(&mut state, Some(port))
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let mut state = std::mem::replace(
            self.state.get_mut().unwrap_or_else(PoisonError::into_inner),
            State {
                watchdog: None,
                pid: None,
                port: 0,
            },
        );
        self.halt(&mut state, Halt::Graceful);
        let _ = std::fs::remove_dir_all(&self.root);
        if let Some(watchdog) = state.watchdog.take() {
            watchdog.finish(SHUTDOWN_BOUND + KILL_BOUND);
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Clones the primary on `primary_port` into `dest` with `pg_basebackup -R`
/// (which writes `standby.signal` and `primary_conninfo`), as the server's user.
fn base_backup(
    bins: &bins::Binaries,
    primary_port: u16,
    dest: &Path,
    run_as: Option<RunAs>,
) -> Result<(), TestkitError> {
    // `postgres` may be a symlink (/usr/local/bin -> /usr/lib/postgresql/N/bin)
    // whose folder has no pg_basebackup: look beside its target too.
    let real = std::fs::canonicalize(&bins.postgres).unwrap_or_else(|_| bins.postgres.clone());
    let program = [real.parent(), bins.postgres.parent()]
        .into_iter()
        .flatten()
        .map(|dir| dir.join("pg_basebackup"))
        .find(|p| p.is_file())
        .ok_or_else(|| TestkitError::BinariesNotFound {
            searched: format!("pg_basebackup beside {}", real.display()),
        })?;
    let mut command = std::process::Command::new(&program);
    command
        .arg("-D")
        .arg(dest)
        .args([
            "-R", "-X", "stream", "-c", "fast", "-h", HOST, "-U", USER, "-p",
        ])
        .arg(primary_port.to_string());
    if let Some(who) = run_as {
        use std::os::unix::process::CommandExt;
        command.uid(who.uid).gid(who.gid);
    }
    let out = command
        .output()
        .map_err(|e| TestkitError::io(format!("running {}", program.display()), e))?;
    if !out.status.success() {
        return Err(TestkitError::Command {
            program: format!("pg_basebackup -p {primary_port}"),
            status: out.status.to_string(),
            output: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

fn free_port() -> Result<u16, TestkitError> {
    let listener = TcpListener::bind((HOST, 0))
        .map_err(|e| TestkitError::io("binding 127.0.0.1:0 to find a free port", e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| TestkitError::io("reading the free port", e))
}

pub(crate) fn config_for(port: u16, dbname: &str) -> Config {
    let mut config = Config::new();
    config.host(HOST).port(port).user(USER).dbname(dbname);
    config
}

/// Connects and checks that the server runs on `data_dir` (so it is ours).
async fn probe(mut config: Config, data_dir: String) -> Result<bool, TestkitError> {
    config.connect_timeout(Duration::from_secs(2));
    let check = async move {
        let client = connect_with(config).await?;
        let rows = client
            .simple_query("SHOW data_directory")
            .await
            .map_err(|e| TestkitError::db("probing the server", e))?;
        Ok::<bool, TestkitError>(rows.iter().any(
            |m| matches!(m, SimpleQueryMessage::Row(row) if row.get(0) == Some(data_dir.as_str())),
        ))
    };
    tokio::time::timeout(Duration::from_secs(5), check)
        .await
        .unwrap_or(Ok(false))
}

/// Connects and drives the connection on a task of the current runtime.
async fn connect_with(config: Config) -> Result<Client, TestkitError> {
    let (client, connection) = config.connect(NoTls).await.map_err(|e| {
        TestkitError::db(
            format!(
                "connecting to database {:?} on port {}",
                config.get_dbname().unwrap_or_default(),
                config.get_ports().first().copied().unwrap_or_default()
            ),
            e,
        )
    })?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn short(sql: &str) -> String {
    let one_line = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 80 {
        format!("{}...", one_line.chars().take(77).collect::<String>())
    } else {
        one_line
    }
}

async fn execute_with(config: Config, sql: String) -> Result<(), TestkitError> {
    let client = connect_with(config).await?;
    client
        .batch_execute(&sql)
        .await
        .map_err(|e| TestkitError::db(format!("executing `{}`", short(&sql)), e))
}

async fn query_scalar_i64_with(config: Config, sql: String) -> Result<i64, TestkitError> {
    let client = connect_with(config).await?;
    let messages = client
        .simple_query(&sql)
        .await
        .map_err(|e| TestkitError::db(format!("querying `{}`", short(&sql)), e))?;
    let row = messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .ok_or_else(|| {
            TestkitError::UnexpectedResult(format!("`{}` returned no row", short(&sql)))
        })?;
    let text = row.get(0).ok_or_else(|| {
        TestkitError::UnexpectedResult(format!("`{}` returned NULL or no column", short(&sql)))
    })?;
    text.trim().parse::<i64>().map_err(|_| {
        TestkitError::UnexpectedResult(format!(
            "`{}` returned {text:?}, not an integer",
            short(&sql)
        ))
    })
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn fresh_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "pgline_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl PgServer {
    /// A builder for a server with non-default settings.
    pub fn builder() -> PgServerBuilder {
        PgServerBuilder::default()
    }

    /// Starts a server of its own with default settings, for tests that stop, kill or
    /// reconfigure it. Needs a Tokio runtime; see [`PgServer::start_blocking`] otherwise.
    pub async fn start() -> Result<PgServer, TestkitError> {
        Self::builder().start().await
    }

    /// Starts a server of its own from synchronous code (no runtime needed).
    pub fn start_blocking() -> Result<PgServer, TestkitError> {
        Self::builder().start_blocking()
    }

    /// The server shared by every test of this process, started on first use.
    ///
    /// Usable from synchronous code and from any runtime (each `#[tokio::test]` has its
    /// own): it is started with blocking code, and the async helpers open a fresh
    /// connection on the caller's runtime each time. Isolate tests with
    /// [`PgServer::fresh_database`]; never stop or kill it (start your own server for
    /// that). It is never dropped: its watchdog stops it when the process exits.
    ///
    /// # Panics
    ///
    /// If it cannot start, with the reason (for missing binaries: how to install
    /// PostgreSQL). Every later call panics with the same message.
    pub fn shared() -> &'static PgServer {
        static SHARED: OnceLock<Result<PgServer, String>> = OnceLock::new();
        match SHARED.get_or_init(|| PgServer::start_blocking().map_err(|e| e.to_string())) {
            Ok(server) => server,
            Err(message) => {
                panic!("pgline-testkit: cannot start the shared postgresql server: {message}")
            }
        }
    }

    /// The host to connect to: `"127.0.0.1"`.
    pub fn host(&self) -> &str {
        HOST
    }

    /// The TCP port; it stays the same across [`PgServer::restart`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for `dbname`: `postgres://postgres@127.0.0.1:PORT/dbname`.
    pub fn url(&self, dbname: &str) -> String {
        format!("postgres://{USER}@{HOST}:{}/{dbname}", self.port)
    }

    /// Connection settings for `dbname` (user `postgres`, no password). Plain data, no
    /// runtime needed; the synchronous `postgres` crate can use [`PgServer::url`].
    pub fn config(&self, dbname: &str) -> Config {
        config_for(self.port, dbname)
    }

    /// Like [`PgServer::config`] but for another port on 127.0.0.1 — a
    /// [`FaultProxy`](crate::FaultProxy) in front of this server, say.
    pub fn config_via(&self, port: u16, dbname: &str) -> Config {
        config_for(port, dbname)
    }

    /// Starts a hot standby of this server (streaming replication from a
    /// `pg_basebackup -R` copy). It answers read-only queries until
    /// [`promote`](Self::promote)d; dropping it removes it like any server.
    pub async fn start_standby(&self) -> Result<PgServer, TestkitError> {
        PgServer::builder().standby_of(self.port).start().await
    }

    /// Promotes this standby to a primary and waits until it accepts writes.
    pub async fn promote(&self) -> Result<(), TestkitError> {
        self.execute("SELECT pg_promote(wait => true, wait_seconds => 30)")
            .await?;
        let started = Instant::now();
        while self
            .query_scalar_i64("SELECT pg_is_in_recovery()::int")
            .await?
            != 0
        {
            if started.elapsed() > Duration::from_secs(30) {
                return Err(TestkitError::UnexpectedResult(
                    "standby still in recovery after promotion".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Opens a connection to `dbname` as `postgres`; the connection is driven by a task
    /// spawned on the current Tokio runtime.
    pub async fn connect(&self, dbname: &str) -> Result<Client, TestkitError> {
        connect_with(self.config(dbname)).await
    }

    /// Creates database `name` (quoted as an identifier).
    pub async fn create_database(&self, name: &str) -> Result<(), TestkitError> {
        execute_with(
            self.config("postgres"),
            format!("CREATE DATABASE {}", quote_ident(name)),
        )
        .await
    }

    /// Creates a database with a name unique in this machine's test run and returns the
    /// name; the way to isolate tests that share [`PgServer::shared`].
    pub async fn fresh_database(&self) -> Result<String, TestkitError> {
        let name = fresh_name();
        self.create_database(&name).await?;
        Ok(name)
    }

    /// Runs `sql` (one or more statements) as `postgres` on database `postgres`.
    pub async fn execute(&self, sql: &str) -> Result<(), TestkitError> {
        execute_with(self.config("postgres"), sql.to_owned()).await
    }

    /// Runs `sql` on database `postgres` and returns the first column of the first row
    /// as an `i64` (any integer type, or text holding one, e.g. `SHOW max_connections`).
    pub async fn query_scalar_i64(&self, sql: &str) -> Result<i64, TestkitError> {
        query_scalar_i64_with(self.config("postgres"), sql.to_owned()).await
    }

    /// [`PgServer::create_database`] for synchronous code.
    pub fn create_database_blocking(&self, name: &str) -> Result<(), TestkitError> {
        let sql = format!("CREATE DATABASE {}", quote_ident(name));
        rt::block_on(execute_with(self.config("postgres"), sql))?
    }

    /// [`PgServer::fresh_database`] for synchronous code.
    pub fn fresh_database_blocking(&self) -> Result<String, TestkitError> {
        let name = fresh_name();
        self.create_database_blocking(&name)?;
        Ok(name)
    }

    /// [`PgServer::execute`] for synchronous code.
    pub fn execute_blocking(&self, sql: &str) -> Result<(), TestkitError> {
        rt::block_on(execute_with(self.config("postgres"), sql.to_owned()))?
    }

    /// [`PgServer::query_scalar_i64`] for synchronous code.
    pub fn query_scalar_i64_blocking(&self, sql: &str) -> Result<i64, TestkitError> {
        rt::block_on(query_scalar_i64_with(
            self.config("postgres"),
            sql.to_owned(),
        ))?
    }

    /// Stops the server with a fast shutdown (SIGINT; SIGKILL to the postmaster and its
    /// children after 10 s), keeping its data and port for [`PgServer::restart`]. Does nothing if it is
    /// not running.
    pub async fn stop(&self) -> Result<(), TestkitError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.stop(Halt::Graceful))
            .await
            .map_err(|e| TestkitError::Internal(format!("stop task failed: {e}")))
    }

    /// Kills the postmaster and all its children with SIGKILL, like a crash (the
    /// postmaster is stopped first so it cannot react), and waits until they are gone. Does nothing if it is not
    /// running. With `synchronous_commit=off`, commits of the last few hundred
    /// milliseconds may be lost, as in a real crash; if a test needs them after
    /// [`PgServer::restart`], run `CHECKPOINT` after they committed (as a statement of
    /// its own: a batch commits after its last statement), or commit with
    /// `SET synchronous_commit = on`.
    pub async fn kill9(&self) -> Result<(), TestkitError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.stop(Halt::Kill))
            .await
            .map_err(|e| TestkitError::Internal(format!("kill9 task failed: {e}")))
    }

    /// Starts the server again on the same port and data, after [`PgServer::stop`] or
    /// [`PgServer::kill9`] (crash recovery runs then); a running server is stopped first.
    pub async fn restart(&self) -> Result<(), TestkitError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.restart())
            .await
            .map_err(|e| TestkitError::Internal(format!("restart task failed: {e}")))?
    }

    /// [`PgServer::stop`] for synchronous code.
    pub fn stop_blocking(&self) {
        self.inner.stop(Halt::Graceful);
    }

    /// [`PgServer::kill9`] for synchronous code.
    pub fn kill9_blocking(&self) {
        self.inner.stop(Halt::Kill);
    }

    /// [`PgServer::restart`] for synchronous code.
    pub fn restart_blocking(&self) -> Result<(), TestkitError> {
        self.inner.restart()
    }

    /// The data folder (`PGDATA`). Its parent, the server folder, also holds the
    /// socket folder and the log, and is removed on drop.
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// The folder holding the Unix-domain socket (`host=<this folder>` connects by it).
    pub fn socket_dir(&self) -> &Path {
        &self.inner.socket_dir
    }

    /// The server log file (stderr of `postgres`, kept across restarts).
    pub fn log_path(&self) -> &Path {
        &self.inner.log_path
    }

    /// The last `lines` lines of the server log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        self.inner.log_tail(lines)
    }

    /// The postmaster's pid while it runs (it leads its own session), `None`
    /// after [`PgServer::stop`] or [`PgServer::kill9`].
    pub fn pid(&self) -> Option<u32> {
        self.inner.lock().pid
    }
}

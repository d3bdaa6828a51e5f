//! Databases, configuration and log capture for the tests.

use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgline_async::{PgPool, PoolOptions};
use pgline_config::Config;
use pgline_testkit::PgServer;

/// Fails the test instead of letting it hang.
pub async fn bounded<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(90), future).await {
        Ok(output) => output,
        Err(_) => panic!("{what} did not finish within 90 s"),
    }
}

/// A configuration for a fresh database of the shared server; `extra`
/// variables are added (a user, a password, an OTLP endpoint...).
pub async fn fresh_config(extra: &[(&str, String)]) -> Config {
    let server = PgServer::shared();
    let db = server.fresh_database().await.expect("fresh database");
    config_for(&db, extra)
}

pub fn config_for(db: &str, extra: &[(&str, String)]) -> Config {
    let server = PgServer::shared();
    let mut vars = vec![
        ("NODE_ENV", "test".to_owned()),
        ("DB_HOST", server.host().to_owned()),
        ("DB_PORT", server.port().to_string()),
        ("DB_NAME", db.to_owned()),
        ("DB_USER", "postgres".to_owned()),
    ];
    vars.extend(extra.iter().cloned());
    Config::from_vars(vars).expect("valid configuration")
}

/// A pool on the configured database with `options`' listener.
pub async fn pool(config: &Config, options: PoolOptions) -> PgPool {
    let options = options.with_acquire_timeout(Duration::from_secs(10));
    PgPool::connect_with(config, options)
        .await
        .expect("pool connects")
}

/// Runs the tests that install a subscriber one at a time, so that each
/// test's spans and logs are its own and the figures do not depend on the
/// order the tests run in.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// A dispatcher for one test's futures (`WithSubscriber`).
///
/// While exactly one dispatcher is alive, tracing-core takes it for the
/// global one: it computes each call site's interest from the *current
/// thread's* default, which on a thread outside the test's futures is no
/// subscriber at all — and a call site registered there stays disabled for
/// the test (seen as statement spans missing from whichever test ran second).
/// A second dispatcher that lives as long as the process keeps tracing-core
/// asking every live dispatcher. A service has one global subscriber and is
/// not affected.
pub fn dispatch(subscriber: impl tracing::Subscriber + Send + Sync + 'static) -> tracing::Dispatch {
    static KEEPALIVE: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
    KEEPALIVE.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
    tracing::Dispatch::new(subscriber)
}

/// A log writer that keeps everything written to it.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

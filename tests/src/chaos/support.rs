//! Pools and load generators shared by the scenarios.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pgline_async::{PgManager, PgPool, PoolOptions};
use pgline_core::{Database, DbError};
use pgline_resilience::{BreakerOptions, ResilienceOptions, Resilient, RetryOptions};

/// A pool on `config`, initialized.
pub(crate) async fn pool(
    config: tokio_postgres::Config,
    options: PoolOptions,
    query_timeout: Option<Duration>,
) -> Result<PgPool, DbError> {
    let manager = PgManager::new(config, None, 100).with_query_timeout(query_timeout);
    let pool = PgPool::new(manager, options)?;
    pool.initialize().await?;
    Ok(pool)
}

/// The resilience settings the scenarios run with: a breaker that opens after
/// five infrastructure failures for 200 ms, two attempts.
pub(crate) fn resilient(pool: PgPool) -> Resilient<PgPool> {
    Resilient::new(
        pool,
        ResilienceOptions::new(
            BreakerOptions::new(5, Duration::from_millis(200)),
            RetryOptions::new(2).with_backoff(Duration::from_millis(5), Duration::from_millis(50)),
        ),
    )
}

/// One call's outcome in a load run.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) at: Instant,
    pub(crate) took: Duration,
    pub(crate) error: Option<String>,
    pub(crate) circuit_open: bool,
}

/// Runs `SELECT 1` from `workers` tasks until `stop` is set, pausing `pause`
/// between calls; returns every sample.
pub(crate) async fn select_load<D: Database>(
    db: Arc<D>,
    workers: usize,
    pause: Duration,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<Sample> {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (db, stop, samples) = (db.clone(), stop.clone(), samples.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let at = Instant::now();
                let result = db.query_one("SELECT 1", &[]).await;
                let sample = Sample {
                    at,
                    took: at.elapsed(),
                    circuit_open: matches!(
                        result.as_ref().map_err(DbError::kind),
                        Err(pgline_core::ErrorKind::CircuitOpen { .. })
                    ),
                    error: result.err().map(|e| e.to_string()),
                };
                samples
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(sample);
                tokio::time::sleep(pause).await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    std::mem::take(
        &mut *samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
}

/// Connections of `db` the server sees, other than the asking one.
pub(crate) async fn server_connections(
    server: &pgline_testkit::PgServer,
    db: &str,
) -> Result<i64, String> {
    server
        .query_scalar_i64(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND pid <> pg_backend_pid()"
        ))
        .await
        .map_err(|e| e.to_string())
}

/// Percentile of durations (0..=100).
pub(crate) fn percentile(mut values: Vec<Duration>, p: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    values.sort();
    let rank = ((p / 100.0) * (values.len() - 1) as f64).round() as usize;
    values[rank.min(values.len() - 1)]
}

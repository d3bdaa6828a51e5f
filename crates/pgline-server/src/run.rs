//! The composition root's work: build the pool and its decorators, migrate,
//! serve, shut down.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use pgline_async::{PgManager, PgPool, PoolOptions};
use pgline_config::{Backend, Config, Profile};
use pgline_core::{Database, DbError, ErrorKind, Routed};
use pgline_mfg::{MemoryStore, PgStore, Store};
use pgline_resilience::{Breaker, ResilienceOptions, Resilient};
use pgline_sync::{PoolOptions as SyncPoolOptions, SyncManager, SyncPool};
use pgline_telemetry::{Metrics, Traced, UtilizationWatch};

use crate::app::app;
use crate::state::{AppState, BreakerView};

/// How long a development server waits for the database at start before it
/// runs degraded on the in-memory store.
const DEV_START_WAIT: Duration = Duration::from_secs(5);
/// How long in-flight requests may take to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long closing the pool may wait for connections in use.
const POOL_CLOSE_WAIT: Duration = Duration::from_secs(10);

/// Reads the breaker for `/status` and metrics.
pub fn breaker_view(breaker: &Breaker) -> BreakerView {
    let stats = breaker.stats();
    BreakerView {
        state: breaker.state().as_str(),
        opened_total: stats.opened_total,
        rejected_total: stats.rejected_total,
        retry_in_ms: u64::try_from(breaker.retry_in().as_millis()).unwrap_or(u64::MAX),
    }
}

/// Runs the service until `shutdown` resolves, on the backend the
/// configuration names (`DB_BACKEND`: `async`, the default, or `sync`). Binds
/// `config.server`, or uses `listener` when given (tests).
pub async fn run(
    config: Config,
    listener: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with(config, listener, shutdown, None).await
}

/// Like [`run`], with the telemetry `metrics` of the composition root: pool
/// and breaker gauges, the acquire/use/create histograms, statement metrics,
/// and `/metrics` rendered from them.
pub async fn run_with(
    config: Config,
    listener: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    metrics: Option<Metrics>,
) -> anyhow::Result<()> {
    let pool_name = pgline_telemetry::default_pool_name(&config);
    let observer = metrics.as_ref().map(|m| m.pool_listener(pool_name.clone()));
    let wait = match config.profile {
        Profile::Development => DEV_START_WAIT.min(config.pool.acquire_timeout),
        _ => config.pool.acquire_timeout,
    };
    match config.server.backend {
        Backend::Async => {
            let manager = PgManager::from_config(&config).context("database settings")?;
            let mut options = PoolOptions::from_config(&config.pool);
            if let Some(observer) = observer.clone() {
                options = options.with_listener(observer);
            }
            let pool = PgPool::new(manager, options).context("pool settings")?;
            let started = pool.initialize_within(wait).await;
            let read_pool = crate::replica::async_read_pool(&config).await?;
            run_on(
                config, listener, shutdown, pool, read_pool, started, wait, metrics, pool_name,
            )
            .await
        }
        Backend::Sync => {
            let tls = pgline_async::make_connector(
                config.database.tls,
                config.database.ssl_root_cert.as_deref(),
            )
            .context("TLS settings")?;
            let manager = SyncManager::from_config(&config, tls).context("database settings")?;
            let mut options = SyncPoolOptions::from_config(&config.pool);
            if let Some(observer) = observer {
                options = options.with_listener(observer);
            }
            let pool = SyncPool::new(manager, options).context("pool settings")?;
            let opening = pool.clone();
            // r2d2 blocks while it opens connections: off the runtime, bounded.
            let started = match tokio::time::timeout(
                wait,
                tokio::task::spawn_blocking(move || opening.initialize()),
            )
            .await
            {
                Ok(Ok(result)) => result,
                Ok(Err(e)) => Err(DbError::other(ErrorKind::Connect, e.to_string())),
                Err(_) => Err(DbError::new(ErrorKind::Connect)
                    .with_context(format!("no connection within {wait:?}"))),
            };
            let read_pool = crate::replica::sync_read_pool(&config).await?;
            run_on(
                config, listener, shutdown, pool, read_pool, started, wait, metrics, pool_name,
            )
            .await
        }
    }
}

/// The backend-independent part: decorators (`Resilient<Traced<P>>`, the
/// same for the optional read pool, both joined by `Routed` for the store),
/// store, metrics, HTTP, shutdown.
#[allow(clippy::too_many_arguments)]
async fn run_on<P: Database + Clone>(
    config: Config,
    listener: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    pool: P,
    read_pool: Option<P>,
    started: Result<(), DbError>,
    wait: Duration,
    metrics: Option<Metrics>,
    pool_name: String,
) -> anyhow::Result<()> {
    let mut traced = Traced::from_config(pool, &config).with_slow_query(config.log.slow_query);
    if let Some(m) = &metrics {
        traced = traced.with_metrics(m);
    }
    let db = Arc::new(Resilient::new(traced, ResilienceOptions::default()));
    let read_config = config.read_pool_config();
    let read_db = read_pool.zip(read_config.as_ref()).map(|(pool, read)| {
        let mut traced = Traced::from_config(pool, read);
        if let Some(m) = &metrics {
            traced = traced.with_metrics(m);
        }
        Arc::new(Resilient::new(traced, ResilienceOptions::default()))
    });
    if let (Some(m), Some(read), Some(read_db)) = (&metrics, &read_config, &read_db) {
        let stats_db = read_db.clone();
        m.register_pool(pgline_telemetry::default_pool_name(read), move || {
            stats_db.stats()
        });
    }
    let routed = Arc::new(Routed::new(
        db.clone(),
        read_db,
        crate::replica::fallback_period(&config),
    ));
    let store = open_store(&config, started, wait, &routed).await?;
    let breaker = db.breaker().clone();
    let mut state = AppState::new(db.clone(), store);
    state.breaker = Some(Arc::new(move || breaker_view(&breaker)));
    if config.read_pool.is_some() {
        state.read_pool = Some(crate::replica::probe(&config, routed.clone()));
    }
    if let Some(m) = &metrics {
        let stats_db = db.clone();
        m.register_pool(pool_name.clone(), move || stats_db.stats());
        let breaker = db.breaker().clone();
        m.register_breaker(pool_name.clone(), move || breaker.state().as_gauge());
        let renderer = m.clone();
        state.metrics = Some(Arc::new(move || renderer.render_prometheus()));
    }
    let watch_db = db.clone();
    let watch = UtilizationWatch::from_config(pool_name, &config.log)
        .spawn(move || watch_db.stats(), Duration::from_secs(5));
    state.profile = config.profile.as_str();
    state.apply_config(&config)?;
    serve(&config, listener, state, shutdown).await?;
    watch.abort();
    // The read pool first, then the primary.
    let report = routed.close(POOL_CLOSE_WAIT).await;
    tracing::info!(?report, "database pool closed");
    Ok(())
}

/// Migrates and picks the store: PostgreSQL, or — in the development profile
/// only — the in-memory fallback when the database was unreachable at start
/// (production refuses to start instead).
async fn open_store<D: Database + Clone>(
    config: &Config,
    started: Result<(), DbError>,
    wait: Duration,
    db: &D,
) -> anyhow::Result<Store<D>> {
    match started {
        Ok(()) => {
            migrate_as_owner(config, db).await?;
            Ok(Store::Postgres(PgStore::with_limits(
                db.clone(),
                crate::store_limits(config),
            )))
        }
        Err(e) if config.profile == Profile::Development => {
            tracing::warn!(
                error = %e,
                "DATABASE UNREACHABLE: running DEGRADED on an in-memory store (development profile); \
                 data is NOT persisted and is lost on exit. The pool keeps reconnecting; restart once the database is up"
            );
            Ok(Store::Memory(MemoryStore::with_limits(
                crate::store_limits(config),
            )))
        }
        Err(e) => bail!(
            "the database is unreachable at start-up ({} profile, waited {wait:?}): {e}",
            config.profile.as_str()
        ),
    }
}

/// Runs the migrations as the owner role (`DB_MIGRATION_USER`, falling back to
/// the main user): the runtime role may hold only DML grants.
async fn migrate_as_owner<D: Database + Clone>(config: &Config, db: &D) -> anyhow::Result<()> {
    if config.migration_user() == config.database.user {
        let report = pgline_mfg::migrate(db)
            .await
            .context("migrating the database schema")?;
        tracing::info!(?report, backend = db.backend(), "schema up to date");
        return Ok(());
    }
    let tls = pgline_async::make_connector(
        config.database.tls,
        config.database.ssl_root_cert.as_deref(),
    )
    .context("TLS settings")?;
    let owner = PgPool::new(
        PgManager::new(config.migration_tokio_postgres(), tls, 0),
        PoolOptions::new(0, 1).with_acquire_timeout(config.pool.acquire_timeout),
    )
    .context("migration pool")?;
    let result = pgline_mfg::migrate(&owner).await;
    owner.close(Duration::from_secs(5)).await;
    let report = result.with_context(|| {
        format!(
            "migrating the database schema as {}",
            config.migration_user()
        )
    })?;
    tracing::info!(
        ?report,
        owner = config.migration_user(),
        "schema up to date"
    );
    Ok(())
}

/// Serves `state` until `shutdown`, then lets in-flight requests finish
/// within the grace period. Serves HTTPS when the configuration has
/// `TLS_CERT_FILE` and `TLS_KEY_FILE` (`config.server.https`).
pub async fn serve<D, S>(
    config: &Config,
    listener: Option<tokio::net::TcpListener>,
    state: AppState<D, S>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()>
where
    D: Database + Clone,
    S: pgline_mfg::ManufacturingStore + Clone + 'static,
{
    let tls = match &config.server.https {
        Some(https) => Some(crate::tls::server_config(https)?),
        None => None,
    };
    if let Some(warning) = crate::tls::plain_http_warning(config) {
        tracing::warn!("{warning}");
    }
    let listener = match listener {
        Some(l) => l,
        None => {
            let address = config.server.listen_address();
            tokio::net::TcpListener::bind(&address)
                .await
                .with_context(|| format!("cannot listen on {address} (HOST/PORT)"))?
        }
    };
    let bound: SocketAddr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(address = %bound, backend = state.db.backend(), "pgline-server listening; dashboard at {scheme}://{bound}/");
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let marker = state.clone();
    let router = app(state);
    let server = crate::tls::server(tls, listener, router, async move {
        shutdown.await;
        tracing::info!(
            "shutdown requested: refusing new connections, finishing requests in flight"
        );
        marker.begin_shutdown();
        let _ = stopping_tx.send(());
    })?;
    let grace = async move {
        let _ = stopping_rx.await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        result = server => result.context("HTTP server")?,
        () = grace => tracing::warn!("requests still in flight after {SHUTDOWN_GRACE:?}; stopping anyway"),
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}

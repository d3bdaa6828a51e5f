//! Eight station threads share one blocking pool, as station controllers do.
//!
//! ```text
//! cargo run -p pgline-sync --example stations [-- --panels 400]
//! ```
//!
//! Uses the database of `DATABASE_URL` (or the `DB_*` variables) when set,
//! else starts a throwaway PostgreSQL server. Each station claims the next
//! pending panel (`FOR UPDATE SKIP LOCKED`), scans it, checks it, and marks it
//! completed or failed, one transaction per step; a short summary follows.
//! Everything is written to a schema of its own, dropped at the end.

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use pgline_core::{DbError, PoolEvent};
use pgline_sync::{PoolOptions, SyncPool};

const STATIONS: usize = 8;

/// Counts of each event name, filled by the pool's listener.
#[derive(Default)]
struct EventCounts([AtomicU64; 5]);

impl EventCounts {
    const NAMES: [&'static str; 5] = ["connect", "acquire", "release", "error", "remove"];

    fn record(&self, event: &PoolEvent) {
        if let Some(i) = Self::NAMES.iter().position(|n| *n == event.name()) {
            self.0[i].fetch_add(1, Relaxed);
        }
    }

    fn line(&self) -> String {
        Self::NAMES
            .iter()
            .zip(&self.0)
            .map(|(name, n)| format!("{name} {}", n.load(Relaxed)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct StationTally {
    panels: u32,
    passed: u32,
    failed: u32,
    transactions: u32,
}

fn main() -> Result<(), Box<dyn Error>> {
    let panels: u32 = match std::env::args().skip_while(|a| a != "--panels").nth(1) {
        Some(n) => n.parse()?,
        None => 200,
    };
    let (config, server) = database()?;
    let where_ = match &server {
        Some(s) => format!("throwaway PostgreSQL on 127.0.0.1:{}", s.port()),
        None => format!(
            "{} as {}",
            config
                .database
                .hosts
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            config.database.user
        ),
    };
    let tls = pgline_async::make_connector(
        config.database.tls,
        config.database.ssl_root_cert.as_deref(),
    )?;
    let events = Arc::new(EventCounts::default());
    let sink = Arc::clone(&events);
    let options = PoolOptions::from_config(&config.pool)
        .with_listener(Arc::new(move |e: &PoolEvent| sink.record(e)));
    let pool = SyncPool::connect_with(&config, tls, options)?;
    println!(
        "pgline-sync stations: {STATIONS} stations, {panels} panels, pool min {} / max {} ({where_})",
        pool.options().min_idle,
        pool.options().max_size
    );

    let schema = format!("pgline_stations_{}", std::process::id());
    pool.batch_execute(&format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.panels (
             barcode text PRIMARY KEY,
             status text NOT NULL DEFAULT 'PENDING',
             updated_at timestamptz NOT NULL DEFAULT now());
         CREATE TABLE {schema}.panel_events (
             id bigserial PRIMARY KEY,
             barcode text NOT NULL REFERENCES {schema}.panels,
             station text NOT NULL,
             event_type text NOT NULL,
             at timestamptz NOT NULL DEFAULT now());"
    ))?;
    let outcome = run(&pool, &schema, panels);
    // Clean up whatever happened.
    let dropped = pool.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"));
    let report = pool.close(Duration::from_secs(5));
    let (tallies, elapsed, check) = outcome?;
    dropped?;

    for (station, t) in &tallies {
        println!(
            "{station}  panels {:>4}  passed {:>4}  failed {:>3}",
            t.panels, t.passed, t.failed
        );
    }
    let total = tallies
        .values()
        .fold(StationTally::default(), |a, t| StationTally {
            panels: a.panels + t.panels,
            passed: a.passed + t.passed,
            failed: a.failed + t.failed,
            transactions: a.transactions + t.transactions,
        });
    let s = pool.stats();
    let v = pool.validation_stats();
    println!(
        "done in {:.2} s: {} panels ({} completed, {} failed), {} events, {:.0} transactions/s",
        elapsed.as_secs_f64(),
        total.panels,
        total.passed,
        total.failed,
        check.events,
        f64::from(total.transactions) / elapsed.as_secs_f64()
    );
    println!(
        "pool: acquired {}, created {}, timeouts {}, errors {}, wait mean {} µs / max {:.1} ms; \
         validation: {} skipped (used < {:?} ago), {} checked",
        s.acquired_total,
        s.created_total,
        s.acquire_timeouts_total,
        s.errors_total,
        s.wait_time_mean_us(),
        s.wait_time_max_us as f64 / 1000.0,
        v.skipped,
        pool.options().validation_threshold,
        v.checked
    );
    println!("events: {}", events.line());
    println!(
        "close: {} idle closed, {} still in use",
        report.closed_idle, report.still_in_use
    );
    if check.unfinished == 0 && check.events == u64::from(total.panels * 3) {
        println!("check: every panel finished, every step recorded");
        Ok(())
    } else {
        Err(format!(
            "check failed: {} panels unfinished, {} events for {} panels",
            check.unfinished, check.events, total.panels
        )
        .into())
    }
}

struct Check {
    unfinished: i64,
    events: u64,
}

type Outcome = (BTreeMap<String, StationTally>, Duration, Check);

fn run(pool: &SyncPool, schema: &str, panels: u32) -> Result<Outcome, Box<dyn Error>> {
    pool.execute(
        &format!(
            "INSERT INTO {schema}.panels (barcode)
             SELECT 'PNL-' || lpad(n::text, 6, '0') FROM generate_series(1, $1) AS n"
        ),
        &[&i32::try_from(panels)?],
    )?;
    let started = Instant::now();
    let stations: Vec<_> = (1..=STATIONS)
        .map(|n| {
            let (pool, schema) = (pool.clone(), schema.to_owned());
            let name = format!("ST-{n:02}");
            std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || station(&pool, &schema, &name).map(|t| (name, t)))
        })
        .collect::<Result<_, _>>()?;
    let mut tallies = BTreeMap::new();
    for handle in stations {
        let (name, tally) = handle.join().map_err(|_| "a station thread panicked")??;
        tallies.insert(name, tally);
    }
    let elapsed = started.elapsed();
    let unfinished: i64 = pool
        .query_one(
            &format!(
                "SELECT count(*) FROM {schema}.panels WHERE status NOT IN ('COMPLETED', 'FAILED')"
            ),
            &[],
        )?
        .get(0);
    let events: i64 = pool
        .query_one(&format!("SELECT count(*) FROM {schema}.panel_events"), &[])?
        .get(0);
    Ok((
        tallies,
        elapsed,
        Check {
            unfinished,
            events: u64::try_from(events)?,
        },
    ))
}

/// One station: claim, scan, check, finish, until no panel is pending.
fn station(pool: &SyncPool, schema: &str, name: &str) -> Result<StationTally, DbError> {
    let claim = format!(
        "SELECT barcode FROM {schema}.panels WHERE status = 'PENDING'
         ORDER BY barcode LIMIT 1 FOR UPDATE SKIP LOCKED"
    );
    let set_status = format!(
        "UPDATE {schema}.panels SET status = $2, updated_at = now() WHERE barcode = $1 AND status = $3"
    );
    let record = format!(
        "INSERT INTO {schema}.panel_events (barcode, station, event_type) VALUES ($1, $2, $3)"
    );
    let mut tally = StationTally::default();
    loop {
        // Scan: claim the next pending panel and move it into work.
        let claimed = pool.transaction(|tx| {
            let Some(row) = tx.query_opt(&claim, &[])? else {
                return Ok::<_, DbError>(None);
            };
            let barcode: String = row.get(0);
            tx.execute(&set_status, &[&barcode, &"IN_PROGRESS", &"PENDING"])?;
            tx.execute(&record, &[&barcode, &name, &"SCANNED"])?;
            Ok(Some(barcode))
        })?;
        tally.transactions += 1;
        let Some(barcode) = claimed else {
            return Ok(tally);
        };
        tally.panels += 1;
        // The station's own work (a camera, a torque check...).
        std::thread::sleep(Duration::from_millis(2));
        let passed = !barcode.ends_with('7');
        if passed {
            pool.transaction(|tx| {
                tx.execute(&record, &[&barcode, &name, &"PASSED"])?;
                tx.execute(&set_status, &[&barcode, &"COMPLETED", &"IN_PROGRESS"])?;
                tx.execute(&record, &[&barcode, &name, &"COMPLETED"])
            })?;
            tally.passed += 1;
        } else {
            pool.transaction(|tx| {
                tx.execute(&record, &[&barcode, &name, &"FAILED"])?;
                tx.execute(&set_status, &[&barcode, &"FAILED", &"IN_PROGRESS"])?;
                // The failure is inspected and recorded as the last step.
                tx.execute(&record, &[&barcode, &name, &"INSPECTED"])
            })?;
            tally.failed += 1;
        }
        tally.transactions += 1;
    }
}

/// The configuration to use, and the throwaway server when one was started
/// (kept alive by the caller, removed when dropped).
fn database() -> Result<(pgline_config::Config, Option<pgline_testkit::PgServer>), Box<dyn Error>> {
    if std::env::var_os("DATABASE_URL").is_some() || std::env::var_os("DB_HOST").is_some() {
        return Ok((pgline_config::Config::from_env()?, None));
    }
    let server = pgline_testkit::PgServer::start_blocking()?;
    let config = pgline_config::Config::from_vars([("DATABASE_URL", server.url("postgres"))])?;
    Ok((config, Some(server)))
}

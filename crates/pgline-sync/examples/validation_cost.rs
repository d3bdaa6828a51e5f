//! What checkout validation costs: `get` + `SELECT 1` with r2d2's behaviour
//! (an empty-query round trip on every checkout) against pgline-sync's age
//! threshold (a round trip only for connections unused for 500 ms), with raw
//! r2d2 + r2d2_postgres beside them for reference.
//!
//! ```text
//! cargo run --release -p pgline-sync --example validation_cost [-- --ops 5000]
//! ```
//!
//! Starts a throwaway PostgreSQL server (or uses `DATABASE_URL`).

use std::error::Error;
use std::time::{Duration, Instant};

use pgline_sync::postgres::{self, NoTls};
use pgline_sync::{PoolOptions, SyncManager, SyncPool};

const ROUNDS: usize = 7;

fn main() -> Result<(), Box<dyn Error>> {
    let ops: usize = match std::env::args().skip_while(|a| a != "--ops").nth(1) {
        Some(n) => n.parse()?,
        None => 5000,
    };
    let (pg, _server) = settings()?;
    println!("checkout + SELECT 1, {ops} operations per run, median of {ROUNDS} interleaved runs");
    println!(
        "{:<44} {:>8} {:>10} {:>10}",
        "pool", "threads", "µs/op", "ops/s"
    );
    for threads in [1, 8] {
        let pools: [(&str, Runner); 4] = [
            (
                "pgline-sync, validate if unused > 500 ms",
                sync_runner(&pg, Duration::from_millis(500), threads, ops)?,
            ),
            (
                "pgline-sync, validate every checkout",
                sync_runner(&pg, Duration::ZERO, threads, ops)?,
            ),
            (
                "r2d2 + r2d2_postgres, test_on_check_out",
                raw_runner(&pg, true, threads, ops)?,
            ),
            (
                "r2d2 + r2d2_postgres, no checkout test",
                raw_runner(&pg, false, threads, ops)?,
            ),
        ];
        // Rounds interleave the pools, so load from elsewhere hits them alike.
        let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); pools.len()];
        for _ in 0..ROUNDS {
            for (i, (_, run)) in pools.iter().enumerate() {
                samples[i].push(run()?);
            }
        }
        for ((name, _), mut runs) in pools.iter().zip(samples) {
            runs.sort();
            let elapsed = runs[runs.len() / 2];
            let per_thread_op = elapsed.as_secs_f64() * 1e6 * threads as f64 / ops as f64;
            println!(
                "{name:<44} {threads:>8} {per_thread_op:>10.1} {:>10.0}",
                ops as f64 / elapsed.as_secs_f64()
            );
        }
    }
    Ok(())
}

type Runner = Box<dyn Fn() -> Result<Duration, Box<dyn Error>>>;

fn sync_runner(
    pg: &tokio_postgres::Config,
    threshold: Duration,
    threads: usize,
    ops: usize,
) -> Result<Runner, Box<dyn Error>> {
    let pool = SyncPool::new(
        SyncManager::new(pg.clone(), None, 100),
        PoolOptions::new(threads as u32, threads as u32).with_validation_threshold(threshold),
    )?;
    pool.initialize()?;
    Ok(Box::new(move || {
        let per_thread = ops / threads;
        let started = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for _ in 0..per_thread {
                        let mut conn = pool.get().expect("checkout");
                        conn.query("SELECT 1", &[]).expect("query");
                    }
                });
            }
        });
        Ok(started.elapsed())
    }))
}

fn raw_runner(
    pg: &tokio_postgres::Config,
    test_on_check_out: bool,
    threads: usize,
    ops: usize,
) -> Result<Runner, Box<dyn Error>> {
    let manager =
        r2d2_postgres::PostgresConnectionManager::new(postgres::Config::from(pg.clone()), NoTls);
    let pool = r2d2::Pool::builder()
        .max_size(threads as u32)
        .min_idle(Some(threads as u32))
        .test_on_check_out(test_on_check_out)
        .build(manager)?;
    Ok(Box::new(move || {
        let per_thread = ops / threads;
        let started = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for _ in 0..per_thread {
                        let mut conn = pool.get().expect("checkout");
                        // Prepared once per connection (r2d2's extensions),
                        // as pgline-sync's statement cache does.
                        let cached = r2d2::PooledConnection::extensions(&conn)
                            .get::<postgres::Statement>()
                            .cloned();
                        let statement = match cached {
                            Some(statement) => statement,
                            None => {
                                let statement = conn.prepare("SELECT 1").expect("prepare");
                                r2d2::PooledConnection::extensions_mut(&mut conn)
                                    .insert(statement.clone());
                                statement
                            }
                        };
                        conn.query(&statement, &[]).expect("query");
                    }
                });
            }
        });
        Ok(started.elapsed())
    }))
}

fn settings() -> Result<(tokio_postgres::Config, Option<pgline_testkit::PgServer>), Box<dyn Error>>
{
    if let Ok(url) = std::env::var("DATABASE_URL") {
        return Ok((url.parse()?, None));
    }
    let server = pgline_testkit::PgServer::start_blocking()?;
    Ok((server.config("postgres"), Some(server)))
}

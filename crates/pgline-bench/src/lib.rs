//! Comparison benchmarks of pgline's pool: `cargo xtask bench` runs the
//! `pgline-bench` binary of this crate in release mode.
//!
//! # What is measured
//!
//! - `checkout_select1`: acquire → `SELECT 1` as a prepared statement the way
//!   each pool recommends for repeated statements → release. pgline and
//!   deadpool take the statement from their per-connection caches; bb8 and
//!   r2d2 have none, so they prepare on every checkout (two round trips);
//!   `raw` prepared it once on each of its dedicated connections.
//! - `checkout_simple1`: the same with `simple_query("SELECT 1")`: one round
//!   trip for everyone, which isolates the pools' own mechanics.
//! - `acquire_release_noio`: acquire + release of a fake connection (no IO):
//!   the uncontended fast path.
//! - `handoff_noio` (extra): acquire → yield → release of a fake connection by
//!   512 tasks on 20 connections, so every acquire queues and is served by a
//!   hand-off: the slow path and its fairness, without a server's noise.
//! - `query_select1_pipelined`: prepared `SELECT 1` through pgline's
//!   [`SharedLane`](pgline_async::SharedLane) over all 20 connections, so
//!   concurrent statements are pipelined; beside it `raw` (20 tokio-postgres
//!   clients shared without a lock: the library's ceiling) and `pgbench -M
//!   prepared` with 20 clients.
//! - `waiters_10k`: acquire → yield → release of a fake connection by 100 and
//!   by 10,000 tasks on a pool of 20: throughput, p50/p99/max latency (almost
//!   all of it queueing), client CPU per acquire (`cpu_us_per_op`), and the
//!   resident memory per parked waiter (`bytes_per_waiter`, measured in a
//!   fresh process).
//! - `pgbench` rows: the server's ceiling, 20 pgbench clients without a pool.
//!
//! Pools have 20 connections and no check on checkout (deadpool
//! `RecyclingMethod::Fast`, bb8 and r2d2 `test_on_check_out(false)`). Async
//! contenders share one multi-thread tokio runtime with 2 worker threads; r2d2
//! runs on OS threads (its concurrency is the number of threads).
//!
//! # How
//!
//! Each case gets a fresh pool, a warm-up, then a fixed window. Every task
//! runs operations back to back and, for each operation completed inside the
//! window, counts it and records its latency (end of the previous operation
//! to end of this one: acquire, work and release, including any queueing) in
//! a histogram of its own; histograms are merged at the end. The loop reads
//! the clock itself, so a pool that never yields cannot starve the end of a
//! run (see [`measure`]). Results are JSON lines ([`report::Record`]), and
//! an SVG chart of them ([`chart`]).

pub mod chart;
pub mod cpu;
pub mod measure;
pub mod noio;
pub mod pgbench;
pub mod pools;
pub mod report;
pub mod suite;

pub use suite::{Args, run};

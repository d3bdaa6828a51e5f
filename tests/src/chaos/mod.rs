//! Fault scenarios: each runs against throwaway servers, measures, checks its
//! bounds and ends by itself.

mod crash;
mod faults;
mod load;
mod restart;
pub mod scaleout;
mod support;

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

pub use crash::crash_consistency;
pub use faults::{failover, latency, max_connections, stall};
pub use load::{cancellation_storm, exhaustion, terminate_all};
pub use restart::kill_and_restart;
pub use scaleout::pgbouncer_scale_out;

/// What a scenario measured: name/value pairs printed after its result.
#[derive(Debug, Default, Clone)]
pub struct Figures(pub Vec<(&'static str, String)>);

impl Figures {
    /// Records one figure.
    pub fn add(&mut self, name: &'static str, value: impl std::fmt::Display) {
        self.0.push((name, value.to_string()));
    }

    /// Records a duration in milliseconds.
    pub fn ms(&mut self, name: &'static str, value: Duration) {
        self.add(name, format!("{:.1}ms", value.as_secs_f64() * 1000.0));
    }
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut line = String::new();
        for (name, value) in &self.0 {
            let _ = write!(line, " {name}={value}");
        }
        f.write_str(line.trim_start())
    }
}

/// A scenario's result: its figures, or why it failed (with the figures so far).
pub type Outcome = Result<Figures, (String, Figures)>;

/// A boxed scenario.
pub type Scenario = fn() -> Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// Fails the scenario with `message` unless `condition` holds.
pub fn check(
    condition: bool,
    message: impl Into<String>,
    figures: &Figures,
) -> Result<(), (String, Figures)> {
    if condition {
        Ok(())
    } else {
        Err((message.into(), figures.clone()))
    }
}

/// Turns a setup error into a scenario failure.
pub fn setup<T, E: std::fmt::Display>(
    result: Result<T, E>,
    what: &str,
    figures: &Figures,
) -> Result<T, (String, Figures)> {
    result.map_err(|e| (format!("{what}: {e}"), figures.clone()))
}

/// Every scenario of the suite, in order, with its name.
pub fn all() -> Vec<(&'static str, Scenario)> {
    vec![
        ("kill -9 and restart under load", || {
            Box::pin(kill_and_restart())
        }),
        ("pg_terminate_backend of every connection", || {
            Box::pin(terminate_all())
        }),
        ("max_connections reached (53300)", || {
            Box::pin(max_connections())
        }),
        ("network stall through the proxy", || Box::pin(stall())),
        ("latency through the proxy", || Box::pin(latency())),
        ("failover to a promoted standby", || Box::pin(failover())),
        ("exhaustion: 1000 tasks on a pool of 20", || {
            Box::pin(exhaustion())
        }),
        ("cancellation storm", || Box::pin(cancellation_storm())),
        ("crash consistency: kill -9 under 8 stations", || {
            Box::pin(crash_consistency())
        }),
        (
            "scale-out: 4 pgline-server instances through one PgBouncer, 8 stations",
            || Box::pin(pgbouncer_scale_out()),
        ),
    ]
}

/// Runs scenarios one after another, each bounded by `limit`, printing a line
/// per scenario and `N passed, N failed` at the end. Returns the failures.
pub async fn run(scenarios: &[(&'static str, Scenario)], limit: Duration) -> usize {
    let mut passed = 0;
    let mut failed = 0;
    for (i, (name, scenario)) in scenarios.iter().enumerate() {
        let started = Instant::now();
        let outcome = match tokio::time::timeout(limit, scenario()).await {
            Ok(outcome) => outcome,
            Err(_) => Err((
                format!("did not finish within {limit:?}"),
                Figures::default(),
            )),
        };
        let took = started.elapsed();
        match outcome {
            Ok(figures) => {
                passed += 1;
                println!("{:>2}. ok    {name} ({took:.1?}): {figures}", i + 1);
            }
            Err((why, figures)) => {
                failed += 1;
                println!("{:>2}. FAIL  {name} ({took:.1?}): {why}; {figures}", i + 1);
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    failed
}

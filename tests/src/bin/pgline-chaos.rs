//! `pgline-chaos`: the fault suite (`cargo xtask chaos` runs it).
//!
//! Prints a line per scenario with its figures and ends with
//! `N passed, N failed`; exits 1 when any scenario failed.

use std::time::Duration;

fn main() {
    let filter: Option<String> = std::env::args().nth(1);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    let scenarios: Vec<_> = pgline_tests::chaos::all()
        .into_iter()
        .filter(|(name, _)| filter.as_deref().is_none_or(|f| name.contains(f)))
        .collect();
    let failed = runtime.block_on(pgline_tests::chaos::run(
        &scenarios,
        Duration::from_secs(120),
    ));
    std::process::exit(i32::from(failed > 0));
}

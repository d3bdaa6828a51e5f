//! `pgline-server`: the manufacturing API and health endpoints on a pgline pool.

mod check_config;

use std::process::ExitCode;

use clap::Parser;

/// The pgline service: manufacturing API and health endpoints on a
/// PostgreSQL connection pool. Configured by environment variables and an
/// optional TOML file named by PGLINE_CONFIG (see docs/configuration.md).
#[derive(Debug, Parser)]
#[command(name = "pgline-server", version)]
struct Cli {
    /// Load the configuration, print the effective settings (password
    /// hidden) and exit: 0 when it is valid, 2 when it is not.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match check_config::load() {
        Ok(config) => config,
        Err(code) => return code,
    };
    if cli.check_config {
        check_config::print(&config);
        return ExitCode::SUCCESS;
    }
    init_logs(&config);
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(pgline_server::run(
        config,
        None,
        pgline_server::shutdown_signal(),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logs(config: &pgline_config::Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(config.log.directives())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

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
    runtime.block_on(async move {
        // Logs, traces and metrics (OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set).
        let telemetry = match pgline_telemetry::init(&config) {
            Ok(guard) => guard,
            Err(e) => {
                eprintln!("error: telemetry: {e}");
                return ExitCode::FAILURE;
            }
        };
        for warning in config.warnings() {
            tracing::warn!("{warning}");
        }
        let metrics = telemetry.metrics().clone();
        let outcome = pgline_server::run_with(
            config,
            None,
            pgline_server::shutdown_signal(),
            Some(metrics),
        )
        .await;
        if let Err(e) = telemetry.shutdown().await {
            eprintln!("warning: flushing telemetry: {e}");
        }
        match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

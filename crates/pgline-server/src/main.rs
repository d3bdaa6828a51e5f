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
    eprintln!(
        "pgline-server: the server is not implemented in this build yet; \
         `pgline-server --check-config` validates the configuration"
    );
    ExitCode::FAILURE
}

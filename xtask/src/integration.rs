//! `cargo xtask integration`: the seed's ten-point pool test.

use std::process::Command;

use anyhow::{Context, bail};

/// Runs the ten points (binary `pgline-integration` of package pgline-tests).
pub(crate) fn run() -> anyhow::Result<()> {
    let status = Command::new("cargo")
        .args([
            "run",
            "--quiet",
            "-p",
            "pgline-tests",
            "--bin",
            "pgline-integration",
        ])
        .status()
        .context("could not run cargo")?;
    if !status.success() {
        bail!("integration: some points failed");
    }
    Ok(())
}

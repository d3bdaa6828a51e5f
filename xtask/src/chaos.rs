//! `cargo xtask chaos`: the fault suite (binary `pgline-chaos` of package pgline-tests).

use std::process::Command;

use anyhow::{Context, bail};

/// Runs every scenario (or those whose name contains `filter`).
pub(crate) fn run(filter: Option<String>) -> anyhow::Result<()> {
    let mut cmd = Command::new("cargo");
    cmd.args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "pgline-tests",
        "--bin",
        "pgline-chaos",
        "--",
    ]);
    if let Some(f) = filter {
        cmd.arg(f);
    }
    let status = cmd.status().context("could not run cargo")?;
    if !status.success() {
        bail!("chaos: some scenarios failed");
    }
    Ok(())
}

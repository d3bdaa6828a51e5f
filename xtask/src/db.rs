//! `cargo xtask db`: a throwaway PostgreSQL for trying things by hand.
//!
//! Starts a server with pgline-testkit (the same one the tests use), prints its
//! `DATABASE_URL` on stdout, and keeps it until Ctrl-C (or SIGTERM); then stops it and
//! removes its folder. If this process dies some other way, the testkit's watchdog
//! still stops the server and removes the folder.

use anyhow::Context;
use pgline_testkit::PgServer;

/// Runs `cargo xtask db`.
pub fn run() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    runtime.block_on(serve())
}

async fn serve() -> anyhow::Result<()> {
    let server = PgServer::start()
        .await
        .context("starting a throwaway postgresql")?;
    println!("DATABASE_URL={}", server.url("postgres"));
    eprintln!(
        "xtask db: postgresql on 127.0.0.1:{} (pid {}), data in {}, log in {}",
        server.port(),
        server
            .pid()
            .map_or_else(|| "?".to_owned(), |p| p.to_string()),
        server.data_dir().display(),
        server.log_path().display(),
    );
    eprintln!(
        "xtask db: try `psql {}`; press Ctrl-C to stop it and remove its data",
        server.url("postgres")
    );

    wait_for_stop_signal().await?;

    eprintln!("xtask db: stopping");
    server.stop().await.context("stopping postgresql")?;
    drop(server); // removes the folder
    eprintln!("xtask db: stopped and removed");
    Ok(())
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM.
async fn wait_for_stop_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("listening for Ctrl-C"),
        _ = terminate.recv() => Ok(()),
    }
}

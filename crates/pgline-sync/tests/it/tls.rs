//! TLS through the same rustls connector as the async pool: a test CA signs
//! a certificate for `localhost`, the server runs with `ssl=on`, and the sync
//! pool connects with the connector `pgline_async::make_connector` builds.

use std::error::Error as StdError;
use std::path::Path;
use std::time::Duration;

use pgline_config::TlsMode;
use pgline_core::ErrorKind;
use pgline_sync::{PoolOptions, SyncManager, SyncPool};
use pgline_testkit::PgServer;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

type TestResult<T> = Result<T, Box<dyn StdError + Send + Sync>>;

struct TlsServer {
    server: PgServer,
    _dir: tempfile::TempDir,
    ca_file: std::path::PathBuf,
    other_ca_file: std::path::PathBuf,
}

fn ca(name: &str) -> TestResult<CertifiedIssuer<'static, KeyPair>> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    Ok(CertifiedIssuer::self_signed(params, KeyPair::generate()?)?)
}

fn start() -> TestResult<TlsServer> {
    let ca = ca("pgline sync test CA")?;
    let other = ca_pem("pgline unrelated CA")?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "pgline test server");
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;

    let dir = tempfile::tempdir()?;
    let cert_file = dir.path().join("server.crt");
    let key_file = dir.path().join("server.key");
    let ca_file = dir.path().join("ca.crt");
    let other_ca_file = dir.path().join("other.crt");
    std::fs::write(&cert_file, cert.pem())?;
    write_private(&key_file, key.serialize_pem().as_bytes())?;
    std::fs::write(&ca_file, ca.pem())?;
    std::fs::write(&other_ca_file, other)?;
    give_to_server_user(&[dir.path(), &cert_file, &key_file])?;
    let server = PgServer::builder()
        .config("ssl", "on")
        .config("ssl_cert_file", cert_file.to_str().ok_or("path")?)
        .config("ssl_key_file", key_file.to_str().ok_or("path")?)
        .start_blocking()?;
    Ok(TlsServer {
        server,
        _dir: dir,
        ca_file,
        other_ca_file,
    })
}

fn ca_pem(name: &str) -> TestResult<String> {
    Ok(ca(name)?.pem())
}

fn write_private(path: &Path, bytes: &[u8]) -> TestResult<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    Ok(())
}

/// When we are root the server runs as `postgres`, which must own its key.
fn give_to_server_user(paths: &[&Path]) -> TestResult<()> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let user = nix::unistd::User::from_name("postgres")?
        .ok_or("running as root but there is no `postgres` user")?;
    for path in paths {
        nix::unistd::chown(*path, Some(user.uid), Some(user.gid))?;
    }
    Ok(())
}

fn pool(server: &TlsServer, mode: TlsMode, root: &Path) -> SyncPool {
    let tls = pgline_async::make_connector(mode, Some(root))
        .unwrap()
        .expect("a connector");
    // The certificate names `localhost`; the testkit listens on 127.0.0.1.
    let mut config = tokio_postgres::Config::new();
    config
        .host("localhost")
        .hostaddr(std::net::IpAddr::from([127, 0, 0, 1]))
        .port(server.server.port())
        .user("postgres")
        .dbname("postgres")
        .ssl_mode(mode.to_ssl_mode());
    SyncPool::new(
        SyncManager::new(config, Some(tls), 10),
        PoolOptions::new(1, 2).with_acquire_timeout(Duration::from_secs(3)),
    )
    .unwrap()
}

#[test]
fn connections_are_encrypted_and_certificates_checked() {
    let server = start().unwrap();
    let trusted = pool(&server, TlsMode::VerifyFull, &server.ca_file);
    trusted.initialize().unwrap();
    let encrypted: bool = trusted
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(encrypted);
    trusted.close(Duration::from_secs(1));

    let untrusted = pool(&server, TlsMode::VerifyCa, &server.other_ca_file);
    let err = untrusted.initialize().unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Connect, "{err}");
    let mut chain = Vec::new();
    let mut next: Option<&(dyn StdError + 'static)> = Some(&err);
    while let Some(e) = next {
        chain.push(e.to_string());
        next = e.source();
    }
    assert!(
        chain.iter().any(|m| m.contains("certificate")),
        "no certificate error in {chain:?}"
    );
}

//! TLS against a real PostgreSQL server with a certificate made here: a test CA
//! (made with rcgen) signs a server certificate for `localhost`, the server runs
//! with `ssl=on`, and each `sslmode` of [`TlsMode`] is checked against it the
//! way libpq defines them.
//!
//! Every connection goes to `hostaddr` 127.0.0.1 (where the testkit listens)
//! with the name under test as `host`: tokio-postgres verifies the certificate
//! against `host`, so names that do not resolve can be tested too.

use std::error::Error as StdError;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pgline_config::TlsMode;
use pgline_core::ErrorKind;
use pgline_testkit::PgServer;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::CertificateError;
use tokio_postgres_rustls::MakeRustlsConnect;

use pgline_async as connector;

type TestResult<T> = Result<T, Box<dyn StdError + Send + Sync>>;

/// The address the testkit's servers listen on.
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A throwaway CA: its certificate in PEM and the issuer that signs with it.
struct TestCa {
    pem: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> TestResult<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(Self {
            pem: issuer.pem(),
            issuer,
        })
    }

    /// A server certificate for `names` signed by this CA: (cert PEM, key PEM).
    fn server_cert(&self, names: &[&str]) -> TestResult<(String, String)> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "pgline test server");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// A server with TLS on, the CA that signed its certificate, and a folder of
/// PEM files for the client side.
struct TlsServer {
    server: PgServer,
    /// Holds the server's certificate and key (and the client's root files).
    dir: tempfile::TempDir,
    /// The CA that signed the server certificate.
    ca_file: PathBuf,
    /// Another CA, unrelated to the server.
    other_ca_file: PathBuf,
}

impl TlsServer {
    /// Starts a server whose certificate names `localhost` only.
    async fn start() -> TestResult<Self> {
        let ca = TestCa::new("pgline test CA")?;
        let other_ca = TestCa::new("pgline unrelated CA")?;
        let (cert_pem, key_pem) = ca.server_cert(&["localhost"])?;

        let dir = tempfile::tempdir()?;
        let cert_file = dir.path().join("server.crt");
        let key_file = dir.path().join("server.key");
        let ca_file = dir.path().join("ca.crt");
        let other_ca_file = dir.path().join("other-ca.crt");
        std::fs::write(&cert_file, cert_pem)?;
        write_private(&key_file, key_pem.as_bytes())?;
        std::fs::write(&ca_file, &ca.pem)?;
        std::fs::write(&other_ca_file, &other_ca.pem)?;
        give_to_server_user(&[dir.path(), &cert_file, &key_file])?;

        let server = PgServer::builder()
            .config("ssl", "on")
            .config("ssl_cert_file", path_str(&cert_file)?)
            .config("ssl_key_file", path_str(&key_file)?)
            .start()
            .await?;
        Ok(Self {
            server,
            dir,
            ca_file,
            other_ca_file,
        })
    }

    /// Connects as the testkit's user to `hostaddr` 127.0.0.1 with `host` set
    /// to `host_name` (the name the certificate is checked against), with the
    /// connector and tokio-postgres `sslmode` of `mode`, and returns whether
    /// the session is encrypted per `pg_stat_ssl`.
    async fn connect(
        &self,
        host_name: &str,
        mode: TlsMode,
        root_cert: Option<&Path>,
    ) -> TestResult<bool> {
        let tls = connector_for(mode, root_cert);
        let base = self.server.config("postgres");
        let mut config = tokio_postgres::Config::new();
        config
            .host(host_name)
            .hostaddr(LOOPBACK)
            .port(self.server.port())
            .dbname("postgres")
            .ssl_mode(mode.to_ssl_mode())
            .connect_timeout(Duration::from_secs(10));
        if let Some(user) = base.get_user() {
            config.user(user);
        }
        let connect = config.connect(tls);
        let (client, connection) = tokio::time::timeout(Duration::from_secs(20), connect).await??;
        let driver = tokio::spawn(connection);
        let row = client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await?;
        let encrypted: bool = row.try_get(0)?;
        drop(client);
        let _ = driver.await;
        Ok(encrypted)
    }

    /// A file holding the unrelated CA first and the right CA second.
    fn bundle_file(&self) -> TestResult<PathBuf> {
        let bundle = self.dir.path().join("bundle.crt");
        let mut text = std::fs::read_to_string(&self.other_ca_file)?;
        text.push_str(&std::fs::read_to_string(&self.ca_file)?);
        std::fs::write(&bundle, text)?;
        Ok(bundle)
    }
}

/// Writes a file only its owner can read (PostgreSQL refuses a looser key file).
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

/// When we are root the server runs as `postgres`, which must own its key file
/// and be able to enter the folder: chown `paths` to it. A no-op otherwise.
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

fn path_str(path: &Path) -> TestResult<&str> {
    path.to_str()
        .ok_or_else(|| format!("not UTF-8: {}", path.display()).into())
}

/// The connector for `mode`, which must not be `disable`.
fn connector_for(mode: TlsMode, root_cert: Option<&Path>) -> MakeRustlsConnect {
    match connector::make_connector(mode, root_cert) {
        Ok(Some(tls)) => tls,
        Ok(None) => panic!("{mode:?} built no connector"),
        Err(e) => panic!("{mode:?} with root file {root_cert:?}: {e}"),
    }
}

/// The rustls certificate error somewhere in `err`'s source chain (tokio-rustls
/// wraps it in an `io::Error`, whose `source()` skips it, hence `get_ref`).
fn certificate_error(err: &(dyn StdError + 'static)) -> Option<CertificateError> {
    let mut next = Some(err);
    while let Some(e) = next {
        let inner = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn StdError + 'static));
        for candidate in [Some(e), inner].into_iter().flatten() {
            if let Some(rustls::Error::InvalidCertificate(c)) =
                candidate.downcast_ref::<rustls::Error>()
            {
                return Some(c.clone());
            }
        }
        next = e.source();
    }
    None
}

/// Asserts that `result` failed on the certificate, with an error `accept`s.
fn assert_cert_error(
    what: &str,
    result: TestResult<bool>,
    accept: impl Fn(&CertificateError) -> bool,
) {
    let err = match result {
        Ok(encrypted) => panic!("{what}: connected (ssl = {encrypted}) but should have failed"),
        Err(err) => err,
    };
    match certificate_error(err.as_ref()) {
        Some(cert_err) => assert!(accept(&cert_err), "{what}: wrong error {cert_err:?}"),
        None => panic!("{what}: failed, but not on the certificate: {err}"),
    }
}

fn is_name_mismatch(e: &CertificateError) -> bool {
    matches!(
        e,
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
    )
}

fn is_unknown_issuer(e: &CertificateError) -> bool {
    matches!(e, CertificateError::UnknownIssuer)
}

#[tokio::test]
async fn verify_full_with_the_right_ca_and_name_connects_encrypted() {
    let tls = TlsServer::start().await.expect("TLS server");
    let ca = tls.ca_file.clone();
    let encrypted = tls
        .connect("localhost", TlsMode::VerifyFull, Some(&ca))
        .await
        .unwrap_or_else(|e| panic!("verify-full to localhost: {e}"));
    assert!(encrypted, "pg_stat_ssl.ssl is false");

    // Every certificate of the root file is trusted, not only the first.
    let bundle = tls.bundle_file().expect("bundle file");
    let encrypted = tls
        .connect("localhost", TlsMode::VerifyFull, Some(&bundle))
        .await
        .unwrap_or_else(|e| panic!("verify-full with a two-CA bundle: {e}"));
    assert!(encrypted);
}

#[tokio::test]
async fn verify_full_checks_the_name_and_verify_ca_does_not() {
    let tls = TlsServer::start().await.expect("TLS server");
    let ca = tls.ca_file.clone();
    // The certificate names `localhost` only: an IP address and another name
    // both fail verify-full...
    for wrong in ["127.0.0.1", "db.pgline.invalid"] {
        let result = tls.connect(wrong, TlsMode::VerifyFull, Some(&ca)).await;
        assert_cert_error(&format!("verify-full to {wrong}"), result, is_name_mismatch);
    }
    // ...and pass verify-ca, which checks the chain only.
    for wrong in ["127.0.0.1", "db.pgline.invalid"] {
        let encrypted = tls
            .connect(wrong, TlsMode::VerifyCa, Some(&ca))
            .await
            .unwrap_or_else(|e| panic!("verify-ca to {wrong}: {e}"));
        assert!(encrypted);
    }
}

#[tokio::test]
async fn an_unrelated_ca_is_refused_by_every_verifying_mode() {
    let tls = TlsServer::start().await.expect("TLS server");
    let other = tls.other_ca_file.clone();
    // `require` with a root file verifies the chain, as in libpq.
    for mode in [TlsMode::VerifyFull, TlsMode::VerifyCa, TlsMode::Require] {
        let result = tls.connect("localhost", mode, Some(&other)).await;
        assert_cert_error(
            &format!("{mode:?} with an unrelated CA"),
            result,
            is_unknown_issuer,
        );
    }
    // Without a root file the Mozilla roots are used, which do not know the
    // test CA either.
    let result = tls.connect("localhost", TlsMode::VerifyFull, None).await;
    assert_cert_error(
        "verify-full with the Mozilla roots",
        result,
        is_unknown_issuer,
    );
}

#[tokio::test]
async fn require_and_prefer_without_a_root_file_encrypt_unverified() {
    let tls = TlsServer::start().await.expect("TLS server");
    // No root file: any certificate and any name are accepted, but the
    // session is still encrypted.
    for mode in [TlsMode::Require, TlsMode::Prefer] {
        for host in ["localhost", "db.pgline.invalid"] {
            let encrypted = tls
                .connect(host, mode, None)
                .await
                .unwrap_or_else(|e| panic!("{mode:?} to {host}: {e}"));
            assert!(encrypted, "{mode:?} to {host}: not encrypted");
        }
    }
    // `prefer` never checks the certificate, even with an unrelated root file.
    let other = tls.other_ca_file.clone();
    let encrypted = tls
        .connect("localhost", TlsMode::Prefer, Some(&other))
        .await
        .unwrap_or_else(|e| panic!("prefer with an unrelated root file: {e}"));
    assert!(encrypted);
}

#[test]
fn disable_builds_no_connector() {
    let built = connector::make_connector(TlsMode::Disable, None).expect("disable");
    assert!(built.is_none());
}

#[test]
fn unusable_root_files_are_rejected_with_their_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.crt");
    let empty = dir.path().join("empty.crt");
    std::fs::write(&empty, "not a certificate\n").expect("write");
    let garbage = dir.path().join("garbage.crt");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    for (file, what) in [
        (&missing, "cannot be read"),
        (&empty, "holds no certificate"),
        (&garbage, "not a usable root"),
    ] {
        let Err(err) = connector::make_connector(TlsMode::VerifyFull, Some(file)) else {
            panic!("{} was accepted", file.display());
        };
        assert_eq!(err.kind(), &ErrorKind::Rejected);
        let text = err.to_string();
        assert!(text.contains(&file.display().to_string()), "{text}");
        assert!(text.contains(what), "{text}");
    }
}

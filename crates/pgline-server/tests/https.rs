//! HTTPS between stations and the server: the composition root serves TLS
//! with the certificate and key of `TLS_CERT_FILE` / `TLS_KEY_FILE` (a test
//! CA made with rcgen signs a certificate for `localhost`), a client that
//! trusts the CA gets `/live`, plain HTTP and untrusting clients get
//! nothing, shutdown stays graceful, and bad files are configuration errors
//! that name the variable and the path.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pgline_config::Config;
use pgline_testkit::PgServer;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsConnector;

/// A test CA, a server certificate for `localhost` it signed, and the files.
struct Certs {
    dir: tempfile::TempDir,
    ca_pem: String,
    cert_file: PathBuf,
    key_file: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn certs() -> Certs {
    let ca = ca("pgline https test CA");
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "pgline-server test");
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_file = dir.path().join("server.crt");
    let key_file = dir.path().join("server.key");
    std::fs::write(&cert_file, cert.pem()).unwrap();
    write_private(&key_file, key.serialize_pem().as_bytes());
    Certs {
        ca_pem: ca.pem(),
        dir,
        cert_file,
        key_file,
    }
}

fn write_private(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.write_all(bytes).unwrap();
}

fn connector(ca_pem: &str) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// Sends a `GET` on `stream` and reads the answer until the server closes.
async fn get<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0_u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

async fn https_get(addr: SocketAddr, ca_pem: &str, path: &str) -> std::io::Result<String> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    let tls = connector(ca_pem).connect(name, tcp).await?;
    Ok(get(tls, path).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_refuses_plain_http_and_shuts_down_gracefully() {
    let server = PgServer::shared();
    let db = server.fresh_database().await.unwrap();
    let url = server.url(&db);
    let certs = certs();
    let config = Config::from_vars([
        ("DATABASE_URL", url.as_str()),
        ("NODE_ENV", "test"),
        ("TLS_CERT_FILE", certs.cert_file.to_str().unwrap()),
        ("TLS_KEY_FILE", certs.key_file.to_str().unwrap()),
    ])
    .unwrap();
    let https = config.server.https.as_ref().expect("HTTPS configured");
    assert_eq!(https.cert_setting, "TLS_CERT_FILE");
    assert!(!format!("{config:?}").contains("PRIVATE KEY"));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(pgline_server::run(config, Some(listener), async move {
        let _ = stopped.await;
    }));

    // Serving once /live answers over TLS (after migrations).
    let mut live = String::new();
    for _ in 0..100 {
        if let Ok(answer) = https_get(addr, &certs.ca_pem, "/live").await
            && answer.starts_with("HTTP/1.1 200")
        {
            live = answer;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        live.starts_with("HTTP/1.1 200"),
        "no HTTPS answer: {live:?}"
    );
    let ready = https_get(addr, &certs.ca_pem, "/ready").await.unwrap();
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");

    // Plain HTTP on the TLS port: no HTTP answer, the connection is closed.
    let plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(20), get(plain, "/live"))
        .await
        .expect("the server closes a plain-HTTP connection");
    assert!(
        !answer.contains("HTTP/1.1"),
        "plain HTTP answered: {answer:?}"
    );

    // A client that does not trust the certificate's CA refuses it.
    let other = ca("unrelated CA").pem();
    let untrusted = https_get(addr, &other, "/live").await;
    assert!(untrusted.is_err(), "an untrusted certificate was accepted");

    // The server still serves after the failed handshakes.
    let again = https_get(addr, &certs.ca_pem, "/live").await.unwrap();
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");

    // Graceful shutdown with TLS: run returns Ok and the port is closed.
    stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("shutdown within bound");
    result.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
    drop(certs.dir);
}

fn load_error(vars: &[(&str, &str)]) -> String {
    Config::from_vars(vars.iter().copied())
        .map(|_| "loaded".to_owned())
        .unwrap_or_else(|e| e.to_string())
}

#[test]
fn bad_tls_files_are_configuration_errors_naming_variable_and_path() {
    let certs = certs();
    let cert = certs.cert_file.to_str().unwrap();
    let key = certs.key_file.to_str().unwrap();

    let error = load_error(&[("TLS_CERT_FILE", cert)]);
    assert!(
        error.starts_with("TLS_KEY_FILE: required when TLS_CERT_FILE is set"),
        "{error}"
    );
    let error = load_error(&[("TLS_KEY_FILE", key)]);
    assert!(
        error.starts_with("TLS_CERT_FILE: required when TLS_KEY_FILE is set"),
        "{error}"
    );

    let missing = certs.dir.path().join("missing.key");
    let missing = missing.to_str().unwrap();
    let error = load_error(&[("TLS_CERT_FILE", cert), ("TLS_KEY_FILE", missing)]);
    assert!(
        error.starts_with(&format!("TLS_KEY_FILE: cannot read {missing}")),
        "{error}"
    );

    // The certificate given as the key, the key given as the certificate.
    let error = load_error(&[("TLS_CERT_FILE", key), ("TLS_KEY_FILE", cert)]);
    assert!(
        error.contains(&format!("TLS_CERT_FILE: {key} holds no PEM certificate")),
        "{error}"
    );
    assert!(
        error.contains(&format!(
            "TLS_KEY_FILE: {cert} holds no unencrypted PEM private key"
        )),
        "{error}"
    );
    let key_text = std::fs::read_to_string(&certs.key_file).unwrap();
    let key_body = key_text.lines().nth(1).unwrap();
    assert!(!error.contains(key_body), "the key's text is in: {error}");

    // A key that is not the certificate's: loading accepts the files, the
    // server's TLS set-up refuses the pair, naming both.
    let stranger = certs.dir.path().join("stranger.key");
    write_private(
        &stranger,
        KeyPair::generate().unwrap().serialize_pem().as_bytes(),
    );
    let config = Config::from_vars([
        ("TLS_CERT_FILE", cert),
        ("TLS_KEY_FILE", stranger.to_str().unwrap()),
    ])
    .unwrap();
    let error = pgline_server::tls_server_config(config.server.https.as_ref().unwrap())
        .expect_err("a mismatched key is refused")
        .to_string();
    assert!(
        error.starts_with(&format!(
            "TLS_CERT_FILE: {cert} and TLS_KEY_FILE: {}",
            stranger.display()
        )),
        "{error}"
    );

    // The same pair through the file's keys names them as written there.
    let toml = certs.dir.path().join("pgline.toml");
    std::fs::write(
        &toml,
        format!("[server]\ntls_cert_file = \"{cert}\"\ntls_key_file = \"{missing}\"\n"),
    )
    .unwrap();
    let error = load_error(&[("PGLINE_CONFIG", toml.to_str().unwrap())]);
    assert!(
        error.starts_with(&format!(
            "server.tls_key_file in {}: cannot read {missing}",
            toml.display()
        )),
        "{error}"
    );
}

#[test]
fn production_on_plain_http_warns_at_start() {
    let production = [
        ("NODE_ENV", "production"),
        ("DB_HOST", "db"),
        ("DB_NAME", "plant"),
        ("DB_USER", "pgline"),
        ("DB_PASSWORD", "pw"),
        ("DB_SSL", "true"),
    ];
    let config = Config::from_vars(production).unwrap();
    let warning = pgline_server::plain_http_warning(&config).unwrap_or_default();
    assert!(warning.contains("serving plain HTTP"), "{warning}");
    let certs = certs();
    let with_tls = production.into_iter().chain([
        ("TLS_CERT_FILE", certs.cert_file.to_str().unwrap()),
        ("TLS_KEY_FILE", certs.key_file.to_str().unwrap()),
    ]);
    let config = Config::from_vars(with_tls).unwrap();
    assert_eq!(pgline_server::plain_http_warning(&config), None);
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());

    // A key file others can read draws a warning that names it.
    std::fs::set_permissions(
        &certs.key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let config = Config::from_vars(production.into_iter().chain([
        ("TLS_CERT_FILE", certs.cert_file.to_str().unwrap()),
        ("TLS_KEY_FILE", certs.key_file.to_str().unwrap()),
    ]))
    .unwrap();
    let warnings = config.warnings();
    assert!(
        warnings.iter().any(|w| w.starts_with(&format!(
            "TLS_KEY_FILE: {} is readable by group or others",
            certs.key_file.display()
        ))),
        "{warnings:?}"
    );
}

//! HTTPS between stations and the server: rustls (ring provider) in front of
//! the same router, with the certificate and key of `TLS_CERT_FILE` and
//! `TLS_KEY_FILE`.
//!
//! Handshakes run on their own tasks, bounded by [`HANDSHAKE_TIMEOUT`], and
//! only finished TLS connections reach axum's accept loop: a client that
//! connects and says nothing cannot hold up the others. Graceful shutdown is
//! axum's: it stops accepting, which drops the listener and ends the accept
//! task, and lets connections in flight finish.

use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use axum::Router;
use axum::serve::ListenerExt;
use pgline_config::{Config, HttpsConfig, Profile};
use pgline_core::BoxFuture;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Bound on one TLS handshake; a client slower than this is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Finished handshakes waiting for axum to take them.
const ACCEPT_QUEUE: usize = 64;

/// The rustls server configuration of `https`: its certificate chain and
/// private key, the ring provider, TLS 1.2 and 1.3, HTTP/1.1. The error
/// names the setting and the file, never the key's content.
pub fn server_config(https: &HttpsConfig) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let cert_named = || format!("{}: {}", https.cert_setting, https.cert_file.display());
    let key_named = || format!("{}: {}", https.key_setting, https.key_file.display());
    let certs = CertificateDer::pem_slice_iter(&https.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            anyhow!(
                "{} holds a PEM certificate that cannot be read",
                cert_named()
            )
        })?;
    if certs.is_empty() {
        return Err(anyhow!("{} holds no PEM certificate", cert_named()));
    }
    // The parser's error is not repeated: it may describe the key's text.
    let key = PrivateKeyDer::from_pem_slice(https.key_pem.expose().as_bytes()).map_err(|_| {
        anyhow!(
            "{} holds no private key that can be used; expected an unencrypted PKCS#8, \
             RSA (PKCS#1) or EC (SEC1) key in PEM",
            key_named()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            anyhow!(
                "{} and {}: the key and the certificate cannot be used together: {e}",
                cert_named(),
                key_named()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The warning a production server on plain HTTP logs at start, or `None`
/// (HTTPS configured, or another profile).
///
/// ```
/// use pgline_config::Config;
///
/// let production = Config::from_vars([
///     ("NODE_ENV", "production"), ("DB_HOST", "db"), ("DB_NAME", "plant"),
///     ("DB_USER", "pgline"), ("DB_PASSWORD", "pw"), ("DB_SSL", "true"),
/// ])?;
/// assert!(pgline_server::plain_http_warning(&production).is_some());
/// assert!(pgline_server::plain_http_warning(&Config::from_vars([("NODE_ENV", "test")])?).is_none());
/// # Ok::<(), pgline_config::ConfigError>(())
/// ```
pub fn plain_http_warning(config: &Config) -> Option<&'static str> {
    (config.profile == Profile::Production && config.server.https.is_none()).then_some(
        "production profile without TLS_CERT_FILE/TLS_KEY_FILE: serving plain HTTP, so station \
         tokens and orders cross the plant network unencrypted unless a TLS proxy terminates \
         HTTPS in front of pgline-server (docs/operations.md, \"HTTPS between stations and the server\")",
    )
}

/// Accepts TCP connections and hands axum those whose TLS handshake
/// finished.
struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(ACCEPT_QUEUE);
        let accepting = tokio::spawn(accept_loop(tcp, TlsAcceptor::from(config), tx));
        Ok(Self {
            ready,
            local,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = tcp.accept() => accepted,
            () = ready.closed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // As axum's own listener: per-connection errors are the
                // client's; others (too many open files) need a pause.
                if !matches!(
                    error.kind(),
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                ) {
                    tracing::error!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                continue;
            }
        };
        let (acceptor, ready) = (acceptor.clone(), ready.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out after {HANDSHAKE_TIMEOUT:?}");
                }
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept task ended (it only does when this listener is
            // dropped): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The HTTP server on `listener`, over TLS when `tls` is given, stopping
/// gracefully when `signal` resolves.
pub(crate) fn server(
    tls: Option<Arc<rustls::ServerConfig>>,
    listener: TcpListener,
    router: Router,
    signal: impl Future<Output = ()> + Send + 'static,
) -> io::Result<BoxFuture<'static, io::Result<()>>> {
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    Ok(match tls {
        None => Box::pin(
            axum::serve(listener, service)
                .with_graceful_shutdown(signal)
                .into_future(),
        ),
        Some(config) => {
            // `tap_io` is what gives a custom listener `ConnectInfo`.
            let listener = TlsListener::new(listener, config)?.tap_io(|tls| {
                let _ = tls.get_ref().0.set_nodelay(true);
            });
            Box::pin(
                axum::serve(listener, service)
                    .with_graceful_shutdown(signal)
                    .into_future(),
            )
        }
    })
}

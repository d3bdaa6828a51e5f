//! TLS for connections to PostgreSQL: the rustls connector for each of libpq's
//! `sslmode` words ([`TlsMode`]).
//!
//! tokio-postgres only knows whether to ask for TLS (`disable`, `prefer`,
//! `require`, see [`TlsMode::to_ssl_mode`]); how far the server's certificate is
//! trusted is decided here, by the certificate verifier of the rustls config:
//!
//! | mode | chain checked | host name checked |
//! | --- | --- | --- |
//! | `disable` | (no TLS, no connector) | |
//! | `prefer` | no | no |
//! | `require` | only when a root certificate file is given (as libpq does) | no |
//! | `verify-ca` | yes | no |
//! | `verify-full` | yes | yes |
//!
//! The roots are the certificates of the given PEM file, else the Mozilla roots
//! of the `webpki-roots` crate. The crypto provider is always ring, chosen
//! explicitly: `ClientConfig::builder()` would panic if another dependency
//! compiled a second provider (aws-lc-rs) into the program.
//!
//! Even when the certificate is not checked, the handshake signatures are: the
//! server must hold the private key of the certificate it shows.

use std::path::Path;
use std::sync::Arc;

use pgline_config::TlsMode;
use pgline_core::{DbError, ErrorKind};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

/// Builds the TLS connector for `mode`; `None` for [`TlsMode::Disable`].
///
/// `root_cert` is a PEM file of trusted root certificates (every certificate in
/// it is trusted); without it the Mozilla roots of `webpki-roots` are used. A
/// given file is read in every mode but `disable`, so a wrong path fails here
/// rather than silently weakening the mode. With [`TlsMode::Require`] a given
/// file turns on the chain check, like [`TlsMode::VerifyCa`] (libpq's rule);
/// [`TlsMode::Prefer`] never checks the certificate, because tokio-postgres does
/// not fall back to plain TCP when a handshake fails.
///
/// Pair the connector with `tokio_postgres::Config::ssl_mode(mode.to_ssl_mode())`.
///
/// # Errors
///
/// [`ErrorKind::Rejected`] when the root certificate file cannot be read, holds
/// no certificate or holds one rustls cannot use, or when the TLS configuration
/// cannot be built.
pub fn make_connector(
    mode: TlsMode,
    root_cert: Option<&Path>,
) -> Result<Option<MakeRustlsConnect>, DbError> {
    let check = match mode {
        TlsMode::Disable => return Ok(None),
        TlsMode::Prefer => Check::Nothing,
        TlsMode::Require if root_cert.is_none() => Check::Nothing,
        TlsMode::Require | TlsMode::VerifyCa => Check::Chain,
        TlsMode::VerifyFull => Check::ChainAndName,
    };
    let roots = match root_cert {
        Some(path) => Some(load_roots(path)?),
        None => None,
    };
    let config = client_config(check, roots)?;
    Ok(Some(MakeRustlsConnect::new(config)))
}

/// How much of the server's certificate the connector checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Nothing but the handshake signatures (`prefer`, `require` without roots).
    Nothing,
    /// The chain up to a trusted root, not the host name (`verify-ca`).
    Chain,
    /// The chain and the host name (`verify-full`).
    ChainAndName,
}

/// The ring provider, chosen explicitly (see the module docs).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls client config for `check`; `roots` replaces the Mozilla roots.
fn client_config(check: Check, roots: Option<RootCertStore>) -> Result<ClientConfig, DbError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| {
            DbError::other(ErrorKind::Rejected, e)
                .with_context("building the TLS configuration (protocol versions)")
        })?;
    let trusted = || Arc::new(roots.unwrap_or_else(mozilla_roots));
    let config = match check {
        Check::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoCertificateCheck { provider }))
            .with_no_client_auth(),
        Check::Chain => {
            let inner = WebPkiServerVerifier::builder_with_provider(trusted(), provider)
                .build()
                .map_err(|e| {
                    DbError::other(ErrorKind::Rejected, e)
                        .with_context("building the TLS certificate verifier")
                })?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnlyCheck { inner }))
                .with_no_client_auth()
        }
        Check::ChainAndName => builder
            .with_root_certificates(trusted())
            .with_no_client_auth(),
    };
    Ok(config)
}

/// The Mozilla roots shipped by `webpki-roots`.
fn mozilla_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// Every certificate of the PEM file at `path`, as trusted roots.
fn load_roots(path: &Path) -> Result<RootCertStore, DbError> {
    let rejected = |e: Box<dyn std::error::Error + Send + Sync>, what: &str| {
        DbError::other(ErrorKind::Rejected, e).with_context(format!(
            "TLS root certificate file {}: {what}",
            path.display()
        ))
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| rejected(e.into(), "cannot be read"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| rejected(e.into(), "cannot be read as PEM"))?;
    if certs.is_empty() {
        return Err(rejected(
            "no `BEGIN CERTIFICATE` section".into(),
            "holds no certificate",
        ));
    }
    let mut roots = RootCertStore::empty();
    for (index, cert) in certs.into_iter().enumerate() {
        roots.add(cert).map_err(|e| {
            rejected(
                e.into(),
                &format!("certificate {} is not a usable root", index + 1),
            )
        })?;
    }
    Ok(roots)
}

/// `prefer` and `require` without roots: any certificate is accepted, but the
/// handshake signatures are still checked with the provider's algorithms.
#[derive(Debug)]
struct NoCertificateCheck {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for NoCertificateCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `verify-ca`: the full WebPKI check (chain, validity dates, key usage), with
/// only the host name mismatch forgiven. rustls checks the name last, so a name
/// error means everything before it passed.
#[derive(Debug)]
struct ChainOnlyCheck {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnlyCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disable_builds_no_connector() {
        assert!(matches!(make_connector(TlsMode::Disable, None), Ok(None)));
        // Disable ignores the file entirely, even one that does not exist.
        let missing = Path::new("/nonexistent/pgline-root.crt");
        assert!(matches!(
            make_connector(TlsMode::Disable, Some(missing)),
            Ok(None)
        ));
    }

    #[test]
    fn every_other_mode_builds_with_the_mozilla_roots() {
        for mode in [
            TlsMode::Prefer,
            TlsMode::Require,
            TlsMode::VerifyCa,
            TlsMode::VerifyFull,
        ] {
            assert!(
                matches!(make_connector(mode, None), Ok(Some(_))),
                "{mode:?}"
            );
        }
    }

    #[test]
    fn a_missing_root_file_is_rejected_and_named() {
        let missing = Path::new("/nonexistent/pgline-root.crt");
        for mode in [TlsMode::Require, TlsMode::VerifyFull] {
            let Err(err) = make_connector(mode, Some(missing)) else {
                panic!("{mode:?}: a missing root file was accepted");
            };
            assert_eq!(err.kind(), &ErrorKind::Rejected);
            assert!(
                err.to_string().contains("/nonexistent/pgline-root.crt"),
                "{err}"
            );
        }
    }
}

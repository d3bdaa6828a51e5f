//! HTTPS for `pgline-server`: the certificate chain and private key PEM files
//! (`TLS_CERT_FILE`, `TLS_KEY_FILE`), read and checked at load time.
//!
//! Loading checks what can be checked without a TLS library: both files or
//! neither, each readable, not oversized, and holding a PEM block of the
//! right kind. The server parses the blocks and checks that the key belongs
//! to the certificate when it starts. No message ever quotes the key file.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::reader::Reader;
use crate::secret::read_bounded;
use crate::{Config, Secret, sources};

/// Largest certificate file accepted: a chain, not a bundle of every CA.
const MAX_CERT_FILE_BYTES: u64 = 1024 * 1024;
/// Largest private-key file accepted.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;
const CERT_KEY: &str = "server.tls_cert_file";
const KEY_KEY: &str = "server.tls_key_file";

/// HTTPS settings of `pgline-server`: the PEM certificate chain
/// (`TLS_CERT_FILE`) and its private key (`TLS_KEY_FILE`), as read at load
/// time. When the server configuration has one, the server serves HTTPS
/// only.
///
/// `Debug` shows the settings and paths, never the key.
///
/// ```
/// use pgline_config::Config;
///
/// let error = Config::from_vars([("TLS_CERT_FILE", "/etc/pgline/cert.pem")]).unwrap_err();
/// assert!(error.to_string().starts_with("TLS_KEY_FILE: required when TLS_CERT_FILE is set"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct HttpsConfig {
    /// The setting that named the certificate file, as the user wrote it
    /// (`TLS_CERT_FILE`, `server.tls_cert_file in /etc/pgline.toml`).
    pub cert_setting: String,
    /// The certificate file: the server's certificate first, then the
    /// intermediates.
    pub cert_file: PathBuf,
    /// The certificate file's content (PEM).
    pub cert_pem: Vec<u8>,
    /// The setting that named the key file, as the user wrote it.
    pub key_setting: String,
    /// The private-key file.
    pub key_file: PathBuf,
    /// The key file's content (PEM): a secret.
    pub key_pem: Secret,
    /// The key file's permission bits when it was read (Unix only).
    pub key_mode: Option<u32>,
}

impl HttpsConfig {
    /// Whether users other than the owner could read the key file when it
    /// was read.
    pub fn key_readable_by_others(&self) -> bool {
        self.key_mode.is_some_and(|mode| mode & 0o044 != 0)
    }
}

impl fmt::Debug for HttpsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpsConfig")
            .field("cert_setting", &self.cert_setting)
            .field("cert_file", &self.cert_file)
            .field("key_setting", &self.key_setting)
            .field("key_file", &self.key_file)
            .field("key_pem", &self.key_pem)
            .field("key_mode", &self.key_mode)
            .finish_non_exhaustive()
    }
}

/// Checks that `bytes` hold a PEM block labelled as `wanted` says; the error
/// names the path, never the content.
fn pem_block(path: &Path, bytes: &[u8], certificate: bool) -> Result<(), String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| format!("{} is not a PEM text file", path.display()))?;
    let found = text.lines().map(str::trim).any(|line| {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
        else {
            return false;
        };
        match certificate {
            true => label == "CERTIFICATE",
            false => label.ends_with("PRIVATE KEY") && !label.contains("ENCRYPTED"),
        }
    });
    match (found, certificate) {
        (true, _) => Ok(()),
        (false, true) => Err(format!(
            "{} holds no PEM certificate; expected a file with -----BEGIN CERTIFICATE----- blocks \
             (the server's certificate first, then the intermediates)",
            path.display()
        )),
        (false, false) => Err(format!(
            "{} holds no unencrypted PEM private key; expected -----BEGIN PRIVATE KEY----- \
             (PKCS#8), -----BEGIN RSA PRIVATE KEY----- or -----BEGIN EC PRIVATE KEY-----",
            path.display()
        )),
    }
}

impl Reader<'_> {
    /// `TLS_CERT_FILE` and `TLS_KEY_FILE`: both or neither, each readable
    /// and holding the right kind of PEM block.
    pub(crate) fn https(&mut self) -> Option<HttpsConfig> {
        let cert = self.text(CERT_KEY, "the path of a PEM certificate file");
        let key = self.text(KEY_KEY, "the path of a PEM private-key file");
        let (cert, key) = match (cert, key) {
            (None, None) => return None,
            (Some(cert), Some(key)) => (PathBuf::from(cert), PathBuf::from(key)),
            (cert, _) => {
                let (given, missing) = match cert {
                    Some(_) => (CERT_KEY, KEY_KEY),
                    None => (KEY_KEY, CERT_KEY),
                };
                let var = sources::variable_for(missing).unwrap_or(missing);
                let message = format!(
                    "required when {} is set: HTTPS needs the certificate (TLS_CERT_FILE) and its \
                     private key (TLS_KEY_FILE), or neither for plain HTTP; or {missing} in the \
                     configuration file",
                    self.setting(given)
                );
                self.problem(var, message);
                return None;
            }
        };
        let (cert_setting, key_setting) = (self.setting(CERT_KEY), self.setting(KEY_KEY));
        let cert_pem = read_bounded(&cert, MAX_CERT_FILE_BYTES, "PEM certificates")
            .and_then(|(bytes, _)| pem_block(&cert, &bytes, true).map(|()| bytes));
        let key_pem = read_bounded(&key, MAX_KEY_FILE_BYTES, "a PEM private key").and_then(
            |(bytes, mode)| {
                pem_block(&key, &bytes, false)?;
                let text = String::from_utf8(bytes)
                    .map_err(|_| format!("{} is not a PEM text file", key.display()))?;
                Ok((text, mode))
            },
        );
        let cert_pem = cert_pem
            .map_err(|message| self.problem(cert_setting.clone(), message))
            .ok();
        let key_pem = key_pem
            .map_err(|message| self.problem(key_setting.clone(), message))
            .ok();
        let (cert_pem, (key_pem, key_mode)) = (cert_pem?, key_pem?);
        Some(HttpsConfig {
            cert_setting,
            cert_file: cert,
            cert_pem,
            key_setting,
            key_file: key,
            key_pem: Secret::new(key_pem),
            key_mode,
        })
    }
}

impl Config {
    /// The warnings about HTTPS, part of [`warnings`](Config::warnings): a
    /// key file readable by others. (A production server on plain HTTP is
    /// warned about by the server when it starts: tools that only use the
    /// database load the same configuration.)
    pub(crate) fn https_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        match &self.server.https {
            Some(https) if https.key_readable_by_others() => warnings.push(format!(
                "{}: {} is readable by group or others (mode {:04o}); restrict it with chmod 600",
                https.key_setting,
                https.key_file.display(),
                https.key_mode.unwrap_or_default()
            )),
            _ => {}
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_labels() {
        let path = Path::new("/x.pem");
        let cert = b"junk\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        assert!(pem_block(path, cert, true).is_ok());
        assert!(pem_block(path, cert, false).is_err());
        for key in [
            "-----BEGIN PRIVATE KEY-----",
            "-----BEGIN RSA PRIVATE KEY-----",
            "  -----BEGIN EC PRIVATE KEY-----  ",
        ] {
            assert!(pem_block(path, key.as_bytes(), false).is_ok(), "{key}");
        }
        let encrypted = b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nsecret\n";
        let error = pem_block(path, encrypted, false).unwrap_err();
        assert!(error.contains("/x.pem holds no unencrypted PEM private key"));
        assert!(!error.contains("secret"));
        assert!(pem_block(path, &[0xff, 0xfe], true).is_err());
    }
}

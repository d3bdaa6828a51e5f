//! The settings whose value is one word out of a fixed list.

use std::fmt;
use std::str::FromStr;

/// A word that is not one of the accepted words of a setting.
///
/// Returned by the `FromStr` implementations of [`Profile`], [`TlsMode`],
/// [`TargetSessionAttrs`], [`Backend`] and [`LogLevel`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {}, got {got:?}", one_of(.accepted))]
pub struct UnknownWord {
    /// The accepted words.
    pub accepted: &'static [&'static str],
    /// What was given instead.
    pub got: String,
}

/// `a, b or c`.
pub(crate) fn one_of(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [only] => (*only).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Defines a unit enum whose variants are spelled as fixed words: `as_str`,
/// `Display`, a case-insensitive `FromStr` and the list of accepted words.
macro_rules! word_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $word:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// The accepted words, in order.
            pub const WORDS: &'static [&'static str] = &[$($word),+];

            /// The word that names this value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $word, )+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownWord;

            /// Parses one of [`Self::WORDS`], ignoring ASCII case and
            /// surrounding whitespace.
            fn from_str(s: &str) -> Result<Self, UnknownWord> {
                let word = s.trim();
                $( if word.eq_ignore_ascii_case($word) { return Ok(Self::$variant); } )+
                Err(UnknownWord { accepted: Self::WORDS, got: s.to_owned() })
            }
        }
    };
}

word_enum! {
    /// The deployment profile, from `NODE_ENV` (or `APP_ENV`). It chooses the
    /// defaults and, for production, which settings are required.
    pub enum Profile {
        /// Small pool, local database defaults (`postgres`/`postgres` on localhost).
        Development = "development",
        /// Larger pool; the database settings and `DB_SSL` must be given.
        Production = "production",
        /// Small pool with short timeouts, for automated tests.
        Test = "test",
    }
}

word_enum! {
    /// How the connection to PostgreSQL uses TLS, with libpq's `sslmode` words.
    ///
    /// tokio-postgres itself only knows disable, prefer and require
    /// ([`TlsMode::to_ssl_mode`]); checking the certificate is the job of the
    /// TLS connector the pool builds from this mode.
    pub enum TlsMode {
        /// Plain TCP, no TLS.
        Disable = "disable",
        /// TLS if the server offers it, else plain TCP; no certificate check.
        Prefer = "prefer",
        /// TLS required; the certificate is not checked.
        Require = "require",
        /// TLS required; the certificate chain must lead to a trusted root.
        VerifyCa = "verify-ca",
        /// TLS required; trusted chain and the host name must match the certificate.
        /// What `DB_SSL=true` means.
        VerifyFull = "verify-full",
    }
}

impl TlsMode {
    /// The `sslmode` tokio-postgres understands: `disable` and `prefer` map to
    /// themselves, the three modes that require TLS map to `Require`.
    pub fn to_ssl_mode(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode;
        match self {
            Self::Disable => SslMode::Disable,
            Self::Prefer => SslMode::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => SslMode::Require,
        }
    }

    /// Whether the connector must check the certificate chain.
    pub fn verifies_certificate(self) -> bool {
        matches!(self, Self::VerifyCa | Self::VerifyFull)
    }

    /// Whether the connector must check that the host name matches the certificate.
    pub fn verifies_host_name(self) -> bool {
        matches!(self, Self::VerifyFull)
    }

    /// A few words for people: what this mode does.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Disable => "no TLS",
            Self::Prefer => "TLS when the server offers it, certificate not checked",
            Self::Require => "TLS required, certificate not checked",
            Self::VerifyCa => "TLS required, certificate chain checked",
            Self::VerifyFull => "TLS required, certificate chain and host name checked",
        }
    }
}

word_enum! {
    /// Which server a connection may land on when several hosts are listed
    /// (libpq's `target_session_attrs`).
    pub enum TargetSessionAttrs {
        /// Any server that accepts the connection.
        Any = "any",
        /// Only a server that accepts writes (the primary).
        ReadWrite = "read-write",
        /// Only a server in read-only mode (a standby).
        ReadOnly = "read-only",
    }
}

impl TargetSessionAttrs {
    /// The tokio-postgres equivalent.
    pub fn to_tokio_postgres(self) -> tokio_postgres::config::TargetSessionAttrs {
        use tokio_postgres::config::TargetSessionAttrs as T;
        match self {
            Self::Any => T::Any,
            Self::ReadWrite => T::ReadWrite,
            Self::ReadOnly => T::ReadOnly,
        }
    }
}

word_enum! {
    /// Which pool backend `pgline-server` runs on (`DB_BACKEND`).
    pub enum Backend {
        /// pgline's own pool on tokio + tokio-postgres.
        Async = "async",
        /// r2d2 + the synchronous `postgres` client.
        Sync = "sync",
    }
}

word_enum! {
    /// The log level (`LOG_LEVEL`), as the tracing levels.
    pub enum LogLevel {
        /// Errors only.
        Error = "error",
        /// Errors and warnings.
        Warn = "warn",
        /// The default: lifecycle events and warnings.
        Info = "info",
        /// Detail for troubleshooting.
        Debug = "debug",
        /// Everything.
        Trace = "trace",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_ignore_case() {
        for word in TlsMode::WORDS {
            let mode: TlsMode = word.parse().unwrap_or(TlsMode::Disable);
            assert_eq!(mode.as_str(), *word);
        }
        assert_eq!(" Verify-Full ".parse::<TlsMode>(), Ok(TlsMode::VerifyFull));
        assert_eq!("PRODUCTION".parse::<Profile>(), Ok(Profile::Production));
    }

    #[test]
    fn unknown_word_lists_the_accepted_ones() {
        let err = "loud".parse::<LogLevel>().err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(r#"expected error, warn, info, debug or trace, got "loud""#)
        );
    }

    #[test]
    fn tls_modes_map_to_tokio_postgres() {
        use tokio_postgres::config::SslMode;
        assert_eq!(TlsMode::Disable.to_ssl_mode(), SslMode::Disable);
        assert_eq!(TlsMode::Prefer.to_ssl_mode(), SslMode::Prefer);
        for mode in [TlsMode::Require, TlsMode::VerifyCa, TlsMode::VerifyFull] {
            assert_eq!(mode.to_ssl_mode(), SslMode::Require);
        }
        assert!(TlsMode::VerifyFull.verifies_host_name());
        assert!(TlsMode::VerifyCa.verifies_certificate());
        assert!(!TlsMode::VerifyCa.verifies_host_name());
        assert!(!TlsMode::Require.verifies_certificate());
    }
}

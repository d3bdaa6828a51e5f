//! Reading a presented token out of `Authorization`, and finding whose it is
//! without leaking anything through timing.

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use pgline_config::{NamedToken, TokenHash};
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// Longest `Authorization` value looked at; a token of `openssl rand -hex 32`
/// is 64 characters. Longer values are refused before any work is done.
const MAX_AUTHORIZATION_LEN: usize = 1024;

/// The SHA-256 of a token, as the token files hold it.
///
/// ```
/// let hash = pgline_server::hash_token("test");
/// assert_eq!(hash.to_hex(), "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
/// ```
pub fn hash_token(token: &str) -> TokenHash {
    TokenHash::from_bytes(Sha256::digest(token.as_bytes()).into())
}

/// Which `Authorization` schemes an endpoint accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Schemes {
    /// `Bearer <token>` only (the API: stations are machines).
    Bearer,
    /// `Bearer <token>`, or `Basic` with the token as the password and any
    /// user name, so that a browser can open the dashboard.
    BearerOrBasic,
}

/// Why a request was not authenticated. The variants say nothing about the
/// token itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No `Authorization` header.
    Missing,
    /// A header that is not a well-formed credential of an accepted scheme.
    Malformed(&'static str),
    /// A well-formed token that is not in the file.
    Unknown,
}

/// The token in `headers`, if they carry exactly one well-formed credential
/// of an accepted scheme.
pub(crate) fn presented_token(headers: &HeaderMap, schemes: Schemes) -> Result<Vec<u8>, Refusal> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(Refusal::Missing);
    };
    if values.next().is_some() {
        return Err(Refusal::Malformed("more than one Authorization header"));
    }
    if value.len() > MAX_AUTHORIZATION_LEN {
        return Err(Refusal::Malformed("Authorization header too long"));
    }
    let value = value
        .to_str()
        .map_err(|_| Refusal::Malformed("Authorization header is not visible ASCII"))?;
    let (scheme, credentials) = value
        .trim()
        .split_once(' ')
        .ok_or(Refusal::Malformed("Authorization header without a scheme"))?;
    let credentials = credentials.trim();
    let token = if scheme.eq_ignore_ascii_case("bearer") {
        credentials.as_bytes().to_vec()
    } else if scheme.eq_ignore_ascii_case("basic") && schemes == Schemes::BearerOrBasic {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .map_err(|_| Refusal::Malformed("Basic credentials are not base64"))?;
        let colon = decoded
            .iter()
            .position(|&b| b == b':')
            .ok_or(Refusal::Malformed(
                "Basic credentials without user:password",
            ))?;
        decoded[colon + 1..].to_vec()
    } else {
        return Err(Refusal::Malformed("unsupported Authorization scheme"));
    };
    if token.is_empty() || !token.iter().all(|b| b.is_ascii_graphic()) {
        return Err(Refusal::Malformed(
            "the token is empty or not visible ASCII",
        ));
    }
    Ok(token)
}

/// The tokens of one file, looked up by the SHA-256 of what is presented.
#[derive(Debug, Clone)]
pub(crate) struct TokenTable {
    tokens: Vec<NamedToken>,
}

impl TokenTable {
    /// A table to [`push`](Self::push) into.
    pub(crate) fn empty() -> Self {
        Self { tokens: Vec::new() }
    }

    /// A table of `tokens`; `None` when there are none (nobody could get in).
    pub(crate) fn new(tokens: Vec<NamedToken>) -> Option<Self> {
        (!tokens.is_empty()).then_some(Self { tokens })
    }

    pub(crate) fn push(&mut self, token: NamedToken) {
        self.tokens.push(token);
    }

    /// The name of the token whose hash matches `presented`'s.
    ///
    /// Every entry is compared, in constant time, whether or not an earlier
    /// one matched: how long this takes says nothing about which entry, or
    /// how much of a digest, matched. Comparing digests rather than tokens
    /// also keeps the token's length out of the timing.
    pub(crate) fn find(&self, presented: &[u8]) -> Option<&str> {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut found = subtle::Choice::from(0);
        let mut index = 0_u32;
        for (i, token) in self.tokens.iter().enumerate() {
            let matches = token.sha256.as_bytes().ct_eq(&digest);
            index.conditional_assign(&u32::try_from(i).unwrap_or(u32::MAX), matches);
            found |= matches;
        }
        if bool::from(found) {
            let index = usize::try_from(index).ok()?;
            self.tokens.get(index).map(|token| token.name.as_str())
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            if let Ok(value) = HeaderValue::from_str(value) {
                map.append(header::AUTHORIZATION, value);
            }
        }
        map
    }

    fn table() -> Option<TokenTable> {
        TokenTable::new(vec![
            NamedToken {
                name: "ST-01".into(),
                sha256: hash_token("token-one"),
            },
            NamedToken {
                name: "ST-02".into(),
                sha256: hash_token("token-two"),
            },
        ])
    }

    #[test]
    fn finds_the_owner_of_a_token() {
        let Some(table) = table() else {
            panic!("a table of two tokens")
        };
        assert_eq!(table.find(b"token-one"), Some("ST-01"));
        assert_eq!(table.find(b"token-two"), Some("ST-02"));
        assert_eq!(table.find(b"token-three"), None);
        assert_eq!(table.find(b""), None);
        assert!(TokenTable::new(Vec::new()).is_none());
    }

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        for value in ["Bearer abc", "bearer abc", "BEARER   abc  "] {
            assert_eq!(
                presented_token(&headers(&[value]), Schemes::Bearer).ok(),
                Some(b"abc".to_vec()),
                "{value}"
            );
        }
    }

    #[test]
    fn malformed_headers_are_refused() {
        let long = format!("Bearer {}", "a".repeat(2000));
        for (value, schemes) in [
            ("Bearer", Schemes::Bearer),
            ("Bearer ", Schemes::Bearer),
            ("Token abc", Schemes::Bearer),
            ("Basic dTpw", Schemes::Bearer),
            ("Basic !!!", Schemes::BearerOrBasic),
            ("Basic dXNlcg==", Schemes::BearerOrBasic),
            (long.as_str(), Schemes::Bearer),
        ] {
            let refusal = presented_token(&headers(&[value]), schemes);
            assert!(matches!(refusal, Err(Refusal::Malformed(_))), "{value}");
        }
        assert_eq!(
            presented_token(&HeaderMap::new(), Schemes::Bearer),
            Err(Refusal::Missing)
        );
        assert!(matches!(
            presented_token(&headers(&["Bearer a", "Bearer b"]), Schemes::Bearer),
            Err(Refusal::Malformed(_))
        ));
    }

    #[test]
    fn basic_credentials_carry_the_token_as_password() {
        // "admin:s3cret" and ":s3cret"
        for value in ["Basic YWRtaW46czNjcmV0", "Basic OnMzY3JldA=="] {
            assert_eq!(
                presented_token(&headers(&[value]), Schemes::BearerOrBasic).ok(),
                Some(b"s3cret".to_vec()),
                "{value}"
            );
        }
    }
}

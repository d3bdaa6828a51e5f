//! Files of bearer-token hashes: `STATION_TOKENS_FILE` and `ADMIN_TOKEN_FILE`.
//!
//! The files hold SHA-256 digests of high-entropy random tokens, never the
//! tokens: a leaked file lets nobody in. One entry a line, `name:hash`
//! (`ST-01:9f86d08…`), blank lines and `#` comments ignored. A name may
//! appear on several lines, so a station's token can be rotated without a
//! gap; one hash may not appear twice, so a token always names one client.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::secret::read_bounded;

/// Largest token file accepted: thousands of lines, not a data set.
const MAX_TOKEN_FILE_BYTES: u64 = 1024 * 1024;
/// Longest client name.
const MAX_NAME_LEN: usize = 64;
/// The name of an admin token given as a bare hash.
pub(crate) const DEFAULT_ADMIN_NAME: &str = "admin";

/// The SHA-256 digest of a bearer token: what the configuration holds
/// instead of the token itself.
///
/// `Debug` shows only the first 8 hex digits, enough to tell entries apart.
///
/// ```
/// use pgline_config::TokenHash;
///
/// // printf %s test | sha256sum
/// let hash = TokenHash::from_hex("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
/// assert!(hash.is_some());
/// assert_eq!(format!("{:?}", hash.unwrap()), "sha256:9f86d081…");
/// assert!(TokenHash::from_hex("not hex").is_none());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// A digest computed elsewhere.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses 64 hex digits, in either letter case.
    pub fn from_hex(text: &str) -> Option<Self> {
        let digits = text.as_bytes();
        if digits.len() != 64 {
            return None;
        }
        let mut bytes = [0_u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            *byte = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
        }
        Some(Self(bytes))
    }

    /// The 32 bytes of the digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.to_hex();
        write!(f, "sha256:{}…", hex.get(..8).unwrap_or_default())
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// One entry of a token file: who the token belongs to, and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedToken {
    /// The station id (`ST-01`) or client name the token authenticates as.
    pub name: String,
    /// The SHA-256 digest of the token.
    pub sha256: TokenHash,
}

/// A file of token hashes, as read at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFile {
    /// The setting that named the file, as the user wrote it
    /// (`STATION_TOKENS_FILE`, `server.station_tokens_file in /etc/pgline.toml`).
    pub setting: String,
    /// The file.
    pub path: PathBuf,
    /// Its permission bits when it was read (Unix only).
    pub mode: Option<u32>,
    /// The entries, in file order; never empty.
    pub tokens: Vec<NamedToken>,
}

impl TokenFile {
    /// Whether users other than the owner could change the file (the group
    /// or other write bit is set): whoever can write it can let themselves in.
    pub fn writable_by_others(&self) -> bool {
        self.mode.is_some_and(|mode| mode & 0o022 != 0)
    }
}

/// Whether each line must name its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Names {
    /// `name:hash` on every line (station tokens).
    Required,
    /// `name:hash` or a bare `hash`, named [`DEFAULT_ADMIN_NAME`] (admin tokens).
    Optional,
}

/// Reads and parses the token file at `path`. The error message names the
/// path and the line, never the line's text: a token pasted by mistake must
/// not reach a log.
pub(crate) fn read_token_file(
    path: &Path,
    setting: &str,
    names: Names,
) -> Result<TokenFile, String> {
    let (bytes, mode) = read_bounded(path, MAX_TOKEN_FILE_BYTES, "token hashes")?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("{} is not valid UTF-8 text", path.display()))?;
    let tokens = parse(&text, names).map_err(|message| format!("{} {message}", path.display()))?;
    Ok(TokenFile {
        setting: setting.to_owned(),
        path: path.to_owned(),
        mode,
        tokens,
    })
}

fn expected(names: Names) -> &'static str {
    match names {
        Names::Required => {
            "expected name:sha256, such as ST-01: followed by the 64 hex digits of \
             the token's SHA-256 (printf %s \"$TOKEN\" | sha256sum)"
        }
        Names::Optional => {
            "expected the 64 hex digits of the token's SHA-256 \
             (printf %s \"$TOKEN\" | sha256sum), optionally after name:"
        }
    }
}

pub(crate) fn parse(text: &str, names: Names) -> Result<Vec<NamedToken>, String> {
    let mut tokens: Vec<(usize, NamedToken)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, hash) = match (line.split_once(':'), names) {
            (Some((name, hash)), _) => (name.trim(), hash.trim()),
            (None, Names::Optional) => (DEFAULT_ADMIN_NAME, line),
            (None, Names::Required) => {
                return Err(format!("line {number}: {}", expected(names)));
            }
        };
        if name.is_empty()
            || name.len() > MAX_NAME_LEN
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(format!(
                "line {number}: the name must be 1 to {MAX_NAME_LEN} letters, digits, '.', '_' or '-', \
                 such as ST-01; {}",
                expected(names)
            ));
        }
        if hash.contains(char::is_whitespace) {
            return Err(format!(
                "line {number}: text after the hash; copy only the 64 hex digits of sha256sum's output, not the \"  -\" after them"
            ));
        }
        let Some(sha256) = TokenHash::from_hex(hash) else {
            return Err(format!("line {number}: {}", expected(names)));
        };
        if let Some((first, _)) = tokens.iter().find(|(_, t)| t.sha256 == sha256) {
            return Err(format!(
                "line {number}: the same hash as line {first}; every client needs its own token"
            ));
        }
        tokens.push((
            number,
            NamedToken {
                name: name.to_owned(),
                sha256,
            },
        ));
    }
    if tokens.is_empty() {
        return Err(format!("has no tokens; {}", expected(names)));
    }
    Ok(tokens.into_iter().map(|(_, token)| token).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const B: &str = "60303AE22B998861BCE3B28F33EEC1BE758A213C86C93C076DBE9F558C11C752";

    #[test]
    fn hex_round_trips_in_either_case() {
        let a = TokenHash::from_hex(A).map(|h| h.to_hex());
        assert_eq!(a.as_deref(), Some(A));
        let b = TokenHash::from_hex(B).map(|h| h.to_hex());
        assert_eq!(b, Some(B.to_ascii_lowercase()));
        for bad in ["", "abc", &A[..63], &format!("{A}0"), &A.replace('9', "g")] {
            assert!(TokenHash::from_hex(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn station_lines_with_comments_and_rotation() {
        let text = format!(
            "# plant 7\n\nST-01:{A}\n  ST-02 : {B}  \nST-01:{}\n",
            "0".repeat(64)
        );
        let tokens = parse(&text, Names::Required).unwrap_or_default();
        let names: Vec<&str> = tokens.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["ST-01", "ST-02", "ST-01"]);
    }

    #[test]
    fn errors_name_the_line_and_never_quote_it() {
        let secret = "c0ffee".repeat(10);
        for (text, line, what) in [
            (format!("ST-01:{A}\n{secret}\n"), 2, "expected name:sha256"),
            (format!("ST-01:{A}  -\n"), 1, "text after the hash"),
            (format!("ST 01:{A}\n"), 1, "the name must be"),
            (
                format!("ST-01:{A}\nST-02:{A}\n"),
                2,
                "the same hash as line 1",
            ),
            (format!("ST-01:{secret}\n"), 1, "expected name:sha256"),
        ] {
            let error = parse(&text, Names::Required).err().unwrap_or_default();
            assert!(error.starts_with(&format!("line {line}: ")), "{error}");
            assert!(error.contains(what), "{error}");
            assert!(!error.contains(&secret) && !error.contains(A), "{error}");
        }
        let empty = parse("# nothing\n", Names::Required)
            .err()
            .unwrap_or_default();
        assert!(empty.starts_with("has no tokens"), "{empty}");
    }

    #[test]
    fn admin_lines_may_omit_the_name() {
        let tokens = parse(&format!("{A}\nops:{B}\n"), Names::Optional).unwrap_or_default();
        let names: Vec<&str> = tokens.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, [DEFAULT_ADMIN_NAME, "ops"]);
    }
}

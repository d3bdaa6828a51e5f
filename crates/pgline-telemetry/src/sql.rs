//! What telemetry may say about a statement: its operation word and its text
//! with literals taken out.
//!
//! OpenTelemetry's database conventions collect parameterized query text as it
//! is (the values travel separately as parameters), and non-parameterized text
//! only with its literals redacted. [`QueryText`] does both: text that came with
//! parameters is shown unchanged, text without parameters (a `batch_execute`, a
//! statement with inline values) has every string, dollar-quoted and numeric
//! literal replaced by `?`.

use std::fmt::{self, Write as _};

/// Statement keywords reported as `db.operation.name`; anything else is
/// reported as no operation, which keeps the metric's label values bounded.
pub(crate) const KEYWORDS: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "MERGE",
    "WITH",
    "VALUES",
    "TABLE",
    "COPY",
    "CALL",
    "DO",
    "BEGIN",
    "START",
    "COMMIT",
    "END",
    "ROLLBACK",
    "ABORT",
    "SAVEPOINT",
    "RELEASE",
    "PREPARE",
    "EXECUTE",
    "DEALLOCATE",
    "DECLARE",
    "FETCH",
    "MOVE",
    "CLOSE",
    "CREATE",
    "ALTER",
    "DROP",
    "TRUNCATE",
    "COMMENT",
    "GRANT",
    "REVOKE",
    "SET",
    "RESET",
    "SHOW",
    "DISCARD",
    "LOCK",
    "LISTEN",
    "UNLISTEN",
    "NOTIFY",
    "EXPLAIN",
    "ANALYZE",
    "VACUUM",
    "REINDEX",
    "CLUSTER",
    "REFRESH",
    "CHECKPOINT",
    "LOAD",
    "IMPORT",
    "SECURITY",
];

/// The statement's first keyword in upper case (`SELECT`, `INSERT`...), or
/// `None` when it does not start with a known one. Leading white space,
/// comments and parentheses are skipped.
#[cfg(test)]
pub(crate) fn operation_name(sql: &str) -> Option<&'static str> {
    operation(sql).map(|i| KEYWORDS[i])
}

/// The index in [`KEYWORDS`] of the statement's first keyword.
pub(crate) fn operation(sql: &str) -> Option<usize> {
    let bytes = sql.as_bytes();
    // The common case first, in a few instructions: code writes the four
    // data keywords in upper case at the very start (KEYWORDS[0..4]).
    for (i, keyword) in KEYWORDS[..4].iter().enumerate() {
        if bytes.starts_with(keyword.as_bytes())
            && bytes
                .get(keyword.len())
                .is_none_or(|b| !b.is_ascii_alphabetic())
        {
            return Some(i);
        }
    }
    let mut i = 0;
    loop {
        match bytes.get(i) {
            Some(b) if b.is_ascii_whitespace() || *b == b'(' => i += 1,
            Some(b'-') if bytes.get(i + 1) == Some(&b'-') => {
                i = sql[i..].find('\n').map_or(bytes.len(), |n| i + n + 1);
            }
            Some(b'/') if bytes.get(i + 1) == Some(&b'*') => {
                i = sql[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |n| i + 2 + n + 2);
            }
            _ => break,
        }
    }
    // The word, upper-cased, as long as a keyword can be: a simple loop
    // (an iterator chain here cost several times more per statement).
    let mut word = [0u8; LONGEST_KEYWORD];
    let mut len = 0;
    while let Some(&b) = bytes.get(i + len) {
        if !b.is_ascii_alphabetic() {
            break;
        }
        if len == LONGEST_KEYWORD {
            return None;
        }
        word[len] = b.to_ascii_uppercase();
        len += 1;
    }
    let word = &word[..len];
    // Slices compare their lengths first: most keywords cost one comparison.
    KEYWORDS.iter().position(|k| k.as_bytes() == word)
}

/// The length of the longest of [`KEYWORDS`].
const LONGEST_KEYWORD: usize = 10;

/// A statement's text as telemetry shows it: unchanged when it came with
/// parameters, with its literals replaced by `?` when it did not.
///
/// Formatting does the work, so a disabled span or log line costs nothing.
#[derive(Clone, Copy)]
pub(crate) struct QueryText<'a> {
    sql: &'a str,
    parameterized: bool,
    limit: usize,
}

impl<'a> QueryText<'a> {
    /// The text of `sql`; `parameterized` says whether it came with parameters.
    pub(crate) fn new(sql: &'a str, parameterized: bool) -> Self {
        Self {
            sql,
            parameterized,
            limit: usize::MAX,
        }
    }

    /// At most about `limit` bytes, then `…` (for log lines).
    pub(crate) fn truncated(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
}

impl<'a> QueryText<'a> {
    /// The text as a string: borrowed when nothing needs redacting.
    pub(crate) fn to_cow(self) -> std::borrow::Cow<'a, str> {
        if self.limit < self.sql.len() {
            std::borrow::Cow::Owned(self.to_string())
        } else if self.parameterized {
            std::borrow::Cow::Borrowed(self.sql)
        } else {
            // Straight into the string, without a formatter in between.
            let mut text = String::with_capacity(self.sql.len());
            let _ = redact(self.sql, &mut text);
            std::borrow::Cow::Owned(text)
        }
    }
}

impl fmt::Display for QueryText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Limited {
            inner: f,
            left: self.limit,
            cut: false,
        };
        if self.parameterized {
            out.write_str(self.sql)?;
        } else {
            redact(self.sql, &mut out)?;
        }
        if out.cut {
            out.inner.write_char('…')?;
        }
        Ok(())
    }
}

impl fmt::Debug for QueryText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A writer that stops after `left` bytes (at a character boundary).
struct Limited<'a, 'b> {
    inner: &'a mut fmt::Formatter<'b>,
    left: usize,
    cut: bool,
}

impl fmt::Write for Limited<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.cut {
            return Ok(());
        }
        if s.len() <= self.left {
            self.left -= s.len();
            return self.inner.write_str(s);
        }
        let mut end = self.left;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.cut = true;
        self.left = 0;
        self.inner.write_str(&s[..end])
    }
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// Writes `sql` with string, escape-string, dollar-quoted and numeric literals
/// replaced by `?`. Quoted identifiers and comments are copied unchanged.
fn redact(sql: &str, out: &mut impl fmt::Write) -> fmt::Result {
    let bytes = sql.as_bytes();
    let mut i = 0;
    // Start of the stretch that is copied unchanged.
    let mut copy_from = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let prev = if i == 0 { None } else { Some(bytes[i - 1]) };
        let skip_to = match b {
            b'\'' => {
                // E'...' allows backslash escapes; the E itself stays.
                let backslash =
                    matches!(prev, Some(b'e' | b'E')) && (i < 2 || !is_ident_byte(bytes[i - 2]));
                Some(end_of_string(bytes, i + 1, backslash))
            }
            b'$' if !prev.is_some_and(is_ident_byte) => dollar_quote(sql, i),
            b'0'..=b'9' if !prev.is_some_and(is_ident_byte) => Some(end_of_number(bytes, i)),
            b'"' => {
                i = bytes[i + 1..]
                    .iter()
                    .position(|&c| c == b'"')
                    .map_or(bytes.len(), |n| i + 1 + n + 1);
                continue;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = sql[i..].find('\n').map_or(bytes.len(), |n| i + n + 1);
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = sql[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |n| i + 2 + n + 2);
                continue;
            }
            _ => None,
        };
        match skip_to {
            Some(end) => {
                out.write_str(&sql[copy_from..i])?;
                out.write_char('?')?;
                i = end;
                copy_from = end;
            }
            None => i += 1,
        }
    }
    out.write_str(&sql[copy_from.min(bytes.len())..])
}

/// The index after the quote that closes a string literal whose content
/// starts at `i` (`''` is an escaped quote; with `backslash`, so is `\'`).
fn end_of_string(bytes: &[u8], mut i: usize, backslash: bool) -> usize {
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if backslash => i += 2,
            b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// For `$tag$ ... $tag$` starting at `start`, the index after the closing
/// tag; `None` when `$` does not open a dollar quote (`$1` is a parameter).
fn dollar_quote(sql: &str, start: usize) -> Option<usize> {
    let bytes = sql.as_bytes();
    let tag_len = bytes[start + 1..]
        .iter()
        .take_while(|&&b| b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80)
        .count();
    let close = start + 1 + tag_len;
    if bytes.get(close) != Some(&b'$') || bytes.get(start + 1).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let tag = &sql[start..=close];
    Some(
        sql[close + 1..]
            .find(tag)
            .map_or(bytes.len(), |n| close + 1 + n + tag.len()),
    )
}

/// The index after a numeric literal starting at `start`: decimal digits
/// with a point and an exponent, or a `0x`/`0o`/`0b` integer.
fn end_of_number(bytes: &[u8], start: usize) -> usize {
    let mut i = start;
    if bytes[i] == b'0'
        && matches!(
            bytes.get(i + 1),
            Some(b'x' | b'X' | b'o' | b'O' | b'b' | b'B')
        )
    {
        i += 2;
        while i < bytes.len() && (bytes[i].is_ascii_hexdigit() || bytes[i] == b'_') {
            i += 1;
        }
        return i;
    }
    while i < bytes.len() {
        match bytes[i] {
            b'0'..=b'9' | b'.' | b'_' => i += 1,
            b'e' | b'E' => {
                let sign = usize::from(matches!(bytes.get(i + 1), Some(b'+' | b'-')));
                if bytes.get(i + 1 + sign).is_some_and(u8::is_ascii_digit) {
                    i += 1 + sign;
                } else {
                    break;
                }
            }
            _ => break,
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted(sql: &str) -> String {
        QueryText::new(sql, false).to_string()
    }

    #[test]
    fn operation_is_the_first_keyword() {
        assert_eq!(operation_name("SELECT 1"), Some("SELECT"));
        assert_eq!(
            operation_name("  insert into t values ($1)"),
            Some("INSERT")
        );
        assert_eq!(
            operation_name("-- why\n/* note */ (select 1) union (select 2)"),
            Some("SELECT")
        );
        assert_eq!(
            operation_name("WITH x AS (SELECT 1) SELECT * FROM x"),
            Some("WITH")
        );
        assert_eq!(operation_name("selectx 1"), None);
        assert_eq!(operation_name(""), None);
        assert_eq!(operation_name("/* unterminated"), None);
        assert_eq!(operation_name("-- only a comment"), None);
        assert_eq!(operation_name("checkpoint"), Some("CHECKPOINT"));
        assert_eq!(operation_name("CHECKPOINTS"), None);
        assert_eq!(operation_name("SELECT"), Some("SELECT"));
        assert_eq!(operation_name("SELECTED 1"), None);
        assert_eq!(operation_name("DELETE\nFROM t"), Some("DELETE"));
        assert_eq!(
            operation_name("UPDATE_X"),
            Some("UPDATE"),
            "`_` ends a word"
        );
        assert_eq!(operation_name("Deallocate ALL"), Some("DEALLOCATE"));
        assert_eq!(
            KEYWORDS.iter().map(|k| k.len()).max(),
            Some(LONGEST_KEYWORD)
        );
        for keyword in KEYWORDS {
            assert_eq!(operation_name(&keyword.to_lowercase()), Some(*keyword));
        }
    }

    #[test]
    fn parameterized_text_is_unchanged() {
        let sql = "SELECT * FROM panels WHERE barcode = $1 AND n > 5";
        assert_eq!(QueryText::new(sql, true).to_string(), sql);
    }

    #[test]
    fn literals_are_redacted_without_parameters() {
        assert_eq!(
            redacted("CREATE ROLE x LOGIN PASSWORD 'hunter2''s'"),
            "CREATE ROLE x LOGIN PASSWORD ?"
        );
        assert_eq!(
            redacted("INSERT INTO t VALUES (E'a\\'b', 42, 3.5e-3, -7)"),
            "INSERT INTO t VALUES (E?, ?, ?, -?)"
        );
        assert_eq!(redacted("SELECT $$secret$$, $tag$x$y$tag$"), "SELECT ?, ?");
        assert_eq!(
            redacted("SELECT $1, t1.c2 FROM t1"),
            "SELECT $1, t1.c2 FROM t1"
        );
        assert_eq!(
            redacted(r#"SELECT "col 1", x FROM "t'2" -- don't"#),
            r#"SELECT "col 1", x FROM "t'2" -- don't"#
        );
        assert_eq!(redacted("SELECT 0xFF, 1_000"), "SELECT ?, ?");
        assert_eq!(redacted("SELECT 'unterminated"), "SELECT ?");
        assert_eq!(redacted("SELECT 'é', 'ü'"), "SELECT ?, ?");
    }

    #[test]
    fn truncation_respects_characters() {
        let text = QueryText::new("SELECT 'ééé' FROM ééé", true).truncated(9);
        assert_eq!(text.to_string(), "SELECT '…");
    }
}

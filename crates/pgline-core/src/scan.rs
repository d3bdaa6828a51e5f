//! The conservative SQL scan behind clean-state detection, shared by both
//! backends so they apply one rule.

/// True when `sql` might open a transaction block: it contains the word
/// `BEGIN` or `START` (any case) outside nothing we bother to parse.
///
/// Only `BEGIN` and `START TRANSACTION` open a transaction block in
/// PostgreSQL; functions cannot, and procedures or `DO` blocks cannot leave
/// one open. So a statement without either word cannot return a connection
/// inside a transaction. False positives (a `DO $$ BEGIN … END $$` body, a
/// column named `start`) only cost one `ROLLBACK` round trip on return, in
/// the background.
pub fn may_open_transaction(sql: &str) -> bool {
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_alphabetic() || b == b'_' {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'$')
            {
                i += 1;
            }
            let word = &bytes[start..i];
            if word.eq_ignore_ascii_case(b"begin") || word.eq_ignore_ascii_case(b"start") {
                return true;
            }
        } else {
            i += 1;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::may_open_transaction as scan;

    #[test]
    fn finds_transaction_openers_in_any_case_and_position() {
        for sql in [
            "BEGIN",
            "begin;",
            "  Begin Isolation Level Serializable",
            "START TRANSACTION",
            "SELECT 1; BEGIN",
            "select 1;begin",
            "/* c */ BEGIN",
            "DO $$ BEGIN PERFORM 1; END $$",
        ] {
            assert!(scan(sql), "{sql}");
        }
    }

    #[test]
    fn plain_statements_are_clean() {
        for sql in [
            "SELECT 1",
            "INSERT INTO panels (barcode) VALUES ($1)",
            "UPDATE t SET began = 1, restart = 2",
            "SELECT beginning, started FROM x",
            "COMMIT",
            "",
        ] {
            assert!(!scan(sql), "{sql}");
        }
    }
}

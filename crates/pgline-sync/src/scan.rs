//! The conservative SQL scan behind clean-state detection (the same rule as
//! the async pool's).

/// True when `sql` might open a transaction block: it contains the word
/// `BEGIN` or `START` in any case.
///
/// Only `BEGIN` and `START TRANSACTION` open a transaction block in
/// PostgreSQL; functions cannot, and procedures or `DO` blocks cannot leave
/// one open. A statement without either word therefore cannot leave the
/// connection inside a transaction. False positives (a `DO $$ BEGIN … END $$`
/// body, a column named `start`) cost one `ROLLBACK` when the connection is
/// returned.
pub(crate) fn may_open_transaction(sql: &str) -> bool {
    sql.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$'))
        .any(|word| word.eq_ignore_ascii_case("begin") || word.eq_ignore_ascii_case("start"))
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
            "BEGIN\tREAD ONLY",
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
            "SELECT beginning, started, start_ FROM x",
            "COMMIT",
            "",
        ] {
            assert!(!scan(sql), "{sql}");
        }
    }
}

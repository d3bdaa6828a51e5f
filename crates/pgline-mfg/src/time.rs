//! Timestamps as text, without a date-time dependency.
//!
//! PostgreSQL formats with [`pg_timestamp!`]; the in-memory store formats
//! [`SystemTime`] with [`rfc3339`]. Both give `YYYY-MM-DDTHH:MM:SS.ffffffZ`.

use std::time::{SystemTime, UNIX_EPOCH};

/// SQL that formats a `timestamptz` column the way [`rfc3339`] does.
macro_rules! pg_timestamp {
    ($column:literal) => {
        concat!(
            "to_char(",
            $column,
            " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
        )
    };
}
pub(crate) use pg_timestamp;

/// `time` in UTC as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (times before 1970 clamp to
/// the epoch).
pub(crate) fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_micros()
    )
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (y, m, d).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let t = UNIX_EPOCH + Duration::new(951_782_400, 123_456_789); // leap day 2000
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.123456Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_764_262_443);
        assert_eq!(rfc3339(t), "2025-11-27T16:54:03.000000Z");
    }

    #[test]
    fn sql_fragment() {
        assert_eq!(
            pg_timestamp!("p.created_at"),
            "to_char(p.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
        );
    }
}

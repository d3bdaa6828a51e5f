//! Failed authentication attempts: counted for `/metrics`, logged for
//! people — never with the token.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::Method;

/// Why an attempt failed, as counted and logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// No `Authorization` header (401).
    MissingToken,
    /// A malformed header, or a token that is in no file (401).
    InvalidToken,
    /// A station recorded an event in another station's name (403).
    WrongStation,
}

impl FailureReason {
    /// Every reason, in the order `/metrics` lists them.
    pub const ALL: [FailureReason; 3] = [
        FailureReason::MissingToken,
        FailureReason::InvalidToken,
        FailureReason::WrongStation,
    ];

    /// The label value: `missing_token`, `invalid_token`, `wrong_station`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::MissingToken => "missing_token",
            FailureReason::InvalidToken => "invalid_token",
            FailureReason::WrongStation => "wrong_station",
        }
    }
}

/// Counters of failed authentication attempts, shared by every request.
///
/// ```
/// use pgline_server::{AuthFailures, FailureReason};
///
/// let failures = AuthFailures::default();
/// assert_eq!(failures.total(), 0);
/// assert!(failures.render_prometheus().contains(
///     "pgline_http_auth_failures_total{reason=\"invalid_token\"} 0\n"
/// ));
/// # let _ = FailureReason::ALL;
/// ```
#[derive(Debug, Default)]
pub struct AuthFailures {
    missing_token: AtomicU64,
    invalid_token: AtomicU64,
    wrong_station: AtomicU64,
}

impl AuthFailures {
    fn counter(&self, reason: FailureReason) -> &AtomicU64 {
        match reason {
            FailureReason::MissingToken => &self.missing_token,
            FailureReason::InvalidToken => &self.invalid_token,
            FailureReason::WrongStation => &self.wrong_station,
        }
    }

    /// Counts one failure.
    pub fn record(&self, reason: FailureReason) {
        self.counter(reason).fetch_add(1, Ordering::Relaxed);
    }

    /// Failures for `reason` so far.
    pub fn count(&self, reason: FailureReason) -> u64 {
        self.counter(reason).load(Ordering::Relaxed)
    }

    /// All failures so far.
    pub fn total(&self) -> u64 {
        FailureReason::ALL
            .into_iter()
            .map(|reason| self.count(reason))
            .sum()
    }

    /// The counters in the Prometheus text format, ready to append to
    /// `/metrics`: `pgline_http_auth_failures_total{reason="…"}`.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::from(
            "# HELP pgline_http_auth_failures_total Requests refused for want of a valid token (401) \
             or for speaking for another station (403).\n\
             # TYPE pgline_http_auth_failures_total counter\n",
        );
        for reason in FailureReason::ALL {
            let _ = writeln!(
                out,
                "pgline_http_auth_failures_total{{reason=\"{}\"}} {}",
                reason.as_str(),
                self.count(reason)
            );
        }
        out
    }
}

/// What a log line may say about the request: method, path (bounded) and
/// the client's address when the server knows it.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) client: Option<SocketAddr>,
}

impl Attempt {
    /// Longest route logged.
    const MAX_PATH: usize = 200;

    /// The attempt of `request`: its method and its route template
    /// (`/api/panels/{barcode}/events`), never the concrete path, whose
    /// barcodes and order numbers are parameter values of the statements
    /// behind it.
    pub(crate) fn new(request: &axum::extract::Request, client: Option<SocketAddr>) -> Self {
        let route = request
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .map_or("(unrouted)", axum::extract::MatchedPath::as_str);
        Self {
            method: request.method().clone(),
            path: bounded(route, Self::MAX_PATH),
            client,
        }
    }

    /// Logs a refused request and counts it. `station` is the authenticated
    /// station, `claimed` the one it spoke for (403 only). The token is never
    /// passed in, so it cannot be logged.
    pub(crate) fn refused(
        &self,
        failures: &AuthFailures,
        reason: FailureReason,
        detail: &str,
        station: Option<&str>,
        claimed: Option<&str>,
    ) {
        failures.record(reason);
        let client = self
            .client
            .map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        tracing::warn!(
            reason = reason.as_str(),
            detail,
            method = %self.method,
            path = %self.path,
            client = %client,
            station = station.unwrap_or("-"),
            claimed_station = ?claimed.map(|c| bounded(c, 64)),
            "request refused: authentication failed"
        );
    }
}

/// At most `max` characters of `text`, for a log line.
fn bounded(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_reason() {
        let failures = AuthFailures::default();
        failures.record(FailureReason::MissingToken);
        failures.record(FailureReason::InvalidToken);
        failures.record(FailureReason::InvalidToken);
        assert_eq!(failures.count(FailureReason::InvalidToken), 2);
        assert_eq!(failures.total(), 3);
        let text = failures.render_prometheus();
        assert!(text.contains("{reason=\"missing_token\"} 1\n"), "{text}");
        assert!(text.contains("{reason=\"wrong_station\"} 0\n"), "{text}");
    }

    #[test]
    fn long_text_is_cut() {
        assert_eq!(bounded("abc", 5), "abc");
        assert_eq!(bounded("abcdef", 3), "abc…");
        assert_eq!(bounded("ééé", 2), "éé…");
    }
}

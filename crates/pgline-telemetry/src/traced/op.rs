//! One traced database operation: its span, its duration metric and its log
//! lines. Shared by [`Traced`](super::Traced) and
//! [`TracedSession`](super::TracedSession).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::Histogram;
use pgline_core::DbError;
use tracing::Span;
use tracing::field::Empty;

use crate::sql::{self, QueryText};

/// Target of the database spans (`DEBUG` level: off in the log at the default
/// level, always on for export).
pub(crate) const SPAN_TARGET: &str = "pgline_telemetry::db";
/// Target of the per-statement log lines (duration at debug, slow at warn).
pub(crate) const LOG_TARGET: &str = "pgline_telemetry::query";

/// How much of a statement's text a log line shows.
const LOG_TEXT_LIMIT: usize = 300;

/// What every operation of one handle shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) namespace: Arc<str>,
    pub(crate) server_address: Arc<str>,
    pub(crate) server_port: u16,
    pub(crate) slow_query: Duration,
    pub(crate) duration: Option<Histogram<f64>>,
    /// `db.system.name` and `db.namespace`, for the duration metric.
    base_attributes: [KeyValue; 2],
    /// `{keyword} {namespace}` for each of [`sql::KEYWORDS`], made once so
    /// that naming a span formats nothing.
    span_names: Arc<[Box<str>]>,
}

impl Shared {
    pub(crate) fn new(namespace: &str, server_address: &str, server_port: u16) -> Self {
        let namespace: Arc<str> = Arc::from(namespace);
        Self {
            base_attributes: [
                KeyValue::new("db.system.name", "postgresql"),
                KeyValue::new(
                    "db.namespace",
                    opentelemetry::StringValue::from(namespace.clone()),
                ),
            ],
            span_names: sql::KEYWORDS
                .iter()
                .map(|k| SpanName(Some(k), &namespace).to_string().into_boxed_str())
                .collect(),
            namespace,
            server_address: Arc::from(server_address),
            server_port,
            slow_query: Duration::from_secs(1),
            duration: None,
        }
    }

    /// `server.port`, which the conventions want only when it is not
    /// PostgreSQL's default.
    fn port_attribute(&self) -> Option<u16> {
        (self.server_port != DEFAULT_PORT).then_some(self.server_port)
    }

    /// Starts a statement: its span is a child of the caller's current span.
    pub(crate) fn statement<'q>(&'q self, sql: &'q str, parameterized: bool) -> Operation<'q> {
        let operation = sql::operation(sql);
        let name = operation.map(|i| sql::KEYWORDS[i]);
        // Field values are only evaluated when the span is enabled.
        let span = tracing::debug_span!(
            target: SPAN_TARGET,
            "statement",
            otel.name = operation.map_or(&*self.namespace, |i| &*self.span_names[i]),
            otel.kind = "client",
            otel.status_code = Empty,
            otel.status_description = Empty,
            db.system.name = "postgresql",
            db.namespace = &*self.namespace,
            db.operation.name = name,
            db.query.text = &*QueryText::new(sql, parameterized).to_cow(),
            server.address = &*self.server_address,
            server.port = self.port_attribute(),
            db.response.status_code = Empty,
            error.type = Empty,
        );
        Operation {
            shared: self,
            kind: Kind::Statement { sql, parameterized },
            name,
            span,
            started: Instant::now(),
            finished: false,
        }
    }

    /// Starts a transaction: `BEGIN` to `COMMIT` or `ROLLBACK`, with the
    /// connection's acquire inside.
    pub(crate) fn transaction(&self) -> Operation<'_> {
        let name = Some(TRANSACTION);
        let span = tracing::debug_span!(
            target: SPAN_TARGET,
            "transaction",
            otel.name = %SpanName(name, &self.namespace),
            otel.kind = "client",
            otel.status_code = Empty,
            otel.status_description = Empty,
            db.system.name = "postgresql",
            db.namespace = &*self.namespace,
            db.operation.name = TRANSACTION,
            server.address = &*self.server_address,
            server.port = self.port_attribute(),
            db.response.status_code = Empty,
            error.type = Empty,
        );
        Operation {
            shared: self,
            kind: Kind::Transaction,
            name,
            span,
            started: Instant::now(),
            finished: false,
        }
    }
}

/// PostgreSQL's port, left out of `server.port`.
const DEFAULT_PORT: u16 = 5432;

/// `db.operation.name` of a whole transaction.
const TRANSACTION: &str = "TRANSACTION";

/// How an operation ended.
pub(crate) enum Outcome<'e> {
    Ok,
    /// A database error (its SQLSTATE and kind are reported).
    Db(&'e DbError),
    /// Another error returned by a transaction closure.
    Other,
}

enum Kind<'q> {
    Statement { sql: &'q str, parameterized: bool },
    Transaction,
}

/// A started operation. Finish it with [`Operation::finish`]; dropped
/// unfinished (its future was cancelled) it is reported with
/// `error.type = cancelled`.
pub(crate) struct Operation<'q> {
    shared: &'q Shared,
    kind: Kind<'q>,
    name: Option<&'static str>,
    span: Span,
    started: Instant,
    finished: bool,
}

impl Operation<'_> {
    /// The operation's span (a transaction's is entered while it runs, so
    /// that its statements and acquire are its children).
    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// Records the outcome on the span, the duration metric and the log.
    pub(crate) fn finish(mut self, outcome: Outcome<'_>) {
        self.finished = true;
        let error_type = match outcome {
            Outcome::Ok => None,
            Outcome::Db(error) => {
                let code = error.code().map(|c| c.code());
                if let Some(code) = code {
                    self.span.record("db.response.status_code", code);
                }
                let error_type = code.map_or_else(
                    || Cow::Borrowed(kind_word(error)),
                    |c| Cow::Owned(c.to_owned()),
                );
                self.record_error(&error_type, Some(error));
                Some(error_type)
            }
            Outcome::Other => {
                self.record_error(OTHER, None);
                Some(Cow::Borrowed(OTHER))
            }
        };
        self.report(error_type);
    }

    fn record_error(&self, error_type: &str, error: Option<&DbError>) {
        self.span.record("error.type", error_type);
        self.span.record("otel.status_code", "error");
        if let Some(error) = error {
            // `DbError`'s text never quotes parameter or row values.
            self.span
                .record("otel.status_description", tracing::field::display(error));
        }
    }

    fn report(&self, error_type: Option<Cow<'static, str>>) {
        let elapsed = self.started.elapsed();
        if let Some(histogram) = &self.shared.duration {
            self.record_duration(histogram, elapsed, error_type.clone());
        }
        let operation = self.name;
        let error_type = error_type.as_deref();
        let duration_ms = elapsed.as_secs_f64() * 1000.0;
        let (sql, parameterized) = match self.kind {
            Kind::Statement { sql, parameterized } => (sql, parameterized),
            Kind::Transaction => ("", true),
        };
        let text = QueryText::new(sql, parameterized).truncated(LOG_TEXT_LIMIT);
        let what = match self.kind {
            Kind::Statement { .. } => "statement",
            Kind::Transaction => "transaction",
        };
        if elapsed >= self.shared.slow_query {
            self.span.in_scope(|| {
                tracing::warn!(
                    target: LOG_TARGET,
                    duration_ms,
                    db.operation.name = operation,
                    db.namespace = &*self.shared.namespace,
                    threshold_ms = self.shared.slow_query.as_secs_f64() * 1000.0,
                    error.type = error_type,
                    db.query.text = %text,
                    "slow {what}"
                );
            });
        } else if tracing::enabled!(target: LOG_TARGET, tracing::Level::DEBUG) {
            self.span.in_scope(|| {
                tracing::debug!(
                    target: LOG_TARGET,
                    duration_ms,
                    db.operation.name = operation,
                    db.namespace = &*self.shared.namespace,
                    error.type = error_type,
                    db.query.text = %text,
                    "{what} finished"
                );
            });
        }
    }

    fn record_duration(
        &self,
        histogram: &Histogram<f64>,
        elapsed: Duration,
        error_type: Option<Cow<'static, str>>,
    ) {
        let seconds = elapsed.as_secs_f64();
        let [system, namespace] = &self.shared.base_attributes;
        let operation = self.name.map(|n| KeyValue::new("db.operation.name", n));
        let error = error_type.map(|e| KeyValue::new("error.type", e));
        match (operation, error) {
            (Some(op), Some(err)) => {
                histogram.record(seconds, &[system.clone(), namespace.clone(), op, err]);
            }
            (Some(op), None) => histogram.record(seconds, &[system.clone(), namespace.clone(), op]),
            (None, Some(err)) => {
                histogram.record(seconds, &[system.clone(), namespace.clone(), err])
            }
            (None, None) => histogram.record(seconds, &self.shared.base_attributes),
        }
    }
}

impl Drop for Operation<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.record_error(CANCELLED, None);
            self.report(Some(Cow::Borrowed(CANCELLED)));
        }
    }
}

/// `error.type` of an operation whose future was dropped before it finished.
const CANCELLED: &str = "cancelled";
/// `error.type` of a transaction closure's own (non-database) error.
const OTHER: &str = "_OTHER";

/// `error.type` for an error without a SQLSTATE: the kind, in snake case.
fn kind_word(error: &DbError) -> &'static str {
    use pgline_core::ErrorKind;
    match error.kind() {
        ErrorKind::AcquireTimeout { .. } => "acquire_timeout",
        ErrorKind::PoolClosed => "pool_closed",
        ErrorKind::Connect => "connect",
        ErrorKind::Query => "query",
        ErrorKind::CommitOutcomeUnknown => "commit_outcome_unknown",
        ErrorKind::CircuitOpen { .. } => "circuit_open",
        ErrorKind::Timeout => "timeout",
        ErrorKind::UnexpectedRowCount { .. } => "unexpected_row_count",
        ErrorKind::Rejected => "rejected",
        _ => OTHER,
    }
}

/// A span name after the conventions: `{db.operation.name} {db.namespace}`,
/// or the namespace alone when the operation is unknown.
struct SpanName<'a>(Option<&'static str>, &'a str);

impl fmt::Display for SpanName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(operation) => write!(f, "{operation} {}", self.1),
            None => f.write_str(self.1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_names_follow_the_conventions() {
        assert_eq!(
            SpanName(Some("SELECT"), "plant").to_string(),
            "SELECT plant"
        );
        assert_eq!(SpanName(None, "plant").to_string(), "plant");
    }

    #[test]
    fn errors_without_sqlstate_name_their_kind() {
        let e = DbError::new(pgline_core::ErrorKind::PoolClosed);
        assert_eq!(kind_word(&e), "pool_closed");
    }
}

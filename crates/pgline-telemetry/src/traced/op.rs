//! One traced database operation: its span, its duration metric and its log
//! lines. Shared by [`Traced`](super::Traced) and
//! [`TracedSession`](super::TracedSession).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::Histogram;
use opentelemetry::trace::SpanKind;
use pgline_core::DbError;

use super::queue::{self, What};
use super::spans::{self, DbTracer, Parent, Started};
use crate::Metrics;
use crate::metrics::local::LocalHistogram;
use crate::sql::{self, QueryText};

/// Target of the per-statement log lines (duration at debug, slow at warn).
pub(crate) const LOG_TARGET: &str = "pgline_telemetry::query";

/// How much of a statement's text a log line shows.
const LOG_TEXT_LIMIT: usize = 300;

/// Index of an operation: `0..KEYWORDS.len()` a statement's first keyword,
/// then [`UNKNOWN`] and [`TRANSACTION_INDEX`].
type OpIndex = usize;
/// A statement whose first word is not one of [`sql::KEYWORDS`].
const UNKNOWN: OpIndex = sql::KEYWORDS.len();
/// A whole transaction.
const TRANSACTION_INDEX: OpIndex = sql::KEYWORDS.len() + 1;

/// `db.operation.name` of an operation (none for an unknown statement).
fn operation_name(op: OpIndex) -> Option<&'static str> {
    match op {
        UNKNOWN => None,
        TRANSACTION_INDEX => Some(TRANSACTION),
        i => sql::KEYWORDS.get(i).copied(),
    }
}

/// What every operation of one handle shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) namespace: Arc<str>,
    pub(crate) server_address: Arc<str>,
    pub(crate) server_port: u16,
    pub(crate) slow_query: Duration,
    /// `db.client.operation.duration`, for failed operations (whose
    /// `error.type` varies).
    pub(crate) duration: Option<Histogram<f64>>,
    /// The same histogram bound to each operation's attributes without
    /// `error.type`, indexed by [`OpIndex`]: a successful operation records
    /// without looking its attributes up.
    duration_ok: Option<Arc<[LocalHistogram]>>,
    /// Spans, when tracing is on.
    pub(crate) tracer: Option<DbTracer>,
    /// `db.system.name` and `db.namespace`, for the duration metric.
    base_attributes: [KeyValue; 2],
    /// The namespace and server address, made `'static` once so that a span
    /// copies no string for them.
    namespace_static: &'static str,
    address_static: &'static str,
    /// Span names after the conventions, indexed by [`OpIndex`].
    span_names: Arc<[&'static str]>,
}

impl Shared {
    pub(crate) fn new(namespace: &str, server_address: &str, server_port: u16) -> Self {
        let namespace: Arc<str> = Arc::from(namespace);
        let span_names = (0..=TRANSACTION_INDEX)
            .map(|op| spans::intern(&SpanName(operation_name(op), &namespace).to_string()))
            .collect();
        Self {
            base_attributes: [
                KeyValue::new("db.system.name", "postgresql"),
                KeyValue::new(
                    "db.namespace",
                    opentelemetry::StringValue::from(namespace.clone()),
                ),
            ],
            namespace_static: spans::intern(&namespace),
            address_static: spans::intern(server_address),
            span_names,
            namespace,
            server_address: Arc::from(server_address),
            server_port,
            slow_query: Duration::from_secs(1),
            duration: None,
            duration_ok: None,
            tracer: None,
        }
    }

    /// The handle's tracer, else the one [`init`](crate::init) installed.
    fn tracer(&self) -> Option<&DbTracer> {
        self.tracer.as_ref().or_else(|| spans::global())
    }

    /// Records operation durations in `metrics`' duration histogram.
    pub(crate) fn set_duration(&mut self, metrics: &Metrics) {
        let histogram = metrics.operation_duration();
        let bound = (0..=TRANSACTION_INDEX)
            .map(|op| metrics.local_histogram(&histogram, &self.duration_attributes(op, None)))
            .collect();
        self.duration_ok = Some(bound);
        self.duration = Some(histogram);
    }

    /// The duration metric's attributes of an operation.
    fn duration_attributes(&self, op: OpIndex, error: Option<Cow<'static, str>>) -> Vec<KeyValue> {
        let mut attributes = self.base_attributes.to_vec();
        if let Some(name) = operation_name(op) {
            attributes.push(KeyValue::new("db.operation.name", name));
        }
        if let Some(error) = error {
            attributes.push(KeyValue::new("error.type", error));
        }
        attributes
    }

    /// `server.port`, which the conventions want only when it is not
    /// PostgreSQL's default.
    fn port_attribute(&self) -> Option<u16> {
        (self.server_port != DEFAULT_PORT).then_some(self.server_port)
    }

    /// Starts a statement: its span is a child of the operation being polled
    /// on this thread (a transaction), else of the caller's current span —
    /// or of `parent` when given.
    pub(crate) fn statement<'q>(
        &'q self,
        sql: &'q str,
        parameterized: bool,
        parent: Option<Parent>,
    ) -> Operation<'q> {
        let op = sql::operation(sql).unwrap_or(UNKNOWN);
        self.begin(Kind::Statement { sql, parameterized }, op, parent)
    }

    /// Starts a transaction: `BEGIN` to `COMMIT` or `ROLLBACK`, with the
    /// connection's acquire inside.
    pub(crate) fn transaction(&self) -> Operation<'_> {
        self.begin(Kind::Transaction, TRANSACTION_INDEX, None)
    }

    fn begin<'q>(&'q self, kind: Kind<'q>, op: OpIndex, parent: Option<Parent>) -> Operation<'q> {
        // One clock reading for the duration metric and the span.
        let started = Instant::now();
        let span = self
            .tracer()
            .map(|tracer| tracer.start_at(parent.or_else(spans::current_parent), started));
        Operation {
            shared: self,
            kind,
            op,
            span,
            started,
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
    op: OpIndex,
    span: Option<Started>,
    started: Instant,
    finished: bool,
}

/// How an operation failed, for its span.
struct Failure<'a> {
    /// `error.type`: the SQLSTATE, the error's kind, or a fixed word.
    error_type: Cow<'static, str>,
    /// The SQLSTATE, when the server sent one.
    status_code: Option<&'a str>,
    error: Option<&'a DbError>,
}

impl Failure<'_> {
    /// A failure without a database error (`_OTHER`, `cancelled`).
    fn word(error_type: &'static str) -> Self {
        Self {
            error_type: Cow::Borrowed(error_type),
            status_code: None,
            error: None,
        }
    }
}

impl Operation<'_> {
    /// The operation's span as a parent: what runs inside the operation (its
    /// acquire, a transaction's statements) hangs under it.
    pub(crate) fn parent(&self) -> Option<Parent> {
        self.span.as_ref().map(|s| s.this)
    }

    /// Records the outcome on the span, the duration metric and the log.
    pub(crate) fn finish(mut self, outcome: Outcome<'_>) {
        self.finished = true;
        let failure = match outcome {
            Outcome::Ok => None,
            Outcome::Db(error) => {
                let code = error.code().map(|c| c.code());
                Some(Failure {
                    error_type: code.map_or_else(
                        || Cow::Borrowed(kind_word(error)),
                        |c| Cow::Owned(c.to_owned()),
                    ),
                    status_code: code,
                    error: Some(error),
                })
            }
            Outcome::Other => Some(Failure::word(OTHER)),
        };
        self.report(failure);
    }

    fn report(&self, failure: Option<Failure<'_>>) {
        let elapsed = self.started.elapsed();
        if let (Some(tracer), Some(span)) = (self.shared.tracer(), &self.span) {
            self.end_span(tracer, span, elapsed, failure.as_ref());
        }
        let error_type = failure.as_ref().map(|f| &f.error_type);
        if self.shared.duration.is_some() {
            self.record_duration(elapsed, error_type.cloned());
        }
        let operation = operation_name(self.op);
        let error_type = error_type.map(|e| &**e);
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
        // The trace the operation belongs to, to find it from the log line.
        let trace_id = self
            .span
            .as_ref()
            .filter(|s| s.this.sampled)
            .map(|s| tracing::field::display(s.this.trace_id));
        if elapsed >= self.shared.slow_query {
            tracing::warn!(
                target: LOG_TARGET,
                duration_ms,
                db.operation.name = operation,
                db.namespace = &*self.shared.namespace,
                threshold_ms = self.shared.slow_query.as_secs_f64() * 1000.0,
                error.type = error_type,
                db.query.text = %text,
                trace_id,
                "slow {what}"
            );
        } else if tracing::enabled!(target: LOG_TARGET, tracing::Level::DEBUG) {
            tracing::debug!(
                target: LOG_TARGET,
                duration_ms,
                db.operation.name = operation,
                db.namespace = &*self.shared.namespace,
                error.type = error_type,
                db.query.text = %text,
                trace_id,
                "{what} finished"
            );
        }
    }

    fn end_span(
        &self,
        tracer: &DbTracer,
        span: &Started,
        elapsed: Duration,
        failure: Option<&Failure<'_>>,
    ) {
        let shared = self.shared;
        let what = || What::Operation {
            namespace: shared.namespace_static,
            address: shared.address_static,
            port: shared.port_attribute(),
            operation: operation_name(self.op),
            // Parameter values are never part of the text; literals of text
            // without parameters are replaced by `?`.
            text: match self.kind {
                Kind::Statement { sql, parameterized } => {
                    Some(spans::query_text(sql, parameterized))
                }
                Kind::Transaction => None,
            },
            failure: failure.map(|f| {
                Box::new(queue::Failure {
                    error_type: f.error_type.clone(),
                    status_code: f.status_code.map(str::to_owned),
                    // `DbError`'s text never quotes parameter or row values.
                    message: f
                        .error
                        .map_or_else(|| f.error_type.to_string(), ToString::to_string),
                })
            }),
        };
        tracer.end(
            span,
            elapsed,
            shared.span_names[self.op],
            SpanKind::Client,
            what,
        );
    }

    fn record_duration(&self, elapsed: Duration, error_type: Option<Cow<'static, str>>) {
        let seconds = elapsed.as_secs_f64();
        match (error_type, &self.shared.duration_ok) {
            (None, Some(bound)) => bound[self.op].record(seconds),
            (error, _) => {
                if let Some(histogram) = &self.shared.duration {
                    histogram.record(seconds, &self.shared.duration_attributes(self.op, error));
                }
            }
        }
    }
}

impl Drop for Operation<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.report(Some(Failure::word(CANCELLED)));
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

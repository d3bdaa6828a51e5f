//! [`PoolObserver`]: turns pool events into the pool's time histograms and,
//! when tracing is exported, into `acquire` spans.

use std::time::{Duration, SystemTime};

use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt as _, Tracer as _};
use opentelemetry_sdk::trace::SdkTracer;
use pgline_core::{PoolEvent, PoolListener};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::{POOL_NAME, PoolTimes};

/// A [`PoolListener`] for one pool: `Connect` feeds
/// `db.client.connection.create_time`, `Acquire` feeds
/// `db.client.connection.wait_time`, `Release` feeds
/// `db.client.connection.use_time`.
///
/// Made by [`Metrics::pool_listener`](crate::Metrics::pool_listener) (metrics
/// only) or [`Telemetry::pool_listener`](crate::Telemetry::pool_listener),
/// which also turns each acquire made under a traced span that waited at
/// least the acquire-span threshold (1 ms unless
/// [`TelemetryBuilder::acquire_span_threshold`](crate::TelemetryBuilder::acquire_span_threshold)
/// says otherwise) into an `acquire` span: a child of the statement or
/// transaction that waited, covering the wait. Shorter waits — a connection
/// taken from the idle list in microseconds — are only counted in the
/// histogram, which keeps the common path cheap. (Connections are opened by
/// the pool's own tasks, outside any caller's trace, so connects are measured
/// but get no span.)
///
/// Cost per event: one histogram record, plus a span for a long wait when a
/// trace is being exported. The listener never blocks.
pub struct PoolObserver {
    pool: [KeyValue; 1],
    times: PoolTimes,
    tracer: Option<(SdkTracer, Duration)>,
}

impl PoolObserver {
    pub(crate) fn new(
        pool_name: String,
        times: PoolTimes,
        tracer: Option<(SdkTracer, Duration)>,
    ) -> Self {
        Self {
            pool: [KeyValue::new(POOL_NAME, pool_name)],
            times,
            tracer,
        }
    }

    fn acquire_span(&self, tracer: &SdkTracer, connection_id: u64, wait: Duration) {
        // The statement or transaction that waited is the current span.
        let parent = tracing::Span::current().context();
        if !parent.span().span_context().is_sampled() {
            return;
        }
        let end = SystemTime::now();
        let mut span = tracer
            .span_builder("acquire")
            .with_kind(SpanKind::Internal)
            .with_start_time(end.checked_sub(wait).unwrap_or(end))
            .with_attributes([
                self.pool[0].clone(),
                KeyValue::new(
                    "pgline.connection.id",
                    i64::try_from(connection_id).unwrap_or(i64::MAX),
                ),
            ])
            .start_with_context(tracer, &parent);
        span.end_with_timestamp(end);
    }
}

impl PoolListener for PoolObserver {
    fn on_event(&self, event: &PoolEvent) {
        match event {
            PoolEvent::Connect { duration, .. } => {
                self.times
                    .create_time
                    .record(duration.as_secs_f64(), &self.pool);
            }
            PoolEvent::Acquire {
                connection_id,
                wait,
            } => {
                self.times.wait_time.record(wait.as_secs_f64(), &self.pool);
                if let Some((tracer, threshold)) = &self.tracer
                    && wait >= threshold
                {
                    self.acquire_span(tracer, *connection_id, *wait);
                }
            }
            PoolEvent::Release { held, .. } => {
                self.times.use_time.record(held.as_secs_f64(), &self.pool);
            }
            _ => {}
        }
    }
}

impl std::fmt::Debug for PoolObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolObserver")
            .field("pool", &self.pool[0].value.as_str())
            .field("spans", &self.tracer.is_some())
            .finish()
    }
}

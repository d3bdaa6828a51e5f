//! [`PoolObserver`]: turns pool events into the pool's time histograms and,
//! when tracing is exported, into `acquire` spans.

use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use pgline_core::{PoolEvent, PoolListener};

use super::local::{LocalHistogram, LocalHistograms};
use super::{POOL_NAME, PoolTimes};
use crate::traced::queue::What;
use crate::traced::spans::{self, DbTracer};

/// A [`PoolListener`] for one pool: `Connect` feeds
/// `db.client.connection.create_time`, `Acquire` feeds
/// `db.client.connection.wait_time`, `Release` feeds
/// `db.client.connection.use_time`.
///
/// Made by [`Metrics::pool_listener`](crate::Metrics::pool_listener) or
/// [`Telemetry::pool_listener`](crate::Telemetry::pool_listener). When the
/// telemetry traces, each acquire that waited at least the acquire-span
/// threshold (1 ms unless
/// [`TelemetryBuilder::acquire_span_threshold`](crate::TelemetryBuilder::acquire_span_threshold)
/// says otherwise) becomes an `acquire` span: a child of the statement or
/// transaction that waited, covering the wait. Shorter waits — a connection
/// taken from the idle list in microseconds — are only counted in the
/// histogram, which keeps the common path cheap. Each new connection becomes
/// a `connect` span covering the connect: a child of the operation that
/// waited for it when one was being polled, else a trace of its own (the
/// pool's background tasks open most connections).
///
/// Cost per event: one histogram record into a histogram bound to the pool's
/// attributes, kept in this thread's buffer until a batch of them goes to
/// the SDK, plus a span for a long wait or a connect. The listener never
/// blocks.
pub struct PoolObserver {
    pool: KeyValue,
    pool_static: &'static str,
    create_time: LocalHistogram,
    wait_time: LocalHistogram,
    use_time: LocalHistogram,
    tracer: Option<DbTracer>,
}

impl PoolObserver {
    pub(crate) fn new(
        pool_name: String,
        times: &PoolTimes,
        local: &LocalHistograms,
        tracer: Option<DbTracer>,
    ) -> Self {
        let pool = [KeyValue::new(POOL_NAME, pool_name)];
        Self {
            pool_static: spans::intern(pool[0].value.as_str().as_ref()),
            create_time: local.add(times.create_time.bind(&pool)),
            wait_time: local.add(times.wait_time.bind(&pool)),
            use_time: local.add(times.use_time.bind(&pool)),
            pool: pool[0].clone(),
            tracer,
        }
    }

    /// A span for `connection_id` that ended now and lasted `took`.
    fn span(&self, tracer: &DbTracer, name: &'static str, connection_id: u64, took: Duration) {
        let end = Instant::now();
        let started = tracer.start_at(
            spans::current_parent(),
            end.checked_sub(took).unwrap_or(end),
        );
        tracer.end(&started, took, name, SpanKind::Internal, || What::Pool {
            pool: self.pool_static,
            connection_id,
        });
    }
}

impl PoolListener for PoolObserver {
    fn on_event(&self, event: &PoolEvent) {
        match event {
            PoolEvent::Connect {
                connection_id,
                duration,
            } => {
                self.create_time.record(duration.as_secs_f64());
                if let Some(tracer) = &self.tracer {
                    self.span(tracer, "connect", *connection_id, *duration);
                }
            }
            PoolEvent::Acquire {
                connection_id,
                wait,
            } => {
                self.wait_time.record(wait.as_secs_f64());
                if let Some(tracer) = &self.tracer
                    && *wait >= tracer.acquire_threshold()
                {
                    self.span(tracer, "acquire", *connection_id, *wait);
                }
            }
            PoolEvent::Release { held, .. } => {
                self.use_time.record(held.as_secs_f64());
            }
            _ => {}
        }
    }
}

impl std::fmt::Debug for PoolObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolObserver")
            .field("pool", &self.pool.value.as_str())
            .field("spans", &self.tracer.is_some())
            .finish()
    }
}

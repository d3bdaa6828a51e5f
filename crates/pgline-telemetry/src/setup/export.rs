//! OTLP exporters that report their own health: one warn line when export
//! starts failing, one info line when it works again, nothing in between.
//!
//! The SDK's processors log every failed export (a span batch every 5 s, a
//! metric export every minute) when its internal logs are compiled in; this
//! crate leaves them out and filters the `opentelemetry` targets, and these
//! wrappers say what an operator needs to know instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;

/// Target of the export health lines.
pub(crate) const EXPORT_TARGET: &str = "pgline_telemetry::export";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Traces,
    Metrics,
}

impl Signal {
    fn index(self) -> usize {
        match self {
            Signal::Traces => 0,
            Signal::Metrics => 1,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
        }
    }
}

/// Whether each signal's last export failed, shared by both exporters so that
/// a collector that is down is reported once, not once per signal.
#[derive(Debug)]
pub(crate) struct ExportHealth {
    endpoint: String,
    failing: [AtomicBool; 2],
}

impl ExportHealth {
    pub(crate) fn new(endpoint: &str) -> Arc<Self> {
        Arc::new(Self {
            endpoint: endpoint.to_owned(),
            failing: [AtomicBool::new(false), AtomicBool::new(false)],
        })
    }

    pub(crate) fn report(&self, signal: Signal, result: &OTelSdkResult) {
        let failing = &self.failing[signal.index()];
        match result {
            Ok(()) => {
                if failing.swap(false, Ordering::AcqRel) {
                    tracing::info!(
                        target: EXPORT_TARGET,
                        endpoint = %self.endpoint,
                        signal = signal.as_str(),
                        "OpenTelemetry export works again"
                    );
                }
            }
            Err(error) => {
                if failing.swap(true, Ordering::AcqRel) {
                    return;
                }
                let other = self.failing[1 - signal.index()].load(Ordering::Acquire);
                if other {
                    // The other signal already said the collector is unreachable.
                    tracing::debug!(
                        target: EXPORT_TARGET,
                        endpoint = %self.endpoint,
                        signal = signal.as_str(),
                        error = %error,
                        "OpenTelemetry export failed"
                    );
                } else {
                    tracing::warn!(
                        target: EXPORT_TARGET,
                        endpoint = %self.endpoint,
                        signal = signal.as_str(),
                        error = %error,
                        "OpenTelemetry export failed; the service keeps running and drops \
                         telemetry until the collector answers (further failures are not logged)"
                    );
                }
            }
        }
    }
}

/// The OTLP metric exporter, reporting its health.
#[derive(Debug)]
pub(crate) struct ReportingMetricExporter {
    inner: opentelemetry_otlp::MetricExporter,
    health: Arc<ExportHealth>,
}

impl ReportingMetricExporter {
    pub(crate) fn new(
        inner: opentelemetry_otlp::MetricExporter,
        health: Arc<ExportHealth>,
    ) -> Self {
        Self { inner, health }
    }
}

impl PushMetricExporter for ReportingMetricExporter {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        self.health.report(Signal::Metrics, &result);
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

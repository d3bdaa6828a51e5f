//! The one error type of this crate.

use opentelemetry_sdk::error::OTelSdkError;

/// Why telemetry could not be set up, flushed or shut down.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// `LOG_FORMAT` holds something other than `text` or `json`.
    #[error("LOG_FORMAT: expected `text` or `json`, got {0:?}")]
    InvalidLogFormat(String),
    /// The log filter (`RUST_LOG` or `LOG_LEVEL`) does not parse.
    #[error(
        "RUST_LOG: expected tracing filter directives such as info,pgline_async=debug, got {directives:?}"
    )]
    InvalidFilter {
        /// The directives as given.
        directives: String,
        /// What the parser said.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// The OTLP exporter could not be built (a malformed endpoint, say).
    #[error("could not build the OTLP {signal} exporter for {endpoint}")]
    Exporter {
        /// `traces` or `metrics`.
        signal: &'static str,
        /// The endpoint it was built for.
        endpoint: String,
        /// What the builder said.
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// The OTLP endpoint cannot be used for span export.
    #[error("OTEL_EXPORTER_OTLP_ENDPOINT: cannot export spans to {endpoint:?}: {reason}")]
    Endpoint {
        /// The endpoint as configured.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` (or its `_TRACES_`/`_METRICS_` form)
    /// names a protocol other than `grpc` (`http/protobuf`, `http/json`, or
    /// anything else) for a signal that is exported: pgline exports over
    /// gRPC only.
    #[error(
        "{variable}={value:?}: pgline exports OTLP over gRPC only; set it to `grpc` (or unset it) and point OTEL_EXPORTER_OTLP_ENDPOINT at the collector's gRPC port (4317 by default)"
    )]
    Protocol {
        /// The variable that decided.
        variable: String,
        /// Its value.
        value: String,
    },
    /// A TLS file for OTLP export (`OTEL_EXPORTER_OTLP_CERTIFICATE`, …)
    /// cannot be used.
    #[error("{variable}: {reason}")]
    Tls {
        /// The variable that named the file.
        variable: String,
        /// What is wrong.
        reason: String,
    },
    /// A header given for OTLP export is not valid gRPC metadata (the value
    /// is not shown: it may be a credential).
    #[error(
        "OTLP header {key:?} is not valid gRPC metadata (a key of letters, digits, `-`, `_`, `.`; a visible ASCII value, base64 for a key ending in `-bin`)"
    )]
    Header {
        /// The header's key.
        key: String,
    },
    /// The span export thread could not be started.
    #[error("could not start the span export thread")]
    Thread(#[source] std::io::Error),
    /// The Prometheus exporter could not be built.
    #[error("could not build the Prometheus exporter")]
    Prometheus(#[source] OTelSdkError),
    /// A global `tracing` subscriber is already installed.
    #[error("a global tracing subscriber is already installed")]
    SubscriberInstalled(#[source] tracing_subscriber::util::TryInitError),
    /// Flushing or shutting down the OpenTelemetry SDK failed (or timed out).
    #[error("OpenTelemetry {action} failed")]
    Sdk {
        /// `flush` or `shutdown`.
        action: &'static str,
        /// What the SDK said.
        #[source]
        source: OTelSdkError,
    },
}

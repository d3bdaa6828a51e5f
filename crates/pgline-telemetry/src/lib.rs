//! Observability for pgline: OpenTelemetry traces and metrics (OTLP),
//! Prometheus text and structured logs.
//!
//! The only crate that knows OpenTelemetry; it sees pools through the
//! `pgline-core` traits.

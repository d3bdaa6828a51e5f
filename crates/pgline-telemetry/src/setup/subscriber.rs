//! The `tracing` subscriber: a log layer filtered by `LOG_LEVEL`/`RUST_LOG`
//! and, when tracing is on, an OpenTelemetry layer with a filter of its own.

use std::str::FromStr;

use opentelemetry_sdk::trace::SdkTracer;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::{EnvFilter, FilterExt as _, Targets, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Filter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::{Layer, Registry};

use crate::TelemetryError;

/// The format of log lines (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (`LOG_FORMAT=text`, the default).
    #[default]
    Text,
    /// One JSON object per line with the event's fields at the top level and
    /// the current span (`LOG_FORMAT=json`).
    Json,
}

impl LogFormat {
    /// The variable that selects the format.
    pub const VARIABLE: &'static str = "LOG_FORMAT";

    /// The format `LOG_FORMAT` asks for: text when unset or empty.
    pub fn from_env() -> Result<Self, TelemetryError> {
        match std::env::var_os(Self::VARIABLE) {
            None => Ok(Self::Text),
            Some(value) => value
                .to_str()
                .ok_or_else(|| {
                    TelemetryError::InvalidLogFormat(value.to_string_lossy().into_owned())
                })?
                .parse(),
        }
    }
}

impl FromStr for LogFormat {
    type Err = TelemetryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let word = s.trim();
        if word.is_empty() || word.eq_ignore_ascii_case("text") {
            Ok(Self::Text)
        } else if word.eq_ignore_ascii_case("json") {
            Ok(Self::Json)
        } else {
            Err(TelemetryError::InvalidLogFormat(s.to_owned()))
        }
    }
}

/// Targets kept quieter in the log unless the directives name them:
/// tokio-postgres, whose debug lines print every statement's parameter
/// values; the OpenTelemetry SDK (export failures are reported once by this
/// crate instead); the HTTP/2 stack under the OTLP exporter.
const QUIET_IN_LOG: &[(&str, &str)] = &[
    ("tokio_postgres", "info"),
    ("opentelemetry", "off"),
    ("h2", "warn"),
    ("hyper", "warn"),
    ("tonic", "warn"),
    ("tower::buffer", "warn"),
];

/// The log filter: `directives` (from [`LogConfig::directives`](pgline_config::LogConfig::directives))
/// plus [`QUIET_IN_LOG`] for targets they do not mention.
pub(crate) fn log_filter(directives: &str) -> Result<EnvFilter, TelemetryError> {
    let mut all = directives.trim().to_owned();
    for (target, level) in QUIET_IN_LOG {
        if !directives.contains(target) {
            if !all.is_empty() {
                all.push(',');
            }
            all.push_str(target);
            all.push('=');
            all.push_str(level);
        }
    }
    EnvFilter::builder()
        .parse(&all)
        .map_err(|source| TelemetryError::InvalidFilter {
            directives: directives.to_owned(),
            source,
        })
}

/// What reaches the exporter through `tracing`, whatever the log level:
/// spans at info and above (a request's span), and nothing from the
/// exporter's own stack (whose spans would otherwise be exported in a loop).
/// Events are not exported as span events: they are log lines, and a log
/// line from another crate (a server notice relayed by tokio-postgres, say)
/// may quote values that must not leave the process. The database spans do
/// not pass through `tracing`.
pub(crate) fn export_filter() -> impl Filter<Registry> {
    Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("opentelemetry", LevelFilter::OFF)
        .with_target("h2", LevelFilter::OFF)
        .with_target("hyper", LevelFilter::OFF)
        .with_target("tonic", LevelFilter::OFF)
        .and(filter_fn(|metadata| metadata.is_span()))
}

/// The subscriber: the log layer, and the OpenTelemetry layer when `tracer`
/// is given.
pub(crate) fn build<W>(
    tracer: Option<SdkTracer>,
    directives: &str,
    format: LogFormat,
    ansi: bool,
    writer: W,
) -> Result<impl tracing::Subscriber + Send + Sync + 'static, TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = log_filter(directives)?;
    let log = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(ansi)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
    };
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = vec![log];
    if let Some(tracer) = tracer {
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_location(false)
                .with_threads(false)
                .with_target(false)
                .with_tracked_inactivity(false)
                // Nothing here reads OpenTelemetry's thread-local context
                // (the acquire span asks the tracing span), and activating it
                // on every poll of every span is a large part of the cost.
                .with_context_activation(false)
                .with_filter(export_filter())
                .boxed(),
        );
    }
    Ok(Registry::default().with(layers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_format_words() {
        assert_eq!("json".parse::<LogFormat>().ok(), Some(LogFormat::Json));
        assert_eq!(" JSON ".parse::<LogFormat>().ok(), Some(LogFormat::Json));
        assert_eq!("text".parse::<LogFormat>().ok(), Some(LogFormat::Text));
        assert_eq!("".parse::<LogFormat>().ok(), Some(LogFormat::Text));
        let err = "yaml".parse::<LogFormat>().err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(r#"LOG_FORMAT: expected `text` or `json`, got "yaml""#)
        );
    }

    #[test]
    fn log_filter_quiets_the_exporter_stack_unless_named() {
        let quiet = log_filter("debug")
            .map(|f| f.to_string())
            .unwrap_or_default();
        assert!(quiet.contains("opentelemetry=off"), "{quiet}");
        assert!(quiet.contains("h2=warn"), "{quiet}");
        let named = log_filter("info,opentelemetry_sdk=debug")
            .map(|f| f.to_string())
            .unwrap_or_default();
        assert!(!named.contains("opentelemetry=off"), "{named}");
        assert!(log_filter("info,[{").is_err());
    }
}

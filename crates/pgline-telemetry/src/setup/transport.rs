//! `OTEL_EXPORTER_OTLP_PROTOCOL` and `OTEL_EXPORTER_OTLP_COMPRESSION` (and
//! their `_TRACES_`/`_METRICS_` forms, which win for their signal): pgline
//! exports OTLP over gRPC, uncompressed. A configuration that asks for
//! OTLP over HTTP (a collector's port 4318) would otherwise fail at every
//! export with a transport error that does not say why, so it stops the
//! start with the variable named; one that asks for compression is told
//! once that it does not get it (collectors take uncompressed requests).

use crate::TelemetryError;

/// The signals' infixes in the variables' names.
pub(crate) const TRACES: &str = "TRACES";
pub(crate) const METRICS: &str = "METRICS";

/// The two settings, per signal, as the environment gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Transport {
    /// `(variable, value)` of every one of the six variables that is set
    /// and not blank.
    vars: Vec<(String, String)>,
}

impl Transport {
    /// Reads the variables.
    pub(crate) fn from_env() -> Self {
        Self::from_lookup(|variable| std::env::var(variable).ok())
    }

    pub(crate) fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let mut vars = Vec::new();
        for what in ["PROTOCOL", "COMPRESSION"] {
            for variable in [
                format!("OTEL_EXPORTER_OTLP_{TRACES}_{what}"),
                format!("OTEL_EXPORTER_OTLP_{METRICS}_{what}"),
                format!("OTEL_EXPORTER_OTLP_{what}"),
            ] {
                if let Some(value) = lookup(&variable).filter(|v| !v.trim().is_empty()) {
                    vars.push((variable, value.trim().to_owned()));
                }
            }
        }
        Self { vars }
    }

    /// The variable that decides `what` for `signal`, and its value.
    fn effective(&self, signal: &str, what: &str) -> Option<&(String, String)> {
        let specific = format!("OTEL_EXPORTER_OTLP_{signal}_{what}");
        let general = format!("OTEL_EXPORTER_OTLP_{what}");
        self.vars
            .iter()
            .find(|(v, _)| *v == specific)
            .or_else(|| self.vars.iter().find(|(v, _)| *v == general))
    }

    /// For the signals exported: an error for a protocol other than gRPC,
    /// else what to warn about (compression asked for and not given).
    pub(crate) fn check(&self, signals: &[&str]) -> Result<Vec<String>, TelemetryError> {
        let mut warnings = Vec::new();
        for signal in signals {
            if let Some((variable, value)) = self.effective(signal, "PROTOCOL")
                && !value.eq_ignore_ascii_case("grpc")
            {
                return Err(TelemetryError::Protocol {
                    variable: variable.clone(),
                    value: value.clone(),
                });
            }
            if let Some((variable, value)) = self.effective(signal, "COMPRESSION")
                && !value.eq_ignore_ascii_case("none")
            {
                let warning = format!(
                    "{variable}={value}: pgline does not compress OTLP exports; \
                     telemetry is sent uncompressed, which collectors accept"
                );
                if !warnings.contains(&warning) {
                    warnings.push(warning);
                }
            }
        }
        Ok(warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport(vars: &[(&str, &str)]) -> Transport {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Transport::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn grpc_unset_or_blank_is_fine_and_says_nothing() {
        for vars in [
            &[][..],
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", " GRPC ")],
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", "")],
            &[("OTEL_EXPORTER_OTLP_COMPRESSION", "none")],
        ] {
            assert_eq!(
                transport(vars).check(&[TRACES, METRICS]).unwrap(),
                Vec::<String>::new()
            );
        }
    }

    #[test]
    fn http_is_refused_naming_the_variable_that_decided() {
        let err = transport(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")])
            .check(&[TRACES, METRICS])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "OTEL_EXPORTER_OTLP_PROTOCOL=\"http/protobuf\": pgline exports OTLP over gRPC only; \
             set it to `grpc` (or unset it) and point OTEL_EXPORTER_OTLP_ENDPOINT at the \
             collector's gRPC port (4317 by default)"
        );
        // The signal's own variable wins over the general one, both ways.
        let t = transport(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
        ]);
        assert!(t.check(&[TRACES]).is_ok());
        let err = t.check(&[TRACES, METRICS]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("OTEL_EXPORTER_OTLP_PROTOCOL=\"http/json\""),
            "{err}"
        );
        let t = transport(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf"),
        ]);
        assert!(t.check(&[TRACES]).is_ok());
        let err = t.check(&[TRACES, METRICS]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL="),
            "{err}"
        );
    }

    #[test]
    fn compression_asked_for_is_one_warning_per_variable() {
        let warnings = transport(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")])
            .check(&[TRACES, METRICS])
            .unwrap();
        assert_eq!(
            warnings,
            [
                "OTEL_EXPORTER_OTLP_COMPRESSION=gzip: pgline does not compress OTLP exports; \
              telemetry is sent uncompressed, which collectors accept"
            ]
        );
        let warnings = transport(&[
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none"),
        ])
        .check(&[TRACES, METRICS])
        .unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].starts_with("OTEL_EXPORTER_OTLP_COMPRESSION=gzip"));
    }

    #[test]
    fn a_blank_signal_variable_leaves_the_general_one_in_charge() {
        let t = transport(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "  "),
        ]);
        let err = t.check(&[TRACES]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("OTEL_EXPORTER_OTLP_PROTOCOL=\"http/protobuf\""),
            "{err}"
        );
    }

    #[test]
    fn a_signal_not_exported_is_not_checked() {
        let t = transport(&[
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "gzip"),
        ]);
        assert_eq!(t.check(&[TRACES]).unwrap(), Vec::<String>::new());
        assert_eq!(t.check(&[]).unwrap(), Vec::<String>::new());
        assert!(t.check(&[METRICS]).is_err());
    }
}

//! `--check-config`: load the configuration and show the effective settings.

use std::error::Error;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use pgline_config::Config;

/// The exit status for an invalid configuration.
pub const INVALID_CONFIG: u8 = 2;

/// Loads the configuration from the process environment. When it is
/// invalid, prints `error: …` (with the causes) to stderr and returns the
/// exit status to end with.
pub fn load() -> Result<Config, ExitCode> {
    Config::from_env().map_err(|error| {
        eprintln!("error: {}", with_causes(&error));
        ExitCode::from(INVALID_CONFIG)
    })
}

/// Prints the effective configuration to stdout and any warnings to stderr.
pub fn print(config: &Config) {
    print!("{}", render(config));
    for warning in config.warnings() {
        eprintln!("warning: {warning}");
    }
    if let Some(warning) = pgline_server::plain_http_warning(config) {
        eprintln!("warning: {warning}");
    }
}

/// `error: cause: cause…`, as anyhow's `{:#}` prints a chain.
fn with_causes(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

/// The effective configuration as an aligned block; the password shows as `***`.
pub fn render(config: &Config) -> String {
    let (db, pool, log, telemetry) = (
        &config.database,
        &config.pool,
        &config.log,
        &config.telemetry,
    );
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "  {label:<18} {value}");
    };

    let hosts: Vec<String> = db.hosts.iter().map(ToString::to_string).collect();
    line("profile", config.profile.to_string());
    line(
        "config file",
        config
            .file
            .as_ref()
            .map_or_else(|| "(none)".to_owned(), |p| p.display().to_string()),
    );
    line("backend", config.server.backend.to_string());
    line("listen", config.server.listen_address());
    line(
        "https",
        config.server.https.as_ref().map_or_else(
            || "off (plain HTTP)".to_owned(),
            |https| {
                format!(
                    "certificate {}, key {}",
                    https.cert_file.display(),
                    https.key_file.display()
                )
            },
        ),
    );
    line("database hosts", hosts.join(", "));
    line("dbname", db.name.clone());
    line("user", db.user.clone());
    line(
        "password",
        db.password
            .as_ref()
            .map_or_else(|| "(not set)".to_owned(), ToString::to_string),
    );
    let tls = match db.verifies_certificate() && !db.tls.verifies_certificate() {
        true => "TLS required, certificate chain checked",
        false => db.tls.describe(),
    };
    line("tls", format!("{} ({tls})", db.tls));
    if let Some(path) = &db.ssl_root_cert {
        line("tls root certs", path.display().to_string());
    }
    line("target session", db.target_session_attrs.to_string());
    line(
        "pool min / max",
        format!("{} / {}", pool.min_connections, pool.max_connections),
    );
    line("acquire timeout", human(pool.acquire_timeout));
    line("idle timeout", human(pool.idle_timeout));
    line("max lifetime", human(pool.max_lifetime));
    line("connect timeout", human(pool.connect_timeout));
    line("query timeout", human(pool.query_timeout));
    line(
        "keepalive",
        match pool.keepalive {
            true => format!("on, first probe after {}", human(pool.keepalive_idle)),
            false => "off".to_owned(),
        },
    );
    line(
        "validation",
        match pool.validation_idle.is_zero() {
            true => "every checkout".to_owned(),
            false => format!("on checkout after {} idle", human(pool.validation_idle)),
        },
    );
    line(
        "statement cache",
        match pool.statement_cache_size {
            0 => "off".to_owned(),
            size => format!("{size} per connection"),
        },
    );
    line(
        "leak detection",
        pool.leak_detection
            .map_or_else(|| "off".to_owned(), |d| format!("held over {}", human(d))),
    );
    line(
        "read pool",
        match &config.read_pool {
            None => "off (every read on the primary)".to_owned(),
            Some(read) => format!(
                "{} (read-only), min {} / max {}, acquire {}, fallback {}",
                read.hosts
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                read.min_connections,
                read.max_connections,
                human(read.acquire_timeout),
                human(read.fallback_period)
            ),
        },
    );
    line(
        "log level",
        match &log.filter {
            Some(filter) => format!("{} (RUST_LOG wins: {filter})", log.level),
            None => log.level.to_string(),
        },
    );
    line("slow query", human(log.slow_query));
    line(
        "utilization warn",
        format!("{} %", log.utilization_warn_percent),
    );
    line(
        "telemetry",
        match (&telemetry.otlp_endpoint, telemetry.sdk_disabled) {
            (Some(endpoint), false) => format!("OTLP export to {endpoint}"),
            (Some(_), true) => "off (OTEL_SDK_DISABLED=true)".to_owned(),
            (None, _) => "off (OTEL_EXPORTER_OTLP_ENDPOINT not set)".to_owned(),
        },
    );
    line("service name", telemetry.service_name.clone());

    format!("pgline-server configuration (valid):\n{out}")
}

/// `500 ms`, `30 s`, `60 s`, `5 min`, `2 h`: the largest whole unit, with
/// minutes and hours only from two of them.
fn human(duration: Duration) -> String {
    const UNITS: [(&str, u128, u128); 3] =
        [("h", 3_600_000, 2), ("min", 60_000, 2), ("s", 1_000, 1)];
    let ms = duration.as_millis();
    UNITS
        .iter()
        .find(|(_, size, from)| ms >= from * size && ms.is_multiple_of(*size))
        .map_or_else(
            || format!("{ms} ms"),
            |(unit, size, _)| format!("{} {unit}", ms / size),
        )
}

#[cfg(test)]
mod tests {
    use pgline_config::{Config, Profile, Secret};

    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human(Duration::from_millis(500)), "500 ms");
        assert_eq!(human(Duration::from_millis(1500)), "1500 ms");
        assert_eq!(human(Duration::from_secs(30)), "30 s");
        assert_eq!(human(Duration::from_secs(60)), "60 s");
        assert_eq!(human(Duration::from_secs(3600)), "60 min");
        assert_eq!(human(Duration::from_secs(300)), "5 min");
        assert_eq!(human(Duration::from_secs(7200)), "2 h");
    }

    #[test]
    fn render_hides_the_password_and_shows_the_rest() {
        let mut config = Config::defaults(Profile::Production);
        config.database.password = Some(Secret::new("hunter2"));
        let text = render(&config);
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("  password           ***\n"), "{text}");
        assert!(text.contains("  profile            production\n"), "{text}");
        assert!(
            text.contains("  database hosts     localhost:5432\n"),
            "{text}"
        );
        assert!(text.contains("  pool min / max     5 / 20\n"), "{text}");
        assert!(text.contains("  idle timeout       5 min\n"), "{text}");
        assert!(
            text.contains("  keepalive          on, first probe after 10 s\n"),
            "{text}"
        );
        config.database.password = None;
        assert!(render(&config).contains("  password           (not set)\n"));
    }

    #[test]
    fn causes_are_appended() {
        let error = Config::from_sources(
            Vec::<(String, String)>::new(),
            Some("/nonexistent/p.toml".as_ref()),
        )
        .unwrap_err();
        assert_eq!(
            with_causes(&error),
            "cannot read configuration file /nonexistent/p.toml: No such file or directory (os error 2)"
        );
    }
}

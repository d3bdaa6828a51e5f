//! The Prometheus text: names, types and labels, parsed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use pgline_async::PoolOptions;
use pgline_core::{Database, ErrorKind};
use pgline_telemetry::{LogFormat, Telemetry, Traced};
use tracing::instrument::WithSubscriber as _;

use crate::common::{bounded, dispatch, fresh_config, pool, serial};

/// One sample line: metric name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The `# TYPE` of each family and every sample, from the text format.
fn parse(text: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "{name} typed twice"
            );
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').expect("closing brace")),
            None => (series, ""),
        };
        let mut map = BTreeMap::new();
        for pair in split_labels(labels) {
            let (key, quoted) = pair.split_once('=').expect("label=value");
            let value = quoted
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .expect("quoted label value");
            map.insert(key.to_owned(), value.to_owned());
        }
        let value = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().expect("numeric sample value"),
        };
        samples.push(Sample {
            name: name.to_owned(),
            labels: map,
            value,
        });
    }
    (types, samples)
}

/// Label pairs split at commas outside quotes.
fn split_labels(labels: &str) -> Vec<&str> {
    let mut pairs = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in labels.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                pairs.push(&labels[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < labels.len() {
        pairs.push(&labels[start..]);
    }
    pairs
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_text_has_the_conventions_names_types_and_labels() {
    bounded("the Prometheus test", async {
        let _serial = serial().await;
        let config = fresh_config(&[
            ("OTEL_SERVICE_NAME", "pgline-it".to_owned()),
            ("LOG_LEVEL", "debug".to_owned()),
        ])
        .await;
        // Spans are processed too (and dropped), as in a service that exports.
        let telemetry = Telemetry::builder(&config.telemetry)
            .discard_export()
            .build()
            .unwrap();
        let metrics = telemetry.metrics().clone();
        let subscriber = dispatch(
            telemetry
                .subscriber(&config.log, LogFormat::Text, std::io::sink)
                .unwrap(),
        );
        let pool_name = "it-prometheus";
        let pool = pool(
            &config,
            PoolOptions::new(1, 1).with_listener(metrics.pool_listener(pool_name)),
        )
        .await;
        let stats = pool.clone();
        metrics.register_pool(pool_name, move || stats.stats());
        metrics.register_breaker(pool_name, || 1);
        let db = Traced::from_config(pool.clone(), &config).with_metrics(&metrics);

        // A second pool whose only connection is held while another caller waits.
        let short = pgline_async::PgPool::connect_with(
            &config,
            PoolOptions::new(1, 1)
                .with_acquire_timeout(Duration::from_millis(200))
                .with_listener(metrics.pool_listener("it-short")),
        )
        .await
        .unwrap();
        let short_stats = short.clone();
        metrics.register_pool("it-short", move || short_stats.stats());

        async {
            db.query("SELECT 1", &[]).await.unwrap();
            db.execute("SELECT $1::int", &[&7_i32]).await.unwrap();
            assert!(
                db.execute("SELECT * FROM missing_table", &[])
                    .await
                    .is_err()
            );
            let held = short.acquire().await.unwrap();
            let timed_out = Traced::from_config(short.clone(), &config)
                .with_metrics(&metrics)
                .query("SELECT 1", &[])
                .await
                .unwrap_err();
            assert!(matches!(timed_out.kind(), ErrorKind::AcquireTimeout { .. }));
            drop(held);
        }
        .with_subscriber(subscriber)
        .await;

        let text = metrics.render_prometheus();
        let (types, samples) = parse(&text);

        let expected_types = [
            ("db_client_connection_count", "gauge"),
            ("db_client_connection_idle_max", "gauge"),
            ("db_client_connection_idle_min", "gauge"),
            ("db_client_connection_max", "gauge"),
            ("db_client_connection_pending_requests", "gauge"),
            ("db_client_connection_timeouts_total", "counter"),
            ("db_client_connection_create_time_seconds", "histogram"),
            ("db_client_connection_wait_time_seconds", "histogram"),
            ("db_client_connection_use_time_seconds", "histogram"),
            ("db_client_operation_duration_seconds", "histogram"),
            ("pgline_pool_utilization_ratio", "gauge"),
            ("pgline_pool_connections_closed_total", "counter"),
            ("pgline_pool_errors_total", "counter"),
            ("pgline_breaker_state", "gauge"),
        ];
        for (name, kind) in expected_types {
            assert_eq!(
                types.get(name).map(String::as_str),
                Some(kind),
                "# TYPE of {name} in\n{text}"
            );
        }
        // Every sample belongs to a typed family and has valid, low-cardinality labels.
        for sample in &samples {
            assert!(valid_name(&sample.name), "{}", sample.name);
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    sample
                        .name
                        .strip_suffix(suffix)
                        .filter(|base| types.get(*base).map(String::as_str) == Some("histogram"))
                })
                .unwrap_or(&sample.name);
            assert!(types.contains_key(family), "untyped sample {}", sample.name);
            for label in sample.labels.keys() {
                assert!(valid_name(label), "label {label}");
                assert!(
                    !label.starts_with("otel_scope"),
                    "scope labels are off: {label}"
                );
            }
            assert!(
                !sample
                    .labels
                    .values()
                    .any(|v| v.contains("missing_table") || v.contains("SELECT $1")),
                "no query text in labels: {sample:?}"
            );
        }

        let find = |name: &str, labels: &[(&str, &str)]| -> f64 {
            samples
                .iter()
                .find(|s| {
                    s.name == name
                        && s.labels.len() == labels.len()
                        && labels
                            .iter()
                            .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
                })
                .unwrap_or_else(|| panic!("no {name} with {labels:?} in\n{text}"))
                .value
        };
        let pool_label = ("db_client_connection_pool_name", pool_name);
        assert_eq!(
            find(
                "db_client_connection_count",
                &[pool_label, ("db_client_connection_state", "idle")]
            ),
            1.0
        );
        assert_eq!(
            find(
                "db_client_connection_count",
                &[pool_label, ("db_client_connection_state", "used")]
            ),
            0.0
        );
        assert_eq!(find("db_client_connection_max", &[pool_label]), 1.0);
        assert_eq!(find("db_client_connection_idle_min", &[pool_label]), 1.0);
        assert_eq!(
            find("db_client_connection_pending_requests", &[pool_label]),
            0.0
        );
        assert_eq!(
            find("db_client_connection_timeouts_total", &[pool_label]),
            0.0
        );
        assert_eq!(
            find(
                "db_client_connection_timeouts_total",
                &[("db_client_connection_pool_name", "it-short")]
            ),
            1.0
        );
        assert_eq!(find("pgline_breaker_state", &[pool_label]), 1.0);
        assert_eq!(
            find(
                "db_client_connection_wait_time_seconds_count",
                &[pool_label]
            ),
            3.0
        );
        assert_eq!(
            find("db_client_connection_use_time_seconds_count", &[pool_label]),
            3.0
        );
        assert!(
            find(
                "db_client_connection_create_time_seconds_count",
                &[pool_label]
            ) >= 1.0
        );
        assert_eq!(
            find(
                "db_client_connection_wait_time_seconds_bucket",
                &[pool_label, ("le", "+Inf")]
            ),
            3.0
        );
        let namespace = config.database.name.as_str();
        let select = [
            ("db_system_name", "postgresql"),
            ("db_namespace", namespace),
            ("db_operation_name", "SELECT"),
        ];
        assert_eq!(
            find("db_client_operation_duration_seconds_count", &select),
            2.0
        );
        let with_error = |error: &'static str| {
            let mut labels = select.to_vec();
            labels.push(("error_type", error));
            labels
        };
        assert_eq!(
            find(
                "db_client_operation_duration_seconds_count",
                &with_error("42P01")
            ),
            1.0
        );
        assert_eq!(
            find(
                "db_client_operation_duration_seconds_count",
                &with_error("acquire_timeout")
            ),
            1.0
        );
        let buckets: BTreeSet<String> = samples
            .iter()
            .filter(|s| s.name == "db_client_operation_duration_seconds_bucket")
            .filter_map(|s| s.labels.get("le").cloned())
            .collect();
        assert!(buckets.contains("0.0005") && buckets.contains("10") && buckets.contains("+Inf"));
        assert!(
            text.contains("target_info{"),
            "service labels in target_info"
        );
        assert!(text.contains(r#"service_name="pgline-it""#));

        short.close(Duration::from_secs(5)).await;
        pool.close(Duration::from_secs(5)).await;
        tokio::task::spawn_blocking(move || telemetry.shutdown())
            .await
            .unwrap()
            .unwrap();
    })
    .await;
}

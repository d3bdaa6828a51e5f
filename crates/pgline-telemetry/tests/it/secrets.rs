//! No password and no parameter value leaves the process: not in a span, not
//! in a metric, not in a log line.

use std::time::Duration;

use pgline_async::PoolOptions;
use pgline_core::{Database, DbError};
use pgline_telemetry::{LogFormat, Telemetry, Traced};
use pgline_testkit::otlp::{Receiver, attr};
use tracing::Instrument as _;
use tracing::instrument::WithSubscriber as _;

use crate::common::{Capture, bounded, config_for, dispatch, fresh_config, pool, serial};

const PASSWORD: &str = "pw-Zebra-7731-Secret";
const BARCODE: &str = "param-Quokka-4412";
const NUMBER: i64 = 987_654_321_123;
const NOT_A_NUMBER: &str = "param-Wombat-5519";
const ROLE: &str = "it_secret_role";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_or_parameter_value_appears_anywhere() {
    bounded("the secrets test", async {
        let _serial = serial().await;
        let (receiver, addr) = Receiver::start().await.unwrap();
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"));
        let admin = fresh_config(std::slice::from_ref(&endpoint)).await;
        let config = config_for(
            &admin.database.name,
            &[
                ("DB_USER", ROLE.to_owned()),
                ("DB_PASSWORD", PASSWORD.to_owned()),
                ("LOG_LEVEL", "trace".to_owned()),
                endpoint,
            ],
        );
        assert!(
            config.database.password.is_some(),
            "the configuration carries the password"
        );
        assert!(!format!("{config:?}").contains(PASSWORD));

        let telemetry = Telemetry::builder(&config.telemetry).build().unwrap();
        let logs = Capture::default();
        let subscriber = dispatch(
            telemetry
                .subscriber(&config.log, LogFormat::Json, logs.clone())
                .unwrap(),
        );
        let metrics = telemetry.metrics().clone();

        let work = async {
            // The role is created through the traced handle: its literal must be redacted.
            let admin_pool = pool(&admin, PoolOptions::new(1, 1)).await;
            Traced::from_config(admin_pool.clone(), &admin)
                .with_metrics(&metrics)
                .batch_execute(&format!(
                    "CREATE ROLE {ROLE} LOGIN SUPERUSER PASSWORD '{PASSWORD}'"
                ))
                .await
                .unwrap();
            admin_pool.close(Duration::from_secs(5)).await;

            let pool = pool(
                &config,
                PoolOptions::new(1, 2).with_listener(telemetry.pool_listener("it-secrets")),
            )
            .await;
            let stats = pool.clone();
            metrics.register_pool("it-secrets", move || stats.stats());
            // A zero threshold: every statement takes the slow-statement path too.
            let db = Traced::from_config(pool.clone(), &config)
                .with_metrics(&metrics)
                .with_slow_query(Duration::ZERO);

            db.batch_execute("CREATE TABLE panels (barcode text PRIMARY KEY, n bigint NOT NULL)")
                .await
                .unwrap();
            db.execute(
                "INSERT INTO panels (barcode, n) VALUES ($1, $2)",
                &[&BARCODE, &NUMBER],
            )
            .await
            .unwrap();
            let row = db
                .query_one("SELECT n FROM panels WHERE barcode = $1", &[&BARCODE])
                .await
                .unwrap();
            assert_eq!(row.get::<_, i64>(0), NUMBER);
            // The server's DETAIL quotes the key: "Key (barcode)=(param-Quokka-4412)".
            let duplicate = db
                .execute(
                    "INSERT INTO panels (barcode, n) VALUES ($1, $2)",
                    &[&BARCODE, &NUMBER],
                )
                .await
                .unwrap_err();
            assert!(duplicate.is_unique_violation());
            // The server's message quotes the input: invalid input syntax for type bigint: "…".
            let bad = db
                .query("SELECT $1::text::bigint", &[&NOT_A_NUMBER])
                .await
                .unwrap_err();
            assert_eq!(bad.code().map(|c| c.code()), Some("22P02"));
            // Inline literals without parameters are redacted too.
            db.query(
                &format!("SELECT n FROM panels WHERE barcode = '{BARCODE}'"),
                &[],
            )
            .await
            .unwrap();
            let failed: Result<(), DbError> = db
                .transaction(|tx| {
                    Box::pin(async move {
                        tx.execute(
                            "UPDATE panels SET n = $2 WHERE barcode = $1",
                            &[&BARCODE, &(NUMBER + 1)],
                        )
                        .await?;
                        tx.execute(
                            "INSERT INTO panels (barcode, n) VALUES ($1, $2)",
                            &[&BARCODE, &NUMBER],
                        )
                        .await?;
                        Ok(())
                    })
                })
                .await;
            assert!(failed.unwrap_err().is_unique_violation());
            pool.close(Duration::from_secs(5)).await;
        };
        async {
            work.instrument(tracing::info_span!("station request"))
                .await
        }
        .with_subscriber(subscriber)
        .await;

        let telemetry = tokio::task::spawn_blocking(move || {
            telemetry.force_flush().unwrap();
            telemetry
        })
        .await
        .unwrap();

        // What was captured is substantial...
        let spans = receiver.spans();
        assert!(
            spans.len() >= 10,
            "{} spans: {:?}",
            spans.len(),
            spans.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
        );
        let created: Vec<_> = spans
            .iter()
            .filter(|(_, s)| s.name.starts_with("CREATE"))
            .filter_map(|(_, s)| attr(&s.attributes, "db.query.text"))
            .collect();
        assert!(
            created
                .iter()
                .any(|t| t == "CREATE ROLE it_secret_role LOGIN SUPERUSER PASSWORD ?"),
            "{created:?}"
        );
        let log_text = logs.text();
        for line in log_text.lines() {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        }
        assert!(log_text.contains("slow statement"), "{log_text}");
        assert!(log_text.contains("22P02"), "{log_text}");
        let prometheus = metrics.render_prometheus();
        assert!(prometheus.contains("it-secrets"));

        // ...and holds no secret.
        let everything = format!("{}\n{log_text}\n{prometheus}", receiver.dump());
        for secret in [
            PASSWORD,
            BARCODE,
            NOT_A_NUMBER,
            &NUMBER.to_string(),
            &(NUMBER + 1).to_string(),
            "Zebra",
            "Quokka",
            "Wombat",
        ] {
            if let Some(at) = everything.find(secret) {
                let from = at.saturating_sub(200);
                let to = (at + 200).min(everything.len());
                let context = everything.get(from..to).unwrap_or(secret);
                panic!("{secret:?} leaked: …{context}…");
            }
        }

        tokio::task::spawn_blocking(move || telemetry.shutdown())
            .await
            .unwrap()
            .unwrap();
    })
    .await;
}

//! Export to an `https` collector: its certificate is verified against the
//! CA given (`OTEL_EXPORTER_OTLP_CERTIFICATE`), and nothing is sent to a
//! collector it does not trust.

use pgline_async::PoolOptions;
use pgline_core::Database;
use pgline_telemetry::{Telemetry, Traced};
use pgline_testkit::otlp::Receiver;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

use crate::common::{bounded, fresh_config, pool};

/// A CA and a certificate for `localhost` signed by it: (CA PEM, chain PEM,
/// key PEM).
fn certificates() -> (String, String, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "pgline OTLP test CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "collector");
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_metrics_reach_an_https_collector_whose_ca_is_trusted_and_no_other() {
    bounded("the OTLP TLS test", async {
        let (ca, chain, key) = certificates();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca).unwrap();
        let (receiver, addr) = Receiver::start_tls(&chain, &key).await.unwrap();
        let config = fresh_config(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("https://localhost:{}", addr.port()),
        )])
        .await;
        let db_name = config.database.name.clone();

        // Trusted: the statement's span and the pool's metrics arrive.
        let telemetry = Telemetry::builder(&config.telemetry)
            .otlp_ca_certificate(&ca_file)
            .build()
            .unwrap();
        let pool = pool(
            &config,
            PoolOptions::new(1, 2).with_listener(telemetry.pool_listener("tls")),
        )
        .await;
        let stats = pool.clone();
        telemetry
            .metrics()
            .register_pool("tls", move || stats.stats());
        let db = Traced::from_config(pool.clone(), &config).with_metrics(telemetry.metrics());
        db.execute("SELECT 1", &[]).await.unwrap();
        tokio::task::block_in_place(|| telemetry.force_flush()).unwrap();
        let spans = receiver.spans();
        assert!(
            spans
                .iter()
                .any(|(_, s)| s.name == format!("SELECT {db_name}")),
            "the statement's span over TLS: {:?}",
            spans.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
        );
        assert!(
            receiver
                .metrics()
                .iter()
                .any(|m| m.name == "db.client.connection.count"),
            "the pool's metrics over TLS"
        );

        // Not trusted (only the public roots): the export fails, and says why.
        let before = receiver.spans().len();
        let untrusting = Telemetry::builder(&config.telemetry).build().unwrap();
        let db = Traced::from_config(pool.clone(), &config).with_metrics(untrusting.metrics());
        db.execute("SELECT 2", &[]).await.unwrap();
        let refused = tokio::task::block_in_place(|| untrusting.force_flush()).unwrap_err();
        let mut text = refused.to_string();
        let mut source = std::error::Error::source(&refused);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        assert!(
            text.to_lowercase().contains("certificate"),
            "the failure names the certificate: {text}"
        );
        println!("the refusal: {text}");
        assert_eq!(receiver.spans().len(), before, "nothing reached it");
        pool.close(std::time::Duration::from_secs(5)).await;
    })
    .await;
}

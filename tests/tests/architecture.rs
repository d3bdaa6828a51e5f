//! Architecture invariants of docs/ARCHITECTURE.md, checked on the manifests.
//!
//! Each rule lists dependencies a crate must not have (normal dependencies;
//! dev-dependencies may use anything, for tests and benchmarks).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A rule: `krate` must not depend on any crate whose name matches `forbidden`.
struct Rule {
    krate: &'static str,
    forbidden: &'static [&'static str],
    why: &'static str,
}

const RUNTIME_IO: &[&str] = &[
    "tokio",
    "axum",
    "hyper",
    "tower",
    "tower-http",
    "figment",
    "opentelemetry*",
    "tracing-opentelemetry",
    "r2d2",
    "r2d2_postgres",
    "postgres",
    "failsafe",
    "tokio-postgres-rustls",
    "rustls",
    "pgline-*",
];

const RULES: &[Rule] = &[
    Rule {
        krate: "pgline-core",
        forbidden: RUNTIME_IO,
        why: "core does no IO: no runtime, HTTP, figment, OpenTelemetry or backend",
    },
    Rule {
        krate: "pgline-config",
        forbidden: &["pgline-*", "tokio", "axum", "opentelemetry*", "r2d2*"],
        why: "config knows figment and nothing internal",
    },
    Rule {
        krate: "pgline-resilience",
        forbidden: &[
            "pgline-async",
            "pgline-sync",
            "pgline-telemetry",
            "pgline-mfg",
            "pgline-server",
            "r2d2*",
            "postgres",
            "opentelemetry*",
            "axum",
        ],
        why: "resilience wraps any backend through the core traits and knows no backend",
    },
    Rule {
        krate: "pgline-telemetry",
        forbidden: &[
            "pgline-async",
            "pgline-sync",
            "pgline-mfg",
            "pgline-server",
            "pgline-resilience",
            "r2d2*",
            "postgres",
        ],
        why: "telemetry sees pools through the core traits",
    },
    Rule {
        krate: "pgline-mfg",
        forbidden: &[
            "pgline-async",
            "pgline-sync",
            "pgline-server",
            "r2d2*",
            "postgres",
            "axum",
            "opentelemetry*",
        ],
        why: "the domain is written once against the core traits and runs on either backend",
    },
    Rule {
        krate: "pgline-async",
        forbidden: &[
            "pgline-sync",
            "pgline-resilience",
            "pgline-telemetry",
            "pgline-mfg",
            "pgline-server",
            "r2d2*",
            "axum",
            "opentelemetry*",
        ],
        why: "backends stand alone on core and config",
    },
    Rule {
        krate: "pgline-sync",
        forbidden: &[
            "pgline-async",
            "pgline-resilience",
            "pgline-telemetry",
            "pgline-mfg",
            "pgline-server",
            "axum",
            "opentelemetry*",
        ],
        why: "backends stand alone on core and config",
    },
];

/// Crates only `pgline-telemetry` may depend on.
const TELEMETRY_ONLY: &[&str] = &["opentelemetry*", "tracing-opentelemetry"];
/// Crates only the two backends may depend on (they own connections).
const BACKEND_ONLY: &[&str] = &["r2d2", "r2d2_postgres", "postgres", "tokio-postgres-rustls"];

fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace root")
        .to_path_buf()
}

/// The normal (non-dev) dependencies a manifest declares, by package name.
fn normal_dependencies(manifest: &str) -> BTreeSet<String> {
    let value: toml::Table = manifest.parse().expect("manifest is valid TOML");
    let mut names = BTreeSet::new();
    let mut collect = |table: Option<&toml::Value>| {
        if let Some(toml::Value::Table(deps)) = table {
            for (key, spec) in deps {
                let name = spec
                    .get("package")
                    .and_then(toml::Value::as_str)
                    .unwrap_or(key);
                names.insert(name.to_string());
            }
        }
    };
    collect(value.get("dependencies"));
    collect(value.get("build-dependencies"));
    if let Some(toml::Value::Table(targets)) = value.get("target") {
        for target in targets.values() {
            collect(target.get("dependencies"));
        }
    }
    names
}

fn crates() -> Vec<(String, BTreeSet<String>)> {
    let dir = workspace_root().join("crates");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("crates/ exists") {
        let path = entry.expect("readable entry").path().join("Cargo.toml");
        if let Ok(text) = std::fs::read_to_string(&path) {
            let name = path
                .parent()
                .and_then(Path::file_name)
                .and_then(|n| n.to_str())
                .expect("folder name")
                .to_string();
            out.push((name, normal_dependencies(&text)));
        }
    }
    out.sort();
    out
}

/// Every violation of the invariants, as readable lines.
fn violations(crates: &[(String, BTreeSet<String>)]) -> Vec<String> {
    let mut found = Vec::new();
    for (name, deps) in crates {
        // The benchmark harness compares every pool, peers included: it may
        // depend on anything, and nothing depends on it.
        if name == "pgline-bench" {
            continue;
        }
        for rule in RULES.iter().filter(|r| r.krate == name) {
            for dep in deps {
                if rule.forbidden.iter().any(|p| matches(p, dep)) {
                    found.push(format!("{name} depends on {dep}: {}", rule.why));
                }
            }
        }
        for dep in deps {
            // The testkit (test support, never a library's dependency) holds
            // the OTLP receiver the tests export to.
            if name != "pgline-telemetry"
                && name != "pgline-testkit"
                && TELEMETRY_ONLY.iter().any(|p| matches(p, dep))
            {
                found.push(format!(
                    "{name} depends on {dep}: only pgline-telemetry knows OpenTelemetry"
                ));
            }
            if name != "pgline-async"
                && name != "pgline-sync"
                && name != "pgline-testkit"
                && BACKEND_ONLY.iter().any(|p| matches(p, dep))
            {
                found.push(format!(
                    "{name} depends on {dep}: only pgline-async and pgline-sync own connections"
                ));
            }
            if (dep == "pgline-server" || dep == "pgline-testkit") && name != "pgline-server" {
                found.push(format!(
                    "{name} depends on {dep}: libraries never depend on the binary or on test support"
                ));
            }
        }
    }
    found
}

#[test]
fn workspace_respects_dependency_invariants() {
    let crates = crates();
    assert!(
        crates.len() >= 9,
        "expected the nine crates of DESIGN.md, found {crates:?}"
    );
    let found = violations(&crates);
    assert!(
        found.is_empty(),
        "architecture invariants broken:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_catches_a_forbidden_dependency() {
    let manifest = r#"
        [package]
        name = "pgline-core"
        [dependencies]
        tokio = "1"
        serde = "1"
        [dev-dependencies]
        axum = "0.8"
    "#;
    let deps = normal_dependencies(manifest);
    let found = violations(&[("pgline-core".to_string(), deps)]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("tokio"), "{found:?}");

    let mfg = normal_dependencies(
        "[dependencies]\npgline-async = { path = \"x\" }\nopentelemetry = \"0.33\"\n",
    );
    let found = violations(&[("pgline-mfg".to_string(), mfg)]);
    assert!(
        found.iter().any(|v| v.contains("pgline-async")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|v| v.contains("OpenTelemetry")),
        "{found:?}"
    );
}

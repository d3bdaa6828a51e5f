//! Runs the built `pgline-server --check-config` with a controlled environment.

use std::process::{Command, Output};

const PRODUCTION: &[(&str, &str)] = &[
    ("NODE_ENV", "production"),
    ("DB_HOST", "db.plant.internal"),
    ("DB_NAME", "plant"),
    ("DB_USER", "pgline"),
    ("DB_PASSWORD", "hunter2-secret"),
    ("DB_SSL", "true"),
];

/// Runs the binary with only `PATH` and `vars` in its environment.
fn run(args: &[&str], vars: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pgline-server"));
    command.args(args).env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command.envs(vars.iter().copied());
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("run pgline-server");
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[test]
fn invalid_pool_max_exits_2_naming_the_variable() {
    let (code, stdout, stderr) = run(&["--check-config"], &[("DB_POOL_MAX", "abc")]);
    assert_eq!(code, Some(2), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.starts_with("error: DB_POOL_MAX: "), "{stderr}");
    assert!(stderr.contains("whole number of connections"), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
}

#[test]
fn valid_production_config_exits_0_and_hides_the_password() {
    let (code, stdout, stderr) = run(&["--check-config"], PRODUCTION);
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("***"), "{stdout}");
    assert!(!stdout.contains("hunter2-secret") && !stderr.contains("hunter2-secret"));
    assert!(stderr.contains("serving plain HTTP"), "{stderr}");
    for expected in [
        "profile            production",
        "backend            async",
        "listen             0.0.0.0:3000",
        "https              off (plain HTTP)",
        "database hosts     db.plant.internal:5432",
        "dbname             plant",
        "user               pgline",
        "password           ***",
        "tls                verify-full",
        "pool min / max     5 / 20",
        "acquire timeout    60 s",
        "idle timeout       5 min",
        "query timeout      30 s",
        "log level          info",
        "telemetry          off",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}

#[test]
fn production_without_db_name_exits_2_naming_it() {
    let vars: Vec<_> = PRODUCTION
        .iter()
        .copied()
        .filter(|(name, _)| *name != "DB_NAME")
        .collect();
    let (code, _, stderr) = run(&["--check-config"], &vars);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: DB_NAME: required in the production profile"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2-secret"), "{stderr}");
}

#[test]
fn missing_config_file_exits_2_naming_the_path() {
    let (code, _, stderr) = run(
        &["--check-config"],
        &[("PGLINE_CONFIG", "/nonexistent/pgline.toml")],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.starts_with(
            "error: cannot read configuration file /nonexistent/pgline.toml (named by PGLINE_CONFIG): "
        ),
        "{stderr}"
    );
}

#[test]
fn development_defaults_show_no_password() {
    let (code, stdout, _) = run(&["--check-config"], &[]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("password           (not set)"), "{stdout}");
    assert!(
        stdout.contains("profile            development"),
        "{stdout}"
    );
}

#[test]
fn without_the_flag_the_server_starts_and_refuses_an_unreachable_production_database() {
    let (code, _, stderr) = run(
        &[],
        &[
            ("NODE_ENV", "production"),
            ("DB_HOST", "127.0.0.1"),
            ("DB_PORT", "1"),
            ("DB_NAME", "plant"),
            ("DB_USER", "line"),
            ("DB_PASSWORD", "hunter2-secret"),
            ("DB_SSL", "disable"),
            ("DB_POOL_ACQUIRE_MS", "300"),
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("unreachable at start-up"), "{stderr}");
    assert!(!stderr.contains("hunter2-secret"), "{stderr}");
    let (code, _, stderr) = run(&[], &[("DB_POOL_MAX", "abc")]);
    assert_eq!(code, Some(2), "{stderr}");
}

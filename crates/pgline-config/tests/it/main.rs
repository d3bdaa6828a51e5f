//! Black-box tests of configuration loading. Nothing here reads or changes
//! the process environment: every test passes its variables explicitly.

mod file;
mod hosts;
mod http;
mod invalid;
mod migration;
mod postgres;
mod production;
mod profiles;
mod secret;
mod secret_files;
mod url;
mod variables;

use std::io::Write;

use pgline_config::{Config, ConfigError};

/// Loads from exactly these variables.
pub fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_vars(vars.iter().copied())
}

/// Loads and fails the test with the error's text if invalid.
pub fn ok(vars: &[(&str, &str)]) -> Config {
    load(vars).unwrap_or_else(|e| panic!("expected a valid configuration, got: {e}"))
}

/// The error's text; fails the test if the configuration is valid.
pub fn err(vars: &[(&str, &str)]) -> String {
    match load(vars) {
        Ok(config) => panic!("expected an error for {vars:?}, got {config:?}"),
        Err(e) => e.to_string(),
    }
}

/// A complete, valid production environment.
pub const PRODUCTION: &[(&str, &str)] = &[
    ("NODE_ENV", "production"),
    ("DB_HOST", "db.plant.internal"),
    ("DB_NAME", "plant"),
    ("DB_USER", "pgline"),
    ("DB_PASSWORD", "hunter2-secret"),
    ("DB_SSL", "true"),
];

/// `PRODUCTION` without `var`.
pub fn production_without(var: &str) -> Vec<(&'static str, &'static str)> {
    PRODUCTION
        .iter()
        .copied()
        .filter(|(name, _)| *name != var)
        .collect()
}

/// A temporary TOML file with `text`.
pub fn toml_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("create a temporary file");
    file.write_all(text.as_bytes())
        .expect("write the temporary file");
    file
}

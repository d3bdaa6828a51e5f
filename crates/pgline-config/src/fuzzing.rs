//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz): the parsers of
//! user input, callable with plain strings, without files or the process
//! environment. Not part of the supported API.

use std::path::{Path, PathBuf};

use figment::value::Value;

use crate::tokens::{self, Names};
use crate::{Config, ConfigError, NamedToken, load, sources};

/// The path the TOML text of [`config_from_toml`] is reported as.
pub const FUZZ_FILE: &str = "fuzz.toml";

/// Parses a `DATABASE_URL` (libpq URL or key=value string) into the
/// configuration keys it sets, each value as text; the error is the message
/// that follows the setting's name.
pub fn connection_string(text: &str) -> Result<Vec<(&'static str, String)>, String> {
    let entries = crate::conninfo::parse(text)?;
    Ok(entries
        .into_iter()
        .map(|(key, value)| {
            let shown = match &value {
                Value::String(_, s) => s.clone(),
                other => other.to_u128().map(|n| n.to_string()).unwrap_or_default(),
            };
            (key, shown)
        })
        .collect())
}

/// Loads a configuration from `vars` as the environment and `toml` as the
/// content of the configuration file (reported as [`FUZZ_FILE`]); with
/// `toml` `None`, as [`Config::from_vars`] without `PGLINE_CONFIG`.
pub fn config_from_toml<I, K, V>(vars: I, toml: Option<&str>) -> Result<Config, ConfigError>
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Into<String>,
{
    let vars = load::collect(vars);
    let file = match toml {
        Some(text) => {
            let path = PathBuf::from(FUZZ_FILE);
            Some((sources::parse_file(text, Path::new(FUZZ_FILE))?, path))
        }
        None => None,
    };
    load::load_parsed(&vars, file)
}

/// Parses the lines of a token file: `STATION_TOKENS_FILE` (`name:sha256`
/// lines) or, with `admin`, `ADMIN_TOKEN_FILE` (the name optional).
pub fn token_lines(text: &str, admin: bool) -> Result<Vec<NamedToken>, String> {
    let names = match admin {
        true => Names::Optional,
        false => Names::Required,
    };
    tokens::parse(text, names)
}

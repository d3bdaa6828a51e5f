//! Loading: layer the sources with figment, then hand the result to the
//! [`Reader`] that checks every key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use figment::Figment;
use figment::value::{Dict, Value};

use crate::error::Problem;
use crate::model::DEFAULT_PORT;
use crate::reader::{Reader, shown};
use crate::sources::{self, CONFIG_FILE_VAR, PROFILE_KEY, PROFILE_VARS};
use crate::words::one_of;
use crate::{Config, ConfigError, Profile};

impl Config {
    /// Loads the configuration from the process environment, reading the
    /// TOML file named by `PGLINE_CONFIG` if it is set.
    ///
    /// Precedence, lowest first: the profile's defaults, the file, the
    /// environment. Within the file and within the environment, the parts a
    /// connection string (`database.url`, `DATABASE_URL`) names override the
    /// separate settings.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars_os().filter_map(|(name, value)| {
            Some((
                name.into_string().ok()?,
                value.to_string_lossy().into_owned(),
            ))
        }))
    }

    /// Loads the configuration from `vars` as if they were the environment,
    /// `PGLINE_CONFIG` included. The process environment is not read.
    ///
    /// ```
    /// use pgline_config::{Config, Profile};
    ///
    /// let config = Config::from_vars([("NODE_ENV", "test"), ("DB_POOL_MAX", "8")])?;
    /// assert_eq!(config.profile, Profile::Test);
    /// assert_eq!(config.pool.max_connections, 8);
    /// # Ok::<(), pgline_config::ConfigError>(())
    /// ```
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars = collect(vars);
        let file = sources::config_file_var(&vars).map(|path| (path, Some(CONFIG_FILE_VAR)));
        load(&vars, file)
    }

    /// Loads the configuration from `vars` and the TOML file at `file`, if
    /// given; `PGLINE_CONFIG` in `vars` is ignored. For a command-line option
    /// that names the file.
    pub fn from_sources<I, K, V>(vars: I, file: Option<&Path>) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        load(&collect(vars), file.map(|path| (path.to_owned(), None)))
    }
}

pub(crate) fn collect<I, K, V>(vars: I) -> BTreeMap<String, String>
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Into<String>,
{
    vars.into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
}

fn load(
    vars: &BTreeMap<String, String>,
    file: Option<(PathBuf, Option<&'static str>)>,
) -> Result<Config, ConfigError> {
    let file = match file {
        Some((path, named_by)) => Some((sources::read_file(&path, named_by)?, path)),
        None => None,
    };
    load_parsed(vars, file)
}

/// Loads from `vars` and the already parsed file `(settings, path)`.
pub(crate) fn load_parsed(
    vars: &BTreeMap<String, String>,
    file: Option<(Dict, PathBuf)>,
) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let profile = profile(vars, file.as_ref(), &mut problems);

    let mut figment = Figment::new().merge(sources::defaults(profile));
    if let Some((dict, path)) = &file {
        problems.extend(sources::unknown_file_keys(dict, path));
        figment = figment.merge(sources::file(dict, path));
        let setting = format!("database.url in {}", path.display());
        match dict.get("database").and_then(|db| db.find_ref("url")) {
            Some(Value::String(_, url)) if !url.trim().is_empty() => {
                match sources::connection_string(url, &setting) {
                    Ok(layer) => figment = figment.merge(layer),
                    Err(problem) => problems.push(problem),
                }
            }
            Some(Value::String(..)) | None => {}
            Some(other) => problems.push(Problem {
                setting,
                message: format!("expected a connection string, got {}", shown(other)),
            }),
        }
    }
    figment = figment.merge(sources::environment(vars));
    if let Some(url) = sources::set_var(vars, "DATABASE_URL") {
        match sources::connection_string(url, "DATABASE_URL") {
            Ok(layer) => figment = figment.merge(layer),
            Err(problem) => problems.push(problem),
        }
    }

    let mut reader = Reader::new(&figment, problems);
    let database = reader.database(profile);
    let pool = reader.pool();
    let primary_port = database.hosts.first().map_or(DEFAULT_PORT, |e| e.port);
    let config = Config {
        profile,
        read_pool: reader.read_pool(&pool, primary_port),
        database,
        pool,
        server: reader.server(),
        log: reader.log(),
        telemetry: reader.telemetry(),
        file: file.map(|(_, path)| path),
    };
    reader.finish(config)
}

/// `NODE_ENV`, else `APP_ENV`, else `profile` in the file, else development.
fn profile(
    vars: &BTreeMap<String, String>,
    file: Option<&(Dict, PathBuf)>,
    problems: &mut Vec<Problem>,
) -> Profile {
    let (setting, value) = match PROFILE_VARS
        .iter()
        .find_map(|var| Some((*var, sources::set_var(vars, var)?)))
    {
        Some((var, value)) => (var.to_owned(), Value::from(value)),
        None => match file.and_then(|(dict, path)| Some((dict.get(PROFILE_KEY)?, path))) {
            Some((value, path)) => (
                format!("{PROFILE_KEY} in {}", path.display()),
                value.clone(),
            ),
            None => return Profile::Development,
        },
    };
    match value.as_str().map(Profile::from_str) {
        Some(Ok(profile)) => profile,
        _ => {
            problems.push(Problem {
                setting,
                message: format!("expected {}, got {}", one_of(Profile::WORDS), shown(&value)),
            });
            Profile::Development
        }
    }
}

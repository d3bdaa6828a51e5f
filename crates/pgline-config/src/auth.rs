//! Who may call `pgline-server`: the settings, and what the production
//! profile requires of them before the server may serve.

use crate::error::Problem;
use crate::{Config, ConfigError, Profile, TokenFile};

/// Authentication of `pgline-server`'s callers: stations on `/api/*`, people
/// and scrapers on the admin endpoints (`/`, `/status`, `/metrics`,
/// `/health/database`). `/live`, `/ready` and `/health` are always open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// Station tokens (`STATION_TOKENS_FILE`): when set, `/api/*` requires a
    /// bearer token from this file. Required in the production profile.
    pub station_tokens: Option<TokenFile>,
    /// Admin tokens (`ADMIN_TOKEN_FILE`): when set, the admin endpoints
    /// require one of them. In the production profile required unless
    /// `admin_open` is true.
    pub admin_tokens: Option<TokenFile>,
    /// `ADMIN_OPEN=true`: serve the admin endpoints without a token in
    /// production too (their port must then be private).
    pub admin_open: bool,
}

impl AuthConfig {
    /// Whether `/api/*` requires a station token.
    pub fn stations_required(&self) -> bool {
        self.station_tokens.is_some()
    }

    /// Whether the admin endpoints require an admin token.
    pub fn admin_required(&self) -> bool {
        self.admin_tokens.is_some()
    }
}

impl Config {
    /// Checks what `pgline-server` needs before it serves HTTP in this
    /// profile. In production: `STATION_TOKENS_FILE`, and `ADMIN_TOKEN_FILE`
    /// unless `ADMIN_OPEN=true`. Other profiles need nothing (station
    /// authentication is then off unless configured, and
    /// [`warnings`](Config::warnings) says so).
    ///
    /// Loading does not check this, so that tools other than the server
    /// (`--check-config` of a database-only setup, tests) can load a
    /// production configuration without tokens.
    ///
    /// ```
    /// use pgline_config::Config;
    ///
    /// let config = Config::from_vars([
    ///     ("NODE_ENV", "production"),
    ///     ("DB_HOST", "db"), ("DB_NAME", "plant"), ("DB_USER", "pgline"),
    ///     ("DB_PASSWORD", "pw"), ("DB_SSL", "true"), ("ADMIN_OPEN", "true"),
    /// ])?;
    /// let error = config.check_http_auth().unwrap_err();
    /// assert!(error.to_string().starts_with("STATION_TOKENS_FILE: required in the production profile"));
    /// # Ok::<(), pgline_config::ConfigError>(())
    /// ```
    pub fn check_http_auth(&self) -> Result<(), ConfigError> {
        if self.profile != Profile::Production {
            return Ok(());
        }
        let auth = &self.server.auth;
        let mut problems = Vec::new();
        if auth.station_tokens.is_none() {
            problems.push(Problem {
                setting: "STATION_TOKENS_FILE".to_owned(),
                message:
                    "required in the production profile: set STATION_TOKENS_FILE to a file of \
                          station-id:sha256 lines (see docs/configuration.md), or \
                          server.station_tokens_file in the configuration file"
                        .to_owned(),
            });
        }
        if auth.admin_tokens.is_none() && !auth.admin_open {
            problems.push(Problem {
                setting: "ADMIN_TOKEN_FILE".to_owned(),
                message: "required in the production profile unless ADMIN_OPEN=true: set \
                          ADMIN_TOKEN_FILE to a file of token hashes to protect /, /status, /metrics \
                          and /health/database, or ADMIN_OPEN=true to serve them without a token \
                          (on a private network only)"
                    .to_owned(),
            });
        }
        match problems.is_empty() {
            true => Ok(()),
            false => Err(ConfigError::Invalid(problems)),
        }
    }
}

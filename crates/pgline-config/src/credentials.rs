//! Reading credentials and access settings: secrets given directly or in
//! files, the schema owner's role, and the token files of the HTTP edge.

use std::path::{Path, PathBuf};

use figment::value::Value;

use crate::reader::Reader;
use crate::secret::read_secret_file;
use crate::sources;
use crate::tokens::{Names, read_token_file};
use crate::{AuthConfig, Profile, Secret, SecretFile, TokenFile};

/// The schema owner's credentials as read.
pub(crate) struct Migration {
    pub(crate) user: Option<String>,
    pub(crate) password: Option<Secret>,
    pub(crate) password_file: Option<SecretFile>,
}

impl Reader<'_> {
    /// A secret given directly at `key` or in a file named at `file_key`
    /// (`DB_PASSWORD` / `DB_PASSWORD_FILE`); both at once is a problem, as is
    /// a file that cannot be read. `what` says what the file holds.
    pub(crate) fn secret(
        &mut self,
        key: &str,
        file_key: &str,
        what: &str,
    ) -> (Option<Secret>, Option<SecretFile>) {
        let value = self
            .read(key, "a string", |v| match v {
                Value::String(_, s) => Some(s.clone()),
                _ => None,
            })
            .filter(|value| !value.is_empty());
        let path = self.text(file_key, &format!("the path of a file that holds {what}"));
        let Some(path) = path.map(PathBuf::from) else {
            return (value.map(Secret::new), None);
        };
        let setting = self.setting(file_key);
        if value.is_some() {
            let message = format!(
                "conflicts with {}: give {what} once, either directly or in a file",
                self.setting(key)
            );
            self.problem(setting, message);
            return (None, None);
        }
        match read_secret_file(&path) {
            Ok((secret, mode)) => (
                Some(Secret::new(secret)),
                Some(SecretFile {
                    setting,
                    path,
                    mode,
                }),
            ),
            Err(message) => {
                self.problem(setting, message);
                (None, None)
            }
        }
    }

    /// The schema owner's credentials (`DB_MIGRATION_*`), given only together
    /// with `DB_MIGRATION_USER`.
    pub(crate) fn migration(&mut self, profile: Profile, user: Option<&str>) -> Migration {
        const USER: &str = "database.migration_user";
        const PASSWORD: &str = "database.migration_password";
        const PASSWORD_FILE: &str = "database.migration_password_file";
        let migration_user = self.text(USER, "a user name");
        let (password, password_file) =
            self.secret(PASSWORD, PASSWORD_FILE, "the migration role's password");
        let user_var = sources::variable_for(USER).unwrap_or(USER);
        match &migration_user {
            None => {
                for key in [PASSWORD, PASSWORD_FILE] {
                    if self.is_set(key) {
                        let message = format!(
                            "is set but {user_var} is not; set {user_var} to the role that owns the schema, \
                             or remove it (migrations then run as DB_USER with its password)"
                        );
                        self.problem(self.setting(key), message);
                    }
                }
            }
            Some(owner)
                if profile == Profile::Production
                    && Some(owner.as_str()) != user
                    && !self.is_set(PASSWORD)
                    && !self.is_set(PASSWORD_FILE) =>
            {
                let (password_var, file_var) = (
                    sources::variable_for(PASSWORD).unwrap_or(PASSWORD),
                    sources::variable_for(PASSWORD_FILE).unwrap_or(PASSWORD_FILE),
                );
                self.problem(
                    password_var,
                    format!(
                        "required in the production profile when {user_var} is set: set {password_var} \
                         or {file_var}, or {PASSWORD} or {PASSWORD_FILE} in the configuration file"
                    ),
                );
            }
            Some(_) => {}
        }
        Migration {
            user: migration_user,
            password,
            password_file,
        }
    }

    /// The token file named at `key`, read and parsed.
    fn token_file(&mut self, key: &str, names: Names) -> Option<TokenFile> {
        let path = self.text(key, "the path of a file of token hashes")?;
        let setting = self.setting(key);
        match read_token_file(Path::new(&path), &setting, names) {
            Ok(file) => Some(file),
            Err(message) => {
                self.problem(setting, message);
                None
            }
        }
    }

    pub(crate) fn auth(&mut self) -> AuthConfig {
        let station_tokens = self.token_file("server.station_tokens_file", Names::Required);
        let admin_tokens = self.token_file("server.admin_token_file", Names::Optional);
        let admin_open = self.flag("server.admin_open").unwrap_or_default();
        if admin_open && self.is_set("server.admin_token_file") {
            let message = format!(
                "true contradicts {}: the admin endpoints are either open or behind a token; unset one of them",
                self.setting("server.admin_token_file")
            );
            self.problem(self.setting("server.admin_open"), message);
        }
        AuthConfig {
            station_tokens,
            admin_tokens,
            admin_open,
        }
    }
}

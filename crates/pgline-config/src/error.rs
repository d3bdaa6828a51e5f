//! The one error type of this crate.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a configuration could not be loaded.
///
/// Every message names the setting as the user wrote it (`DB_POOL_MAX`,
/// `pool.max in /etc/pgline.toml`, `DATABASE_URL`) and the accepted form. No
/// message contains the password, nor any text of a `DATABASE_URL`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file is missing or unreadable.
    #[error("cannot read configuration file {}{}", .path.display(), named_by_suffix(*.named_by))]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The variable that named the file (`PGLINE_CONFIG`), if any.
        named_by: Option<&'static str>,
        /// The reason.
        #[source]
        source: io::Error,
    },
    /// The configuration file is not valid TOML.
    ///
    /// The message gives the position but never quotes the file, which may
    /// hold the password.
    #[error("configuration file {} is not valid TOML: {message} at line {line}, column {column}", .path.display())]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What is wrong, as the TOML parser says it.
        message: String,
    },
    /// Settings are invalid, unknown, or required and missing; every problem
    /// found is listed.
    #[error("{}", ProblemList(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The problems with individual settings; empty for file errors.
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Invalid(problems) => problems,
            _ => &[],
        }
    }
}

/// One invalid, unknown or missing setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The setting as the user wrote it: `DB_POOL_MAX`, `pool.max in /etc/pgline.toml`.
    pub setting: String,
    /// What is wrong and what is accepted.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.setting, self.message)
    }
}

fn named_by_suffix(variable: Option<&'static str>) -> String {
    variable
        .map(|v| format!(" (named by {v})"))
        .unwrap_or_default()
}

struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} configuration problems:", many.len())?;
                for problem in many {
                    write!(f, "\n  {problem}")?;
                }
                Ok(())
            }
        }
    }
}

//! Finding the PostgreSQL server binaries and their version.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};

use crate::TestkitError;

/// Environment variable naming the folder that holds `initdb` and `postgres`.
pub const BIN_DIR_ENV: &str = "PGLINE_TESTKIT_PG_BIN";

/// Where Debian and Ubuntu install the server binaries, one folder per major version.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// The server binaries found on this machine.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    pub(crate) initdb: PathBuf,
    pub(crate) postgres: PathBuf,
    /// Major version, e.g. `15` (or `9.6` for old servers): names the cached template.
    pub(crate) major: String,
}

fn holds_both(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file()
}

/// `/usr/lib/postgresql/<version>/bin` folders, highest version first.
fn debian_dirs() -> Vec<PathBuf> {
    let mut found: Vec<(Vec<u32>, PathBuf)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(DEBIAN_ROOT) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(version) = name
                .split('.')
                .map(|part| part.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()
            else {
                continue;
            };
            found.push((version, entry.path().join("bin")));
        }
    }
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found.into_iter().map(|(_, dir)| dir).collect()
}

/// Finds the binaries: `explicit` (the builder's `bin_dir`) alone when given, else
/// `$PGLINE_TESTKIT_PG_BIN` alone when set, else the first `PATH` folder holding both,
/// else the highest version under `/usr/lib/postgresql/*/bin`.
pub(crate) fn find(explicit: Option<&Path>) -> Result<Binaries, TestkitError> {
    let env_dir = std::env::var_os(BIN_DIR_ENV).filter(|v| !v.is_empty());
    let candidates: Vec<PathBuf>;
    let searched: String;
    if let Some(dir) = explicit {
        candidates = vec![dir.to_path_buf()];
        searched = format!("{} (set with PgServerBuilder::bin_dir)", dir.display());
    } else if let Some(dir) = env_dir {
        let dir = PathBuf::from(dir);
        searched = format!("{} (from {BIN_DIR_ENV})", dir.display());
        candidates = vec![dir];
    } else {
        let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        dirs.extend(debian_dirs());
        candidates = dirs;
        searched = format!("the PATH folders and {DEBIAN_ROOT}/*/bin");
    }
    let dir = candidates
        .into_iter()
        .find(|d| holds_both(d))
        .ok_or(TestkitError::BinariesNotFound { searched })?;
    let postgres = dir.join("postgres");
    let major = major_version(&postgres)?;
    Ok(Binaries {
        initdb: dir.join("initdb"),
        postgres,
        major,
    })
}

/// The major version of `postgres` ("15"; "9.6" before version 10), asked once per
/// binary and process.
fn major_version(postgres: &Path) -> Result<String, TestkitError> {
    static KNOWN: Mutex<Vec<(PathBuf, String)>> = Mutex::new(Vec::new());
    let mut known = KNOWN.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, major)) = known.iter().find(|(p, _)| p == postgres) {
        return Ok(major.clone());
    }
    let major = ask_major_version(postgres)?;
    known.push((postgres.to_path_buf(), major.clone()));
    Ok(major)
}

/// Runs `postgres --version` ("postgres (PostgreSQL) 15.18 (Debian ...)").
fn ask_major_version(postgres: &Path) -> Result<String, TestkitError> {
    let out = Command::new(postgres)
        .arg("--version")
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| TestkitError::io(format!("running {} --version", postgres.display()), e))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(TestkitError::Command {
            program: format!("{} --version", postgres.display()),
            status: out.status.to_string(),
            output: format!("{}{}", String::from_utf8_lossy(&out.stderr), text)
                .trim()
                .to_owned(),
        });
    }
    let version = text
        .split_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or(&text)
        .split_whitespace()
        .next()
        .unwrap_or_default();
    let parts: Vec<&str> = version
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .collect();
    match parts.as_slice() {
        [] => Err(TestkitError::UnexpectedResult(format!(
            "cannot read a version from `postgres --version`: {}",
            text.trim()
        ))),
        [major, minor, ..] if major.parse::<u32>().is_ok_and(|m| m < 10) => {
            Ok(format!("{major}.{minor}"))
        }
        [major, ..] => Ok((*major).to_owned()),
    }
}

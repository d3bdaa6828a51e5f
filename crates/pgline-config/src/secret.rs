//! A string that never shows itself, and reading one from a file.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A secret string, such as the database password.
///
/// `Debug` and `Display` print `***`, so a `Secret` can sit inside any struct
/// that is logged or printed. [`Secret::expose`] is the only way to read it;
/// call it only where a connection is made.
///
/// ```
/// use pgline_config::Secret;
///
/// let password = Secret::new("hunter2");
/// assert_eq!(format!("{password} {password:?}"), "*** ***");
/// assert_eq!(password.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value itself. Use it only where a connection is made, and
    /// never pass the result to a log line, an error or a metric.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A file a secret was read from (`DB_PASSWORD_FILE`,
/// `DB_MIGRATION_PASSWORD_FILE`), kept for warnings and `--check-config`.
/// It holds the path, never the content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFile {
    /// The setting that named the file, as the user wrote it:
    /// `DB_PASSWORD_FILE`, `database.password_file in /etc/pgline.toml`.
    pub setting: String,
    /// The file.
    pub path: PathBuf,
    /// Its permission bits when it was read (Unix only), e.g. `0o600`.
    pub mode: Option<u32>,
}

impl SecretFile {
    /// Whether users other than the owner could read the file when it was
    /// read (the group or other read bit is set).
    pub fn readable_by_others(&self) -> bool {
        self.mode.is_some_and(|mode| mode & 0o044 != 0)
    }
}

/// Largest secret file accepted: a password, not a document.
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// Reads the secret in `path`: its text without trailing line breaks, and the
/// file's permission bits. The error message names the path and why, never
/// any content.
pub(crate) fn read_secret_file(path: &Path) -> Result<(String, Option<u32>), String> {
    let (bytes, mode) = read_bounded(path, MAX_SECRET_FILE_BYTES, "the secret")?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("{} is not valid UTF-8 text", path.display()))?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok((secret.to_owned(), mode))
}

/// Reads at most `max` bytes of `path`, with its permission bits; a larger
/// file is an error naming `what` it should hold.
pub(crate) fn read_bounded(
    path: &Path,
    max: u64,
    what: &str,
) -> Result<(Vec<u8>, Option<u32>), String> {
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let file = File::open(path).map_err(cannot)?;
    // The permissions of the file actually opened (symbolic links followed,
    // as Kubernetes mounts secrets), not of a path that may change meanwhile.
    let metadata = file.metadata().map_err(cannot)?;
    if metadata.is_dir() {
        return Err(format!("cannot read {}: it is a directory", path.display()));
    }
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes).map_err(cannot)?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > max {
        return Err(format!(
            "{} is larger than {} KiB; expected a file that holds only {what}",
            path.display(),
            max / 1024
        ));
    }
    Ok((bytes, mode_of(&metadata)))
}

#[cfg(unix)]
fn mode_of(metadata: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    Some(metadata.permissions().mode() & 0o7777)
}

#[cfg(not(unix))]
fn mode_of(_: &std::fs::Metadata) -> Option<u32> {
    None
}

//! A string that never shows itself.

use std::fmt;

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

//! The one error type of configuration loading: it always names the key, the
//! value as given and what was expected, so an operator can fix the file from
//! the journal line alone.

use std::fmt;
use std::path::PathBuf;

/// What kind of mistake a [`ConfigError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigErrorKind {
    /// The file could not be read at all (missing, permissions, not UTF-8).
    Unreadable,
    /// Not valid TOML.
    Syntax,
    /// A key this version of fchmd does not know (typo, or a newer config).
    UnknownKey,
    /// Valid TOML, but the wrong type for the key (string for a number, ...).
    Type,
    /// Right type, but the value is out of range or inconsistent with another key.
    Invalid,
}

/// Where the offending value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A TOML document; `file` is known when it was loaded with [`super::Config::load`].
    /// `line` and `column` count from 1, columns in characters (as toml does).
    Toml {
        file: Option<PathBuf>,
        line: usize,
        column: usize,
    },
    /// A command-line override ([`super::Overrides`]).
    Override,
}

/// A configuration problem, rendered as
/// `config: rate.target_kbps = -5: expected a number of kbit/s > 0 (fchmd.toml:12:15)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub kind: ConfigErrorKind,
    /// Dotted key path, e.g. `rate.target_kbps`; empty for [`ConfigErrorKind::Unreadable`].
    pub key: String,
    /// The value as given: TOML source text when it came from a file, the
    /// rendered value otherwise; `(unset)` when the problem is a missing value.
    pub value: String,
    /// What was expected, as the phrase that ends the message
    /// (`expected a number of kbit/s > 0`, or toml's own description).
    pub expected: String,
    /// Where the value came from, when known (a default has no origin).
    pub origin: Option<Origin>,
}

impl ConfigError {
    /// `EX_CONFIG` from sysexits.h. The unit's `RestartPreventExitStatus=78`
    /// stops systemd from restart-looping on a file that will not fix itself.
    pub const EXIT_CODE: i32 = 78;

    /// A semantic error on `key`: `expected` is completed to "expected ...".
    pub(crate) fn invalid(
        key: &str,
        value: impl fmt::Display,
        expected: impl fmt::Display,
    ) -> Self {
        ConfigError {
            kind: ConfigErrorKind::Invalid,
            key: key.to_owned(),
            value: value.to_string(),
            expected: format!("expected {expected}"),
            origin: None,
        }
    }

    pub(crate) fn unreadable(file: PathBuf, why: impl fmt::Display) -> Self {
        ConfigError {
            kind: ConfigErrorKind::Unreadable,
            key: String::new(),
            value: file.display().to_string(),
            expected: format!("expected a readable UTF-8 TOML file ({why})"),
            origin: Some(Origin::Toml {
                file: Some(file),
                line: 1,
                column: 1,
            }),
        }
    }

    /// Records the file name once the caller knows it (`Config::load`).
    pub(crate) fn in_file(mut self, path: &std::path::Path) -> Self {
        if let Some(Origin::Toml { file, .. }) = &mut self.origin {
            if file.is_none() {
                *file = Some(path.to_path_buf());
            }
        }
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == ConfigErrorKind::Unreadable {
            return write!(f, "config: cannot use {}: {}", self.value, self.expected);
        }
        write!(
            f,
            "config: {} = {}: {}",
            self.key, self.value, self.expected
        )?;
        match &self.origin {
            Some(Origin::Toml {
                file: Some(file),
                line,
                column,
            }) => write!(f, " ({}:{line}:{column})", file.display()),
            Some(Origin::Toml {
                file: None,
                line,
                column,
            }) => write!(f, " (line {line}, column {column})"),
            Some(Origin::Override) => write!(f, " (from the command line)"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for ConfigError {}

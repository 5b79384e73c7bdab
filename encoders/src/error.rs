//! One error enum for the encoders, with the file or option at fault named,
//! so the CLI can report bad input without panicking.

use thiserror::Error;

/// Everything that can go wrong training an encoder, computing proxies or
/// reading and writing the cached files.
#[derive(Debug, Error)]
pub enum EncodeError {
    /// Loading the vendored tables or parsing an architecture failed.
    #[error(transparent)]
    Space(#[from] nasflat_shared::SpaceError),
    /// A tensor operation failed.
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
    /// A configuration value out of range or an unsupported combination.
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    /// File I/O.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A cached file whose content does not have the expected shape.
    #[error("{path}: {reason}")]
    Format { path: String, reason: String },
    /// A lock poisoned by a panic in another thread.
    #[error("poisoned lock: {0}")]
    Poisoned(String),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, EncodeError>;

impl EncodeError {
    /// An I/O error on `path`.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        EncodeError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// A malformed file.
    pub fn format(path: &std::path::Path, reason: impl Into<String>) -> Self {
        EncodeError::Format {
            path: path.display().to_string(),
            reason: reason.into(),
        }
    }
}

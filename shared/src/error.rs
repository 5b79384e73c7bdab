//! Errors of the shared crate: one enum, structured fields, no panics on bad input.

use thiserror::Error;

/// Everything that can go wrong parsing architectures or loading data tables.
#[derive(Debug, Error)]
pub enum SpaceError {
    /// An architecture string, key or name contains a token we do not know.
    #[error("{space}: unknown {what} `{token}` at position {position} of `{input}`")]
    UnknownToken {
        space: &'static str,
        what: &'static str,
        token: String,
        position: usize,
        input: String,
    },
    /// An architecture string is structurally wrong (wrong count, bad delimiter).
    #[error("{space}: malformed architecture `{input}`: {reason}")]
    Malformed {
        space: &'static str,
        input: String,
        reason: String,
    },
    /// An index outside the table.
    #[error("{space}: index {index} out of range (the table has {len} architectures)")]
    IndexOutOfRange {
        space: &'static str,
        index: usize,
        len: usize,
    },
    /// A device column that the table does not have.
    #[error("{space}: unknown device `{device}`")]
    UnknownDevice { space: String, device: String },
    /// A search-space name other than `nb201` / `fbnet`.
    #[error("unknown search space `{0}` (expected `nb201` or `fbnet`)")]
    UnknownSpace(String),
    /// A task name not in the task file.
    #[error("{space}: unknown task `{task}` (known: {known})")]
    UnknownTask {
        space: String,
        task: String,
        known: String,
    },
    /// A table row or cell could not be parsed.
    #[error("{file}: line {line}: {reason}")]
    Table {
        file: String,
        line: u64,
        reason: String,
    },
    /// I/O on a user-supplied file.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// JSON that does not match the expected schema.
    #[error("{file}: {source}")]
    Json {
        file: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, SpaceError>;

//! Errors of the predictor library: one enum with structured fields, so
//! callers (the CLI, the service) can report bad input without panicking and
//! tell it apart from their own failures.

use thiserror::Error;

/// Everything that can go wrong training, transferring or evaluating a predictor.
#[derive(Debug, Error)]
pub enum PredictorError {
    /// Loading the vendored tables or parsing an architecture failed.
    #[error(transparent)]
    Space(#[from] nasflat_shared::SpaceError),
    /// A tensor operation failed (shape mismatch, I/O of a safetensors file).
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
    /// A device that is not a column of the space's latency table.
    #[error("{space}: unknown device `{device}`")]
    UnknownDevice { space: String, device: String },
    /// A device the checkpoint has no hardware embedding for.
    #[error("device `{device}` is not in the predictor (known: {known})")]
    DeviceNotInModel { device: String, known: String },
    /// More target samples requested than the device has measured architectures.
    #[error(
        "{device}: asked for {requested} samples but only {available} architectures are usable"
    )]
    NotEnoughSamples {
        device: String,
        requested: usize,
        available: usize,
    },
    /// A value the caller chose (an option name, a configuration field, a
    /// requested count or row, the contents of a file it named) that is
    /// unknown, out of range or does not fit the rest: the caller can fix
    /// it, so a service reports it as bad input.
    #[error("invalid {what}: expected {expected}, got {got}")]
    InvalidInput {
        what: &'static str,
        expected: String,
        got: String,
    },
    /// A broken internal invariant (a bug here, or a numerical fit that
    /// found nothing): never the caller's input, so a service reports it as
    /// its own failure.
    #[error("internal error in {what}: {reason}")]
    Internal { what: &'static str, reason: String },
    /// Checkpoint metadata that does not match this build.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: String, reason: String },
    /// File I/O.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// JSON (de)serialisation.
    #[error("{what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// A lock poisoned by a panic in another thread.
    #[error("poisoned lock: {0}")]
    Poisoned(String),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, PredictorError>;

impl PredictorError {
    /// Shorthand for [`PredictorError::InvalidInput`].
    pub fn input(what: &'static str, expected: impl Into<String>, got: impl Into<String>) -> Self {
        PredictorError::InvalidInput {
            what,
            expected: expected.into(),
            got: got.into(),
        }
    }

    /// Shorthand for [`PredictorError::Internal`].
    pub fn internal(what: &'static str, reason: impl Into<String>) -> Self {
        PredictorError::Internal {
            what,
            reason: reason.into(),
        }
    }
}

//! Errors of the host library: one enum with structured fields, so callers
//! (the CLI, the service) can report bad input without panicking.

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
    /// A measured latency the log-ms fits cannot use (zero, negative, NaN).
    #[error("sample of arch {row}: latency {ms} ms is not a positive finite number")]
    InvalidSample { row: usize, ms: f64 },
    /// A table cell the protocol needs is empty.
    #[error("{device} has no latency for arch {row}")]
    MissingLatency { device: String, row: usize },
    /// Too few target samples for a transfer (a calibration needs two).
    #[error("a transfer needs at least {needed} target samples, got {got}")]
    TooFewSamples { needed: usize, got: usize },
    /// A latency budget that is not a positive number of milliseconds.
    #[error("latency constraint {max_ms} ms: must be a positive number of milliseconds")]
    BadConstraint { max_ms: f64 },
    /// A risk outside (0, 1).
    #[error("risk {risk}: must lie strictly between 0 and 1")]
    BadRisk { risk: f64 },
    /// No architecture's latency (or bound) fits under the budget.
    #[error("no architecture meets {max_ms} ms ({why})")]
    NoFeasibleArchitecture { max_ms: f64, why: String },
    /// An objective the search space has no data for.
    #[error("{space} has no `{objective}` objective (expected one of: {expected})")]
    ObjectiveNotInSpace {
        space: String,
        objective: String,
        expected: String,
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

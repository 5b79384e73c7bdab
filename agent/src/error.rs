//! Errors of the measurement library.

use thiserror::Error;

/// What can go wrong loading or timing a model.
#[derive(Debug, Error)]
pub enum AgentError {
    /// The file could not be read.
    #[error("cannot read model `{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not an ONNX protobuf (empty, truncated or corrupt).
    #[error("`{name}` is not a valid ONNX model (truncated or corrupt protobuf): {reason}")]
    Corrupt { name: String, reason: String },
    /// The model uses operators tract does not implement.
    #[error("`{name}` uses operator(s) tract does not support: {ops}")]
    UnsupportedOperator { name: String, ops: String },
    /// An `--input` override is malformed or names no input.
    #[error("bad input spec `{spec}`: {reason}")]
    BadInputSpec { spec: String, reason: String },
    /// An input's shape is unknown and no override gave it.
    #[error(
        "input `{input}` has symbolic or unknown dimension(s) {dims}: pass --input {input}:SHAPE"
    )]
    SymbolicInput { input: String, dims: String },
    /// tract could not analyse or optimise the model.
    #[error("tract cannot analyse `{name}`: {reason}")]
    Analysis { name: String, reason: String },
    /// Running the model failed (e.g. wrong input shape or dtype).
    #[error("running `{name}` failed: {reason}")]
    Run { name: String, reason: String },
    /// Measurement limits that contradict each other.
    #[error("invalid measurement limits: {0}")]
    Limits(String),
    /// More than one thread asked of a build without the `multithread`
    /// feature (the board build).
    #[error(
        "--threads {threads}: this agent was built without the `multithread` feature (the board build), so it runs tract on one thread only; rebuild it with default features to time on several"
    )]
    SingleThreadBuild { threads: usize },
    /// Building one of our own architectures failed.
    #[error(transparent)]
    Build(#[from] nasflat_onnx::OnnxError),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, AgentError>;

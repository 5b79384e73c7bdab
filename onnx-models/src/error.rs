//! Errors of the ONNX builder and the cost walker: one enum with structured
//! fields, so a caller (the CLI, the agent) can say exactly what was wrong.

use thiserror::Error;

/// Everything that can go wrong building a model or walking one.
#[derive(Debug, Error)]
pub enum OnnxError {
    /// A build option outside what the network can take (batch 0, a
    /// resolution the stride-2 stages cannot halve evenly, ...).
    #[error("invalid {what} {value}: {reason}")]
    InvalidConfig {
        what: &'static str,
        value: usize,
        reason: String,
    },
    /// A dataset or variant name we do not know.
    #[error("unknown {what} `{name}` (expected one of: {expected})")]
    UnknownName {
        what: &'static str,
        name: String,
        expected: &'static str,
    },
    /// An architecture string or index the search space rejected.
    #[error(transparent)]
    Space(#[from] nasflat_shared::SpaceError),
    /// The cost walker met an operator it has no shape/cost rule for.
    #[error("node `{node}`: unsupported operator `{op}`")]
    UnsupportedOp { node: String, op: String },
    /// A node reads a tensor that no earlier node, input or initializer made.
    #[error("node `{node}`: input `{input}` is not defined before it")]
    UndefinedTensor { node: String, input: String },
    /// Operand shapes that the operator cannot combine.
    #[error("node `{node}` ({op}): {reason}")]
    Shape {
        node: String,
        op: String,
        reason: String,
    },
    /// A structurally invalid model (missing graph, non-static input, ...).
    #[error("malformed model: {0}")]
    Malformed(String),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, OnnxError>;

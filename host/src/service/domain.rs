//! The service's domain: why a job was queued, where a job or a transfer
//! stands, what a job or measurement is of (the samples a transfer fits on
//! are the predictor's `Samples`). Everything outside `store/` works with these types; only the store
//! turns them into columns and back, so a state is never a string literal
//! in the service's logic.

use nasflat_shared::SearchSpace;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Why a job was queued, and so what its measurement is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// A sampler-chosen architecture of a new device's plan: automatic
    /// transfers fit on these.
    Sample,
    /// An architecture an operator asked for: held out to judge the predictor.
    Extra,
    /// A top candidate of a latency-constrained search, measured to check
    /// the answer (`POST /v1/devices/{id}/search` with `verify`): held out
    /// of automatic transfers, like `Extra`.
    Verify,
    /// A user model.
    Model,
    /// A measurement that answers no known lease.
    Adhoc,
}

/// Where a job stands in the lease queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for its device.
    Queued,
    /// Leased to its device (possibly expired).
    Leased,
    /// Measured.
    Done,
    /// Given up after too many leases.
    Failed,
}

impl JobState {
    /// Whether the job still waits for a measurement.
    pub fn is_open(self) -> bool {
        matches!(self, JobState::Queued | JobState::Leased)
    }
}

/// Where a transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TransferState {
    /// Waiting (for the pretrained predictor).
    Queued,
    /// Fitting or predicting.
    Running,
    /// Its predictions are served.
    Done,
    /// Ended without predictions (the message says why).
    Failed,
}

/// What started a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// The device reached k plan samples.
    Auto,
    /// `POST /v1/devices/{id}/transfer`.
    Manual,
}

/// What a job or a measurement is of: an architecture of a served space or
/// a user model.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Subject {
    /// A table row of a space.
    Arch {
        /// Space.
        space: SearchSpace,
        /// Table row.
        arch_index: usize,
    },
    /// A user model.
    Model {
        /// Model id.
        model_id: String,
    },
}

impl Subject {
    /// The table row, when this is an architecture of `space`.
    pub fn row_in(&self, space: SearchSpace) -> Option<usize> {
        match self {
            Subject::Arch {
                space: s,
                arch_index,
            } if *s == space => Some(*arch_index),
            _ => None,
        }
    }
}

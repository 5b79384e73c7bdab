//! The unit every search mode ranks and answers with. Its own file so the
//! modes (`rule`, `exhaustive`) and the search entry point share it without
//! importing each other.

/// One architecture of an answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Architecture row of the space.
    pub row: usize,
    /// Predicted latency (ms).
    pub predicted_ms: f64,
    /// Upper latency bound at the constraint's risk (ms); the prediction
    /// itself under the paper's rule.
    pub upper_ms: f64,
    /// Objective value (accuracy % or the stated proxy).
    pub objective: f64,
}

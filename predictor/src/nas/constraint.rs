//! The latency budget and the risk the user accepts of exceeding it.

use crate::error::{PredictorError, Result};

/// "At most `max_ms` on the target, with at most `risk` chance of exceeding it."
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Constraint {
    max_ms: f64,
    risk: f64,
}

impl Constraint {
    /// A checked constraint: `max_ms` > 0 and `risk` in (0, 1).
    pub fn new(max_ms: f64, risk: f64) -> Result<Self> {
        if !(max_ms.is_finite() && max_ms > 0.0) {
            return Err(PredictorError::BadConstraint { max_ms });
        }
        if !(risk > 0.0 && risk < 1.0) {
            return Err(PredictorError::BadRisk { risk });
        }
        Ok(Constraint { max_ms, risk })
    }

    /// The budget (ms).
    pub fn max_ms(&self) -> f64 {
        self.max_ms
    }

    /// The accepted chance of exceeding it.
    pub fn risk(&self) -> f64 {
        self.risk
    }
}

//! Maps scale-free predictor scores to milliseconds.
//!
//! A ranking loss (pairwise hinge) leaves the score's scale and offset free,
//! so after transfer we fit `ln(ms) = slope * score + intercept` by least
//! squares on the k measured target samples. Latencies span an order of
//! magnitude, so a fit in log space weighs fast and slow nets alike.

use serde::{Deserialize, Serialize};

/// `ms = exp(slope * score + intercept)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogLinearCalibration {
    /// Multiplier of the score.
    pub slope: f64,
    /// Offset in log-ms.
    pub intercept: f64,
}

impl LogLinearCalibration {
    /// Least-squares fit on `(score, ms)` pairs; a constant score gives the
    /// geometric mean latency.
    pub fn fit(scores: &[f64], ms: &[f64]) -> Self {
        let n = scores.len().min(ms.len());
        if n == 0 {
            return LogLinearCalibration {
                slope: 0.0,
                intercept: 0.0,
            };
        }
        let logs: Vec<f64> = ms[..n].iter().map(|v| v.max(1e-9).ln()).collect();
        let mx = scores[..n].iter().sum::<f64>() / n as f64;
        let my = logs.iter().sum::<f64>() / n as f64;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for i in 0..n {
            sxy += (scores[i] - mx) * (logs[i] - my);
            sxx += (scores[i] - mx).powi(2);
        }
        let slope = if sxx > 1e-12 { sxy / sxx } else { 0.0 };
        LogLinearCalibration {
            slope,
            intercept: my - slope * mx,
        }
    }

    /// Milliseconds for one score.
    pub fn apply(&self, score: f64) -> f64 {
        (self.slope * score + self.intercept).exp()
    }

    /// Milliseconds for many scores.
    pub fn apply_all(&self, scores: &[f64]) -> Vec<f64> {
        scores.iter().map(|&s| self.apply(s)).collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn recovers_exact_log_linear_map() {
        let scores = [0.0, 1.0, 2.0, 3.0];
        let ms: Vec<f64> = scores.iter().map(|s| (0.5 * s + 1.0f64).exp()).collect();
        let c = LogLinearCalibration::fit(&scores, &ms);
        assert!((c.slope - 0.5).abs() < 1e-9 && (c.intercept - 1.0).abs() < 1e-9);
        assert!((c.apply(4.0) - 3.0f64.exp()).abs() < 1e-9);
    }
}

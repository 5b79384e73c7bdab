//! Summary statistics of the per-run times.

use serde::{Deserialize, Serialize};

/// Statistics of the timed runs, all in milliseconds.
///
/// The *median* is the training label: a latency table must rank
/// architectures as the device really runs them, and the median ignores the
/// occasional run hit by an interrupt, a page fault or a frequency change,
/// which drag the mean upward and make it depend on the measurement length.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of timed runs.
    pub runs: usize,
    /// Fastest run.
    pub min_ms: f64,
    /// Median run (the label).
    pub median_ms: f64,
    /// Mean run.
    pub mean_ms: f64,
    /// Sample standard deviation.
    pub std_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest run.
    pub max_ms: f64,
    /// Coefficient of variation, `std / mean`.
    pub cv: f64,
}

impl Summary {
    /// Summarises run times (ms). Returns `None` for an empty slice or a
    /// non-finite value.
    pub fn of(times_ms: &[f64]) -> Option<Summary> {
        if times_ms.is_empty() || times_ms.iter().any(|t| !t.is_finite()) {
            return None;
        }
        let mut sorted = times_ms.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let mean = sorted.iter().sum::<f64>() / n as f64;
        let var = if n > 1 {
            sorted.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        let std = var.sqrt();
        Some(Summary {
            runs: n,
            min_ms: sorted[0],
            median_ms: percentile(&sorted, 0.5),
            mean_ms: mean,
            std_ms: std,
            p90_ms: percentile(&sorted, 0.9),
            p99_ms: percentile(&sorted, 0.99),
            max_ms: sorted[n - 1],
            cv: if mean > 0.0 { std / mean } else { 0.0 },
        })
    }
}

/// Linear-interpolated percentile of sorted data (`q` in 0..=1).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_known_values() {
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0, 100.0]).unwrap();
        assert_eq!(s.runs, 5);
        assert_eq!(s.min_ms, 1.0);
        assert_eq!(s.median_ms, 3.0);
        assert_eq!(s.max_ms, 100.0);
        assert!((s.mean_ms - 22.0).abs() < 1e-12);
        assert!((s.p90_ms - 61.6).abs() < 1e-9);
        // statistics.stdev([4, 1, 3, 2, 100]) in Python.
        let std = 43.617656975128774;
        assert!((s.std_ms - std).abs() < 1e-9, "{} vs {std}", s.std_ms);
    }

    #[test]
    fn empty_or_nan_is_none() {
        assert!(Summary::of(&[]).is_none());
        assert!(Summary::of(&[1.0, f64::NAN]).is_none());
        assert_eq!(Summary::of(&[2.5]).unwrap().std_ms, 0.0);
    }
}

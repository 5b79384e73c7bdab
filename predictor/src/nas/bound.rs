//! The upper latency bound of the risk-aware search: a split-conformal
//! quantile of the predictor's own out-of-sample log residuals on the k
//! target samples. If a new architecture's residual is exchangeable with
//! the k sample residuals, `predicted * exp(q)` exceeds its true latency with
//! probability at most `risk`; residuals are taken in log-ms because the
//! error of a latency predictor scales with the latency.

/// The residual quantile for `risk`: the `ceil((n + 1)(1 - risk))`-th
/// smallest of the `n` residuals (the conformal rank). When that rank
/// exceeds `n` (a risk below `1 / (n + 1)` cannot be certified with `n`
/// samples) the largest residual is used; with no residuals, 0.
pub fn conformal_quantile(residuals: &[f64], risk: f64) -> f64 {
    let mut sorted: Vec<f64> = residuals
        .iter()
        .copied()
        .filter(|r| r.is_finite())
        .collect();
    if sorted.is_empty() {
        return 0.0;
    }
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let rank = ((n as f64 + 1.0) * (1.0 - risk)).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// The bound on one prediction: `predicted * exp(quantile)`.
pub fn upper_ms(predicted_ms: f64, quantile: f64) -> f64 {
    predicted_ms * quantile.exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_is_monotone_in_risk() {
        let residuals: Vec<f64> = (0..20).map(|i| (f64::from(i) * 0.37).sin() * 0.2).collect();
        let risks = [0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 0.95];
        let bounds: Vec<f64> = risks
            .iter()
            .map(|&r| upper_ms(10.0, conformal_quantile(&residuals, r)))
            .collect();
        for w in bounds.windows(2) {
            assert!(w[0] >= w[1], "a larger risk raised the bound: {bounds:?}");
        }
        // Strictly: 1% takes the largest residual, 95% the second smallest.
        assert!(bounds[0] > bounds[7]);
        let max = residuals.iter().copied().fold(f64::MIN, f64::max);
        assert_eq!(conformal_quantile(&residuals, 0.01), max);
    }

    #[test]
    fn quantile_takes_the_conformal_rank() {
        let residuals: Vec<f64> = (1..=19).map(f64::from).collect();
        // n = 19, risk 0.1: rank ceil(20 * 0.9) = 18.
        assert_eq!(conformal_quantile(&residuals, 0.1), 18.0);
        assert_eq!(conformal_quantile(&residuals, 0.5), 10.0);
        assert_eq!(conformal_quantile(&[], 0.1), 0.0);
    }
}

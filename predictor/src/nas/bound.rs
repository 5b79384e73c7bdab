//! The upper latency bound of the risk-aware search: a split-conformal
//! quantile of the predictor's own out-of-sample log residuals on the k
//! target samples. If a new architecture's residual is exchangeable with
//! the k sample residuals, `predicted * exp(q)` exceeds its true latency with
//! probability at most `risk`; residuals are taken in log-ms because the
//! error of a latency predictor scales with the latency.

/// Largest quantile level a [`BoundOptions::risk_factor`] may reach: the
/// bound must stay an upper one (a level of 0.5 is the median residual).
pub const MAX_LEVEL: f64 = 0.5;

/// Settings of the exhaustive search's bound. Their defaults (the `nas`
/// command's, at blend [`super::SEARCH_BLEND`]) were chosen on task ND's
/// source devices only (leave-one-source-out simulated searches,
/// seeds 0-4; docs/experiments/nas.md), never on its test devices.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoundOptions {
    /// The conformal quantile is taken at level `min(risk * risk_factor,
    /// MAX_LEVEL)`. The conformal rank is exact only for exchangeable
    /// residuals, and the answer of a search is not a random architecture:
    /// how many violations a given rank really costs is an empirical
    /// matter, so the level is a setting calibrated on source devices
    /// (>= 1; 1 is the plain rank). It scales the risk rather than
    /// replacing it so the bound stays monotone in the user's `--risk`.
    pub risk_factor: f64,
    /// Use the reporting step of a device whose k samples are all whole ms
    /// ([`super::resolution`]).
    pub quantised: bool,
}

impl Default for BoundOptions {
    fn default() -> Self {
        BoundOptions {
            risk_factor: DEFAULT_RISK_FACTOR,
            quantised: DEFAULT_QUANTISED,
        }
    }
}

/// Default [`BoundOptions::risk_factor`] (selection: docs/experiments/nas.md).
pub const DEFAULT_RISK_FACTOR: f64 = 2.0;

/// Default [`BoundOptions::quantised`] (selection: docs/experiments/nas.md).
pub const DEFAULT_QUANTISED: bool = false;

impl BoundOptions {
    /// The plain split-conformal rank at the user's risk, no quantisation.
    pub const PLAIN: BoundOptions = BoundOptions {
        risk_factor: 1.0,
        quantised: false,
    };

    /// The quantile level used for a user's `risk`: non-decreasing in
    /// `risk`, so the bound never loosens when the user asks for less risk.
    pub fn level(&self, risk: f64) -> f64 {
        (risk * self.risk_factor).min(MAX_LEVEL.max(risk))
    }
}

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
    fn a_risk_factor_keeps_the_bound_monotone_and_only_loosens_it() {
        let residuals: Vec<f64> = (0..20)
            .map(|i| (f64::from(i) * 0.61).cos() * 0.15)
            .collect();
        let risks = [0.01, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.8];
        for factor in [1.0, 1.5, 2.0, 3.0] {
            let opts = BoundOptions {
                risk_factor: factor,
                quantised: false,
            };
            let bounds: Vec<f64> = risks
                .iter()
                .map(|&r| upper_ms(10.0, conformal_quantile(&residuals, opts.level(r))))
                .collect();
            for w in bounds.windows(2) {
                assert!(w[0] >= w[1], "factor {factor}: {bounds:?}");
            }
            for &r in &risks {
                assert!(opts.level(r) >= r && opts.level(r) <= MAX_LEVEL.max(r));
            }
        }
        let plain = BoundOptions {
            risk_factor: 1.0,
            quantised: false,
        };
        let doubled = BoundOptions {
            risk_factor: 2.0,
            ..plain
        };
        // n = 20 at risk 0.1: rank 19 of 20; at level 0.2: rank 17.
        let q1 = conformal_quantile(&residuals, plain.level(0.1));
        let q2 = conformal_quantile(&residuals, doubled.level(0.1));
        let mut sorted = residuals.clone();
        sorted.sort_by(f64::total_cmp);
        assert_eq!((q1, q2), (sorted[18], sorted[16]));
    }

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

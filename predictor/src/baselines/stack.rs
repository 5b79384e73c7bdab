//! The linear stack: the additive model ([`AdditiveModel`]) and the ridge
//! of log target latency on the sources' log latencies, weighed by their
//! leave-one-out errors on the k samples under the task's [`StackRules`].

use serde::{Deserialize, Serialize};

use super::ridge::Ridge;
use super::stack_rules::{RulesOrigin, StackRules};
use super::{AdditiveModel, SourceMatrix};
use crate::dataset::SpaceData;
use crate::error::{PredictorError, Result};

/// What a fitted stack chose, reported per outcome by `eval --json` and
/// with the service's predictor quality.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StackChoice {
    /// The rules the weight was chosen under.
    pub rules: StackRules,
    /// Where the rules came from.
    pub origin: RulesOrigin,
    /// Weight of the additive model in log-ms (1 - weight for the sources).
    pub additive_weight: f64,
}

/// Weight of the additive model when stacked with the source regression,
/// and the two fitted models.
#[derive(Debug, Clone)]
pub struct Stack {
    additive: AdditiveModel,
    sources: Ridge,
    rules: StackRules,
    origin: RulesOrigin,
    /// Weight of the additive model in log-ms space (1 - weight for sources).
    pub weight: f64,
}

impl Stack {
    /// Fits both models on the k samples and picks the weight of the
    /// additive model (grid of 0.1 steps) that minimises the leave-one-out
    /// squared error in log-ms, within `rules`. Why: on devices unlike every
    /// source (an edge TPU among GPU sources) the additive model wins; on
    /// devices with a close source (another desktop CPU) the sources'
    /// non-additive effects help. The k samples decide, out of sample.
    pub fn fit(
        data: &SpaceData,
        sources: &SourceMatrix,
        archs: &[usize],
        ms: &[f64],
        rules: &StackRules,
        origin: RulesOrigin,
    ) -> Result<Self> {
        let additive = AdditiveModel::fit_with(data, archs, ms, rules.anchor)?;
        let x: Vec<Vec<f64>> = archs.iter().map(|&a| sources.row(a)).collect();
        let log_ms = log_all(ms);
        let source_model = Ridge::fit_loo(&x, &log_ms).ok_or_else(|| {
            PredictorError::internal("ridge", "the leave-one-out fit found no solution")
        })?;
        let a = log_all(&additive.loo_predictions);
        let weight = additive_weight(&a, &source_model.loo_predictions, &log_ms, rules);
        Ok(Stack {
            additive,
            sources: source_model,
            rules: *rules,
            origin,
            weight,
        })
    }

    /// Leave-one-out prediction of each fit sample in log-ms, at the fitted
    /// weight: the out-of-sample error a risk bound is built from.
    pub fn loo_log_predictions(&self) -> Vec<f64> {
        self.additive
            .loo_predictions
            .iter()
            .zip(&self.sources.loo_predictions)
            .map(|(a, b)| self.weight * a.ln() + (1.0 - self.weight) * b)
            .collect()
    }

    /// Predicted ms of one row.
    pub fn predict(&self, data: &SpaceData, sources: &SourceMatrix, row: usize) -> f64 {
        let a = self.additive.predict(data, row).ln();
        let b = self.sources.predict(&sources.row(row));
        (self.weight * a + (1.0 - self.weight) * b).exp()
    }

    /// What this stack chose.
    pub fn choice(&self) -> StackChoice {
        StackChoice {
            rules: self.rules,
            origin: self.origin,
            additive_weight: self.weight,
        }
    }
}

/// `ln` of each value, floored away from 0.
pub(crate) fn log_all(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| x.max(1e-9).ln()).collect()
}

/// The weight (0.1 steps from the rules' floor to 1) of the additive model
/// whose stack has the least leave-one-out squared log error, given the
/// additive (`a`) and source (`b`) LOO log predictions; 1 unless the best
/// stack cuts the additive model's own error by the rules' required gain.
/// With the rules' one-standard-error rule, the largest weight whose error
/// is within one standard error of the least.
pub(crate) fn additive_weight(a: &[f64], b: &[f64], log_ms: &[f64], rules: &StackRules) -> f64 {
    let errors = |w: f64| -> Vec<f64> {
        a.iter()
            .zip(b)
            .zip(log_ms)
            .map(|((p, q), t)| (w * p + (1.0 - w) * q - t).powi(2))
            .collect()
    };
    let scored: Vec<(f64, f64, f64)> = (rules.min_additive_step..=10)
        .rev()
        .map(|step| {
            let w = f64::from(step) / 10.0;
            let e = errors(w);
            let n = e.len().max(1) as f64;
            let mean = e.iter().sum::<f64>() / n;
            let var = e.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
            (w, mean, (var / n).sqrt())
        })
        .collect();
    let alone = scored.first().map_or(f64::INFINITY, |s| s.1);
    let mut best = (1.0, alone, 0.0);
    for &(w, m, se) in &scored {
        if m < best.1 {
            best = (w, m, se);
        }
    }
    if best.1 > rules.source_gain * alone {
        return 1.0;
    }
    if rules.one_se {
        // `scored` runs from weight 1 down: the first within reach is the largest.
        if let Some(&(w, ..)) = scored.iter().find(|s| s.1 <= best.1 + best.2) {
            return w;
        }
    }
    best.0
}

/// The additive model and the source regression stacked ([`Stack`]) under
/// `rules`.
pub fn stacked_predict(
    data: &SpaceData,
    sources: &SourceMatrix,
    archs: &[usize],
    ms: &[f64],
    rows: &[usize],
    rules: &StackRules,
) -> Result<Vec<f64>> {
    let stack = Stack::fit(data, sources, archs, ms, rules, RulesOrigin::Given)?;
    Ok(rows
        .iter()
        .map(|&r| stack.predict(data, sources, r))
        .collect())
}

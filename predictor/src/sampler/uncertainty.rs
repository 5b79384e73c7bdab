//! Active sampling beyond the paper (issue 5, section 5): after an initial
//! batch picked by a static sampler, measure next where an ensemble of
//! transferred predictors disagrees most.
//!
//! The ensemble is cheap on purpose, so that choosing the next architecture
//! costs milliseconds: each member is the `ridgecost` baseline (ridge in
//! log-ms on the task's source-device log latencies plus the analytic cost
//! features, penalty by leave-one-out) fit on a bootstrap resample of the
//! architectures measured so far. Disagreement is the std of the members'
//! log-ms predictions. Picks are sequential: after each one the new
//! measurement joins the fit, so the next pick's uncertainty accounts for it
//! (a batch of top-k disagreements would pile up in one corner of the space).
//! Candidates whose feature row equals that of a measured architecture are
//! skipped: they would tell the ensemble nothing new.

use rand::Rng;

use crate::baselines::ridge::Ridge;
use crate::baselines::{SourceMatrix, cost_row};
use crate::dataset::SpaceData;
use crate::error::{PredictorError, Result};

/// Members of the bootstrap ensemble.
pub const ENSEMBLE_MEMBERS: usize = 16;

/// Extends `initial` (already measured on the target) to `k` rows of `valid`.
pub fn extend(
    data: &SpaceData,
    sources: &SourceMatrix,
    column: usize,
    initial: Vec<usize>,
    valid: &[usize],
    k: usize,
    rng: &mut impl Rng,
) -> Result<Vec<usize>> {
    let features: Vec<Vec<f64>> = valid.iter().map(|&r| cost_row(data, sources, r)).collect();
    let position: std::collections::HashMap<usize, usize> =
        valid.iter().enumerate().map(|(i, &r)| (r, i)).collect();
    let mut chosen: Vec<usize> = Vec::with_capacity(k);
    for r in initial {
        let i = *position.get(&r).ok_or_else(|| {
            PredictorError::input(
                "uncertainty sampler",
                "measured rows",
                format!("row {r} not measured"),
            )
        })?;
        if !chosen.contains(&i) {
            chosen.push(i);
        }
    }
    let mut log_ms: Vec<f64> = Vec::with_capacity(k);
    for &i in &chosen {
        log_ms.push(measured(data, column, valid[i])?);
    }
    while chosen.len() < k {
        let members = fit_members(&features, &chosen, &log_ms, rng);
        let next = if members.len() < 2 {
            // Too few distinct samples for an ensemble: any unmeasured row.
            let free: Vec<usize> = (0..valid.len()).filter(|i| !chosen.contains(i)).collect();
            (!free.is_empty()).then(|| free[rng.random_range(0..free.len())])
        } else {
            most_disputed(&features, &chosen, &members)
        }
        .ok_or_else(|| PredictorError::internal("uncertainty sampler", "ran out of candidates"))?;
        log_ms.push(measured(data, column, valid[next])?);
        chosen.push(next);
    }
    Ok(chosen.into_iter().map(|i| valid[i]).collect())
}

fn measured(data: &SpaceData, column: usize, row: usize) -> Result<f64> {
    data.latency(column, row)
        .filter(|v| *v > 0.0)
        .map(f64::ln)
        .ok_or_else(|| {
            PredictorError::input(
                "uncertainty sampler",
                "rows with a latency",
                format!("row {row} without one"),
            )
        })
}

fn fit_members(
    features: &[Vec<f64>],
    chosen: &[usize],
    log_ms: &[f64],
    rng: &mut impl Rng,
) -> Vec<Ridge> {
    let n = chosen.len();
    (0..ENSEMBLE_MEMBERS)
        .filter_map(|_| {
            let draw: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
            let x: Vec<Vec<f64>> = draw.iter().map(|&j| features[chosen[j]].clone()).collect();
            let y: Vec<f64> = draw.iter().map(|&j| log_ms[j]).collect();
            Ridge::fit_loo(&x, &y)
        })
        .collect()
}

fn most_disputed(features: &[Vec<f64>], chosen: &[usize], members: &[Ridge]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, row) in features.iter().enumerate() {
        if chosen.iter().any(|&c| c == i || features[c] == *row) {
            continue;
        }
        let preds: Vec<f64> = members.iter().map(|m| m.predict(row)).collect();
        let mean = preds.iter().sum::<f64>() / preds.len() as f64;
        let var = preds.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / preds.len() as f64;
        if best.is_none_or(|(_, b)| var > b) {
            best = Some((i, var));
        }
    }
    best.map(|(i, _)| i)
}

//! Baselines evaluated in the same harness, with the same k target samples
//! (BASELINES.md): FLOPs and params ranking, nearest source device, ridge
//! regression on source latencies, a HELP-style MLP and the GNN trained from
//! scratch on the k samples only.
//!
//! Every method returns predicted milliseconds; score-only methods are
//! calibrated on the k samples with [`LogLinearCalibration`].

mod additive_model;
pub mod help_mlp;
pub mod ridge;
mod sources;
mod stack;

pub use additive_model::{AdditiveModel, Anchor};
pub use sources::SourceMatrix;
pub use stack::{Stack, StackChoice, StackRules, stacked_predict};

use serde::{Deserialize, Serialize};

use crate::calibrate::LogLinearCalibration;
use crate::correlation::spearman;
use crate::dataset::SpaceData;
use crate::error::{PredictorError, Result};
use ridge::Ridge;

/// A prediction method of the harness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// The NASFLAT predictor (pretrain + transfer).
    Nasflat,
    /// Rank by FLOPs.
    Flops,
    /// Rank by parameter count.
    Params,
    /// Latencies of the best-correlated source device.
    Nearest,
    /// Ridge regression of log target latency on log source latencies.
    Ridge,
    /// HELP-style MLP with a reference-latency hardware embedding.
    HelpMlp,
    /// The GNN trained on the k target samples only.
    Scratch,
    /// Ridge on source log latencies plus analytic cost features.
    RidgeCost,
    /// Ridge in milliseconds on the additive latency features ([`crate::additive`]).
    Additive,
    /// `additive` and `ridge` stacked by their leave-one-out errors.
    Stacked,
}

impl Method {
    /// All methods, NASFLAT first.
    pub const ALL: [Method; 10] = [
        Method::Nasflat,
        Method::Flops,
        Method::Params,
        Method::Nearest,
        Method::Ridge,
        Method::HelpMlp,
        Method::Scratch,
        Method::RidgeCost,
        Method::Additive,
        Method::Stacked,
    ];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Method::Nasflat => "nasflat",
            Method::Flops => "flops",
            Method::Params => "params",
            Method::Nearest => "nearest",
            Method::Ridge => "ridge",
            Method::HelpMlp => "help",
            Method::Scratch => "scratch",
            Method::RidgeCost => "ridgecost",
            Method::Additive => "additive",
            Method::Stacked => "stacked",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Method {
    type Err = PredictorError;
    fn from_str(s: &str) -> Result<Self> {
        Method::ALL
            .iter()
            .copied()
            .find(|m| m.name() == s.to_ascii_lowercase())
            .ok_or_else(|| {
                PredictorError::input("method", "nasflat, flops, params, nearest, ridge, ridgecost, additive, stacked, help, scratch or all", format!("`{s}`"))
            })
    }
}

/// Calibrates a per-row score (indexed by arch row) on the k samples and
/// returns ms for `rows`.
pub fn calibrated(
    score: impl Fn(usize) -> f64,
    archs: &[usize],
    ms: &[f64],
    rows: &[usize],
) -> Vec<f64> {
    let fit_scores: Vec<f64> = archs.iter().map(|&a| score(a)).collect();
    let cal = LogLinearCalibration::fit(&fit_scores, ms);
    rows.iter().map(|&r| cal.apply(score(r))).collect()
}

/// FLOPs ranking (no target information except the ms calibration).
pub fn flops_predict(data: &SpaceData, archs: &[usize], ms: &[f64], rows: &[usize]) -> Vec<f64> {
    calibrated(|r| data.flops[r].max(1e-9).ln(), archs, ms, rows)
}

/// Parameter-count ranking.
pub fn params_predict(data: &SpaceData, archs: &[usize], ms: &[f64], rows: &[usize]) -> Vec<f64> {
    calibrated(|r| data.params[r].max(1e-9).ln(), archs, ms, rows)
}

/// Index of the source whose latencies on the k samples correlate best.
pub fn nearest_source(sources: &SourceMatrix, archs: &[usize], ms: &[f64]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, col) in sources.columns.iter().enumerate() {
        let xs: Vec<f64> = archs.iter().map(|&a| col[a]).collect();
        let rho = spearman(&xs, ms);
        if best.is_none_or(|(_, b)| rho > b) {
            best = Some((i, rho));
        }
    }
    best.map(|(i, _)| i)
}

/// Latencies of the nearest source device, rescaled to the target.
pub fn nearest_predict(
    sources: &SourceMatrix,
    archs: &[usize],
    ms: &[f64],
    rows: &[usize],
) -> Result<Vec<f64>> {
    let i = nearest_source(sources, archs, ms).ok_or_else(|| {
        PredictorError::input("nearest baseline", "at least one source device", "none")
    })?;
    let col = &sources.columns[i];
    Ok(calibrated(|r| col[r], archs, ms, rows))
}

/// Ridge regression (log space) of the target on all sources, penalty by
/// leave-one-out.
pub fn ridge_predict(
    sources: &SourceMatrix,
    archs: &[usize],
    ms: &[f64],
    rows: &[usize],
) -> Result<Vec<f64>> {
    let x: Vec<Vec<f64>> = archs.iter().map(|&a| sources.row(a)).collect();
    let y: Vec<f64> = ms.iter().map(|v| v.max(1e-9).ln()).collect();
    let model = Ridge::fit_loo(&x, &y).ok_or_else(|| {
        PredictorError::internal("ridge", "the leave-one-out fit found no solution")
    })?;
    Ok(rows
        .iter()
        .map(|&r| model.predict(&sources.row(r)).exp())
        .collect())
}

/// Feature row for [`ridge_cost_predict`]: source log latencies, then the
/// standardised analytic cost vector (FLOPs, params, op counts, per-node FLOPs).
pub(crate) fn cost_row(data: &SpaceData, sources: &SourceMatrix, r: usize) -> Vec<f64> {
    let f = &data.features;
    let mut row = sources.row(r);
    row.extend(
        f.cost[r * f.cost_dim..(r + 1) * f.cost_dim]
            .iter()
            .map(|&v| f64::from(v)),
    );
    row
}

/// Ridge (log space) on source latencies and analytic cost features: the
/// cost features carry what FLOPs ranking knows, the sources what ridge knows.
pub fn ridge_cost_predict(
    data: &SpaceData,
    sources: &SourceMatrix,
    archs: &[usize],
    ms: &[f64],
    rows: &[usize],
) -> Result<Vec<f64>> {
    let x: Vec<Vec<f64>> = archs.iter().map(|&a| cost_row(data, sources, a)).collect();
    let y: Vec<f64> = ms.iter().map(|v| v.max(1e-9).ln()).collect();
    let model = Ridge::fit_loo(&x, &y).ok_or_else(|| {
        PredictorError::internal("ridge", "the leave-one-out fit found no solution")
    })?;
    Ok(rows
        .iter()
        .map(|&r| model.predict(&cost_row(data, sources, r)).exp())
        .collect())
}

/// Linear model in ms on the additive features ([`AdditiveModel`]).
pub fn additive_predict(
    data: &SpaceData,
    archs: &[usize],
    ms: &[f64],
    rows: &[usize],
) -> Result<Vec<f64>> {
    let model = AdditiveModel::fit(data, archs, ms)?;
    Ok(rows.iter().map(|&r| model.predict(data, r)).collect())
}

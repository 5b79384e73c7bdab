//! Baselines evaluated in the same harness, with the same k target samples
//! (BASELINES.md): FLOPs and params ranking, nearest source device, ridge
//! regression on source latencies, a HELP-style MLP and the GNN trained from
//! scratch on the k samples only.
//!
//! Every method returns predicted milliseconds; score-only methods are
//! calibrated on the k samples with [`LogLinearCalibration`].

pub mod help_mlp;
pub mod ridge;

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

/// Log latencies of the source devices on every row (missing cells filled).
#[derive(Debug, Clone)]
pub struct SourceMatrix {
    /// Source names, in task order.
    pub names: Vec<String>,
    /// `columns[s][row]` = ln(ms).
    pub columns: Vec<Vec<f64>>,
}

impl SourceMatrix {
    /// Builds the matrix of a task's sources.
    pub fn new(data: &SpaceData, sources: &[String]) -> Result<Self> {
        let columns = sources
            .iter()
            .map(|s| Ok(data.log_latency_filled(data.device_index(s)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(SourceMatrix {
            names: sources.to_vec(),
            columns,
        })
    }

    /// Feature row of one architecture.
    pub fn row(&self, r: usize) -> Vec<f64> {
        self.columns.iter().map(|c| c[r]).collect()
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

/// Smallest latency the additive model may predict, as a share of the
/// fastest measured sample.
const FLOOR_SHARE: f64 = 0.05;

/// The additive latency model: linear in milliseconds on the additive
/// features ([`crate::additive`]), as the average of two ridge fits with the
/// penalty chosen by leave-one-out:
///
/// - *plain*: shrinks every coefficient towards 0 (a constant latency);
/// - *anchored*: total FLOPs joins as an unpenalised column, so it shrinks
///   towards "latency proportional to FLOPs" instead.
///
/// Why both: on devices whose latency table is coarse and noisy (phones
/// whose tables hold few distinct integer-ms values), 20 samples cannot pin
/// six or eight coefficients and shrinking towards FLOPs is the better
/// prior; on GPUs FLOPs is a poor direction and the plain fit does better.
/// Their average keeps the anchored fit's gains on the phones at almost no
/// cost elsewhere (figures: docs/experiments/table7.md, "FLOPs-anchored
/// additive model").
#[derive(Debug, Clone)]
pub struct AdditiveModel {
    plain: Ridge,
    anchored: Option<Ridge>,
    /// Smallest prediction (ms): a straight line can dip below zero far from
    /// the samples, and log-space blending needs a positive value.
    pub floor: f64,
    /// Leave-one-out prediction of each sample (ms, floored).
    pub loo_predictions: Vec<f64>,
}

impl AdditiveModel {
    /// Fits both ridges on the k samples.
    pub fn fit(data: &SpaceData, archs: &[usize], ms: &[f64]) -> Result<Self> {
        let f = &data.features;
        let x: Vec<Vec<f64>> = archs.iter().map(|&a| f.additive_row(a).to_vec()).collect();
        let plain = Ridge::fit_loo(&x, ms).ok_or_else(|| {
            PredictorError::internal("additive", "the leave-one-out fit found no solution")
        })?;
        let anchored_x: Vec<Vec<f64>> = archs
            .iter()
            .zip(&x)
            .map(|(&a, row)| anchored_row(data, a, row))
            .collect();
        // Fails only when the samples' FLOPs are all equal (the anchor is
        // then no direction at all): the plain fit alone is used.
        let anchored = Ridge::fit_loo_anchored(&anchored_x, ms, 1);
        let floor = FLOOR_SHARE * ms.iter().copied().fold(f64::INFINITY, f64::min).max(1e-9);
        let loo_predictions = match &anchored {
            Some(a) => plain
                .loo_predictions
                .iter()
                .zip(&a.loo_predictions)
                .map(|(p, q)| (0.5 * (p + q)).max(floor))
                .collect(),
            None => plain.loo_predictions.iter().map(|p| p.max(floor)).collect(),
        };
        Ok(AdditiveModel {
            plain,
            anchored,
            floor,
            loo_predictions,
        })
    }

    /// Predicted ms of one row.
    pub fn predict(&self, data: &SpaceData, row: usize) -> f64 {
        self.predict_features(data.features.additive_row(row), data.flops[row])
    }

    /// Predicted ms of an architecture given by its additive features and
    /// its FLOPs in the table's convention (any architecture, not only a
    /// table row: the evolutionary search scores FBNet's whole space).
    pub fn predict_features(&self, additive: &[f64], flops: f64) -> f64 {
        let p = self.plain.predict(additive);
        let v = match &self.anchored {
            Some(a) => 0.5 * (p + a.predict(&anchored(flops, additive))),
            None => p,
        };
        v.max(self.floor)
    }
}

/// `[FLOPs, additive features...]` of one row (the anchor first).
fn anchored_row(data: &SpaceData, row: usize, additive: &[f64]) -> Vec<f64> {
    anchored(data.flops[row], additive)
}

fn anchored(flops: f64, additive: &[f64]) -> Vec<f64> {
    let mut v = Vec::with_capacity(additive.len() + 1);
    v.push(flops);
    v.extend_from_slice(additive);
    v
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

/// The additive model keeps at least half the weight (grid 0.5..=1.0): it is
/// the physical prior, and with 20 leave-one-out errors a free weight
/// overfits (docs/experiments/table7.md, "Stacking rules").
const MIN_ADDITIVE_STEP: u32 = 5;

/// The sources join only if they cut the additive model's leave-one-out
/// error by at least 10%: 20 LOO residuals are noisy, and a small apparent
/// gain is more often chance than signal (docs/experiments/table7.md,
/// "Stacking rules").
const SOURCE_GAIN: f64 = 0.9;

/// Weight of the additive model when stacked with the source regression,
/// and the two fitted models.
#[derive(Debug, Clone)]
pub struct Stack {
    additive: AdditiveModel,
    sources: Ridge,
    /// Weight of the additive model in log-ms space (1 - weight for sources).
    pub weight: f64,
}

impl Stack {
    /// Fits both models on the k samples and picks the blend weight (grid of
    /// 0.1 steps from 0.5) that minimises the leave-one-out squared error in log-ms.
    /// Why: on devices unlike every source (an edge TPU among GPU sources)
    /// the additive model wins; on devices with a close source (another
    /// desktop CPU) the sources' non-additive effects help. The k samples
    /// decide, out of sample.
    pub fn fit(
        data: &SpaceData,
        sources: &SourceMatrix,
        archs: &[usize],
        ms: &[f64],
    ) -> Result<Self> {
        let additive = AdditiveModel::fit(data, archs, ms)?;
        let x: Vec<Vec<f64>> = archs.iter().map(|&a| sources.row(a)).collect();
        let log_ms: Vec<f64> = ms.iter().map(|v| v.max(1e-9).ln()).collect();
        let source_model = Ridge::fit_loo(&x, &log_ms).ok_or_else(|| {
            PredictorError::internal("ridge", "the leave-one-out fit found no solution")
        })?;
        let a: Vec<f64> = additive.loo_predictions.iter().map(|v| v.ln()).collect();
        let b = &source_model.loo_predictions;
        let mut best = (f64::INFINITY, 1.0);
        let mut alone = f64::INFINITY;
        for step in MIN_ADDITIVE_STEP..=10 {
            let w = f64::from(step) / 10.0;
            let err: f64 = a
                .iter()
                .zip(b)
                .zip(&log_ms)
                .map(|((p, q), t)| (w * p + (1.0 - w) * q - t).powi(2))
                .sum();
            if step == 10 {
                alone = err;
            }
            if err < best.0 {
                best = (err, w);
            }
        }
        if best.0 > SOURCE_GAIN * alone {
            best = (alone, 1.0);
        }
        Ok(Stack {
            additive,
            sources: source_model,
            weight: best.1,
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
}

/// The additive model and the source regression stacked ([`Stack`]).
pub fn stacked_predict(
    data: &SpaceData,
    sources: &SourceMatrix,
    archs: &[usize],
    ms: &[f64],
    rows: &[usize],
) -> Result<Vec<f64>> {
    let stack = Stack::fit(data, sources, archs, ms)?;
    Ok(rows
        .iter()
        .map(|&r| stack.predict(data, sources, r))
        .collect())
}

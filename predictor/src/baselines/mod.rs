//! Baselines evaluated in the same harness, with the same k target samples
//! (BASELINES.md): FLOPs and params ranking, nearest source device, ridge
//! regression on source latencies, a HELP-style MLP and the GNN trained from
//! scratch on the k samples only.
//!
//! Every method returns predicted milliseconds; score-only methods are
//! calibrated on the k samples with [`LogLinearCalibration`].

pub mod help_mlp;
pub mod ridge;
mod stack;

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

/// Which of the additive model's two ridge fits predicts:
///
/// - *plain*: shrinks every coefficient towards 0 (a constant latency);
/// - *anchored*: total FLOPs joins as an unpenalised column, so it shrinks
///   towards "latency proportional to FLOPs" instead;
/// - *average*: the mean of the two.
///
/// Why a choice: on devices whose latency table is coarse and noisy (phones
/// whose tables hold few distinct integer-ms values), 20 samples cannot pin
/// six or eight coefficients and shrinking towards FLOPs is the better
/// prior; on GPUs FLOPs is a poor direction and the plain fit does better.
/// The served stack and the `additive` baseline average the two
/// ([`StackRules::SERVED`] says why).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Anchor {
    /// The plain ridge alone.
    Plain,
    /// The FLOPs-anchored ridge alone.
    Anchored,
    /// The mean of the two.
    Average,
}

impl Anchor {
    /// Every anchor, the average (the prior) first.
    pub const ALL: [Anchor; 3] = [Anchor::Average, Anchor::Plain, Anchor::Anchored];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Anchor::Plain => "plain",
            Anchor::Anchored => "anchored",
            Anchor::Average => "average",
        }
    }

    /// The prediction (ms, before the floor) from the plain fit's `p` and
    /// the anchored fit's `q` (`None` when the anchored fit failed).
    fn combine(self, p: f64, q: Option<f64>) -> f64 {
        match (self, q) {
            (Anchor::Plain, _) | (_, None) => p,
            (Anchor::Anchored, Some(q)) => q,
            (Anchor::Average, Some(q)) => 0.5 * (p + q),
        }
    }
}

impl std::fmt::Display for Anchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The additive latency model: linear in milliseconds on the additive
/// features ([`crate::additive`]), from two ridge fits with the penalty
/// chosen by leave-one-out, combined as its [`Anchor`] says (figures:
/// docs/experiments/table7.md, "FLOPs-anchored additive model").
#[derive(Debug, Clone)]
pub struct AdditiveModel {
    plain: Ridge,
    anchored: Option<Ridge>,
    anchor: Anchor,
    /// Smallest prediction (ms): a straight line can dip below zero far from
    /// the samples, and log-space blending needs a positive value.
    pub floor: f64,
    /// Leave-one-out prediction of each sample (ms, floored).
    pub loo_predictions: Vec<f64>,
}

impl AdditiveModel {
    /// Fits both ridges on the k samples, predicting with their average.
    pub fn fit(data: &SpaceData, archs: &[usize], ms: &[f64]) -> Result<Self> {
        Self::fit_with(data, archs, ms, Anchor::Average)
    }

    /// Fits both ridges on the k samples, predicting as `anchor` says.
    pub fn fit_with(data: &SpaceData, archs: &[usize], ms: &[f64], anchor: Anchor) -> Result<Self> {
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
        let model = AdditiveModel {
            plain,
            anchored,
            anchor,
            floor,
            loo_predictions: Vec::new(),
        };
        Ok(model.with_anchor(anchor))
    }

    /// The same two fits predicting as `anchor` says (no refit).
    fn with_anchor(mut self, anchor: Anchor) -> Self {
        let q = |i: usize| self.anchored.as_ref().map(|a| a.loo_predictions[i]);
        self.loo_predictions = (0..self.plain.loo_predictions.len())
            .map(|i| {
                anchor
                    .combine(self.plain.loo_predictions[i], q(i))
                    .max(self.floor)
            })
            .collect();
        self.anchor = anchor;
        self
    }

    /// How the two fits are combined.
    pub fn anchor(&self) -> Anchor {
        self.anchor
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
        let q = self
            .anchored
            .as_ref()
            .map(|a| a.predict(&anchored(flops, additive)));
        self.anchor.combine(p, q).max(self.floor)
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

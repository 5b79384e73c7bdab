//! The additive latency model's fit: two ridges on the additive features
//! ([`crate::additive`]), one of them anchored on FLOPs.

use serde::{Deserialize, Serialize};

use super::ridge::Ridge;
use crate::dataset::SpaceData;
use crate::error::{PredictorError, Result};

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

//! The few-shot pipeline's latency for architectures given by value, any of
//! FBNet's 9^22 and not only the 5,000 table rows: what the evolutionary
//! search ([`super::evolution`]) ranks with.
//!
//! The served blend is the GNN's calibrated prediction with the linear stack
//! (additive op-cost ridge + source-latency ridge). Off the table there are
//! no source-device latencies to regress on, so this model blends the GNN
//! with the **additive part of the stack alone** (its features and FLOPs
//! anchor are computed from the architecture: [`ArchFeatures::for_archs`],
//! [`nasflat_shared::fbnet_cost`]). It is its own predictor with its own
//! leave-one-out residuals, and one search uses it for every candidate, in
//! the table or not, so the bound matches what ranks.

use nasflat_shared::{Arch, FbnetArch, fbnet_cost};

use super::evolution::ArchScorer;
use super::objective::Objective;

use crate::baselines::AdditiveModel;
use crate::dataset::SpaceData;
use crate::error::{PredictorError, Result};
use crate::features::ArchFeatures;
use crate::fewshot::{Fitted, blend_log};

/// Latency of any architecture of the fitted space, and the bound's residuals.
pub struct ArchLatency<'f, 'a> {
    fitted: &'f Fitted<'a>,
    data: &'a SpaceData,
    /// Fitted only when the blend gives it weight.
    additive: Option<AdditiveModel>,
    blend: f64,
    residuals: Vec<f64>,
}

impl<'f, 'a> ArchLatency<'f, 'a> {
    /// The GNN of `fitted` blended at weight `blend` (0 = the GNN alone)
    /// with an additive model fitted on the same samples. Fails when the
    /// GNN reads a table-only supplementary input (ZCP, cached encodings).
    pub fn new(fitted: &'f Fitted<'a>, data: &'a SpaceData, blend: f64) -> Result<Self> {
        let supplementary = fitted.transferred().model.config().supplementary;
        if ArchFeatures::table_only(supplementary) {
            return Err(PredictorError::input(
                "supplementary encoding",
                "none or cost (computable for architectures outside the table)",
                format!("`{supplementary}`, which exists for table rows only"),
            ));
        }
        if !(0.0..=1.0).contains(&blend) {
            return Err(PredictorError::input(
                "blend",
                "a weight in [0, 1]",
                blend.to_string(),
            ));
        }
        let samples = fitted.samples();
        let (rows, ms) = (samples.rows(), samples.latencies());
        let additive = if blend > 0.0 {
            Some(AdditiveModel::fit(data, &rows, &ms)?)
        } else {
            None
        };
        // The GNN's leave-one-out log prediction is ln(ms) minus its residual.
        let gnn_residuals = fitted.loo_log_residuals_at(0.0)?;
        let residuals = ms
            .iter()
            .zip(&gnn_residuals)
            .enumerate()
            .map(|(i, (&m, &r))| {
                let gnn = m.ln() - r;
                let log = match &additive {
                    Some(a) => (1.0 - blend) * gnn + blend * a.loo_predictions[i].ln(),
                    None => gnn,
                };
                m.ln() - log
            })
            .collect();
        Ok(ArchLatency {
            fitted,
            data,
            additive,
            blend,
            residuals,
        })
    }

    /// Predicted ms of `archs` (one GNN pass over all of them).
    pub fn predict_archs(&self, archs: &[Arch]) -> Result<Vec<f64>> {
        let features = self.data.features.for_archs(archs)?;
        let t = self.fitted.transferred();
        let rows: Vec<usize> = (0..archs.len()).collect();
        let scores = t.scores(&features, &rows)?;
        let gnn = t.calibration.apply_all(&scores);
        let Some(additive) = &self.additive else {
            return Ok(gnn);
        };
        let linear = archs
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let flops = table_flops(self.data, a)?;
                Ok(additive.predict_features(features.additive_row(i), flops))
            })
            .collect::<Result<Vec<f64>>>()?;
        Ok(blend_log(&gnn, &linear, self.blend))
    }

    /// Out-of-sample log residuals of this blend on the k samples.
    pub fn loo_log_residuals(&self) -> &[f64] {
        &self.residuals
    }

    /// The blend weight of the additive model.
    pub fn blend(&self) -> f64 {
        self.blend
    }
}

/// FLOPs in the convention of `data.flops` (the stack's anchor): FBNet's
/// closed form, equal to the table on its rows; NB201's table (every NB201
/// architecture has a row).
fn table_flops(data: &SpaceData, arch: &Arch) -> Result<f64> {
    match arch {
        Arch::Fbnet(a) => Ok(fbnet_cost(a).flops as f64),
        Arch::Nb201(a) => data.flops.get(a.index()).copied().ok_or_else(|| {
            PredictorError::internal("flops", format!("no row {} in the table", a.index()))
        }),
    }
}

/// [`ArchLatency`] with an objective: what the evolution scores FBNet with.
pub struct PipelineScorer<'m, 'f, 'a> {
    /// Latency of any architecture.
    pub latency: &'m ArchLatency<'f, 'a>,
    /// What to maximise (FLOPs or params).
    pub objective: Objective,
}

impl ArchScorer for PipelineScorer<'_, '_, '_> {
    fn score(&self, archs: &[FbnetArch]) -> Result<Vec<(f64, f64)>> {
        let any: Vec<Arch> = archs.iter().copied().map(Arch::Fbnet).collect();
        let ms = self.latency.predict_archs(&any)?;
        archs
            .iter()
            .zip(ms)
            .map(|(a, m)| Ok((m, self.objective.of_fbnet(a)?)))
            .collect()
    }

    fn loo_log_residuals(&self) -> Vec<f64> {
        self.latency.loo_log_residuals().to_vec()
    }
}

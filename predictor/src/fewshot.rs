//! The few-shot pipeline shared by the evaluation harness, the host service
//! and the NAS: a pretrained predictor transferred to the target on its k
//! measured samples, its scores calibrated to ms on those samples, blended
//! (log space) with the linear stack (additive cost model + source-latency
//! ridge). One object for every caller means the service serves, and the
//! NAS searches with, exactly what `eval` measures.

use std::borrow::Cow;

use crate::baselines::{SourceMatrix, Stack};
use crate::calibrate::LogLinearCalibration;
use crate::dataset::SpaceData;
use crate::error::Result;
use crate::model::Predictor;
use crate::samples::Samples;
use crate::train::{self, TransferOptions, Transferred};

/// Default weight of the linear stack in the served and evaluated blend.
/// Chosen on the 12 paper tasks (3 trials, seeds 0-2, docs/results.md): 0.85
/// beat the bar on 11 tasks, 0.7 on 10, 0.5 on 8, the GNN alone on none; the
/// GNN still adds on GPU targets (N3, N4) over the stack alone.
pub const DEFAULT_BLEND: f64 = 0.85;

/// How to fit the pipeline to one target.
#[derive(Debug, Clone)]
pub struct Options {
    /// The transfer's settings, seed and progress bar.
    pub transfer: TransferOptions,
    /// Weight of the linear stack in [`Fitted::predict`]; 0 = the paper's
    /// predictor alone.
    pub blend: f64,
}

/// What every fit of one space and task shares: the pretrained predictor,
/// the space's tables and the source devices' latencies.
#[derive(Clone, Copy)]
pub struct FewShot<'a> {
    /// Predictor pretrained on the task's source devices.
    pub pretrained: &'a Predictor,
    /// The space's features and tables.
    pub data: &'a SpaceData,
    /// Source latencies the linear stack regresses on.
    pub sources: &'a SourceMatrix,
}

/// The pipeline fitted to one target device.
pub struct Fitted<'a> {
    data: &'a SpaceData,
    sources: &'a SourceMatrix,
    transferred: Transferred,
    samples: Samples,
    /// Fitted only when some blend needs it: a fit that cannot use the stack
    /// must not fail because the stack cannot be fitted.
    stack: Option<Stack>,
    blend: f64,
}

impl<'a> FewShot<'a> {
    /// Transfers the pretrained predictor to `target` on `samples` and, when
    /// `opts.blend` > 0, fits the linear stack on the same samples.
    pub fn fit(&self, target: &str, samples: &Samples, opts: &Options) -> Result<Fitted<'a>> {
        let transferred =
            train::transfer_measured(self.pretrained, self.data, target, samples, &opts.transfer)?;
        let stack = if opts.blend > 0.0 {
            Some(self.fit_stack(samples)?)
        } else {
            None
        };
        Ok(Fitted {
            data: self.data,
            sources: self.sources,
            transferred,
            samples: samples.clone(),
            stack,
            blend: opts.blend,
        })
    }

    fn fit_stack(&self, samples: &Samples) -> Result<Stack> {
        Stack::fit(
            self.data,
            self.sources,
            &samples.rows(),
            &samples.latencies(),
        )
    }
}

impl Fitted<'_> {
    /// Predicted ms of `rows` at the fitted blend weight.
    pub fn predict(&self, rows: &[usize]) -> Result<Vec<f64>> {
        let mut out = self.predict_blends(rows, std::slice::from_ref(&self.blend))?;
        Ok(out.pop().unwrap_or_default())
    }

    /// Predicted ms of `rows` at several blend weights (one entry per weight,
    /// in order), sharing the GNN's forward pass and the stack's fit.
    pub fn predict_blends(&self, rows: &[usize], blends: &[f64]) -> Result<Vec<Vec<f64>>> {
        let gnn = self.gnn_ms(rows)?;
        let linear: Option<Vec<f64>> = self.stack_for(blends)?.map(|s| {
            rows.iter()
                .map(|&r| s.predict(self.data, self.sources, r))
                .collect()
        });
        Ok(blends
            .iter()
            .map(|&w| match &linear {
                Some(l) if w > 0.0 => blend_log(&gnn, l, w),
                _ => gnn.clone(),
            })
            .collect())
    }

    /// The fitted stack, or one fitted now when some weight needs it and
    /// [`FewShot::fit`] did not (its blend was 0).
    fn stack_for(&self, blends: &[f64]) -> Result<Option<Cow<'_, Stack>>> {
        Ok(match (&self.stack, blends.iter().any(|&w| w > 0.0)) {
            (Some(s), _) => Some(Cow::Borrowed(s)),
            (None, true) => Some(Cow::Owned(Stack::fit(
                self.data,
                self.sources,
                &self.samples.rows(),
                &self.samples.latencies(),
            )?)),
            (None, false) => None,
        })
    }

    /// The transferred GNN's calibrated ms alone (blend 0).
    pub fn gnn_ms(&self, rows: &[usize]) -> Result<Vec<f64>> {
        let t = &self.transferred;
        let scores = t.model.predict(&self.data.features, rows, t.row)?;
        Ok(t.calibration.apply_all(&scores))
    }

    /// Out-of-sample residuals `ln(measured) - ln(predicted)` of the fitted
    /// blend on the k samples. The GNN part leaves each sample out of the
    /// score -> ms calibration (its fine-tuning saw all k: a true leave-one-out
    /// would cost k transfers); the stack part is its own leave-one-out fit.
    /// Risk bounds are quantiles of these.
    pub fn loo_log_residuals(&self) -> Result<Vec<f64>> {
        self.loo_log_residuals_at(self.blend)
    }

    /// [`Fitted::loo_log_residuals`] of the blend at weight `w`.
    pub fn loo_log_residuals_at(&self, w: f64) -> Result<Vec<f64>> {
        let rows = self.samples.rows();
        let t = &self.transferred;
        let scores = t.model.predict(&self.data.features, &rows, t.row)?;
        let gnn = loo_calibrated_logs(&scores, &self.samples.latencies());
        let predicted: Vec<f64> = match self.stack_for(std::slice::from_ref(&w))? {
            Some(stack) if w > 0.0 => gnn
                .iter()
                .zip(stack.loo_log_predictions())
                .map(|(g, l)| (1.0 - w) * g + w * l)
                .collect(),
            _ => gnn,
        };
        Ok(self
            .samples
            .iter()
            .zip(&predicted)
            .map(|(s, p)| s.ms.ln() - p)
            .collect())
    }

    /// The blend weight [`Fitted::predict`] uses.
    pub fn blend(&self) -> f64 {
        self.blend
    }

    /// The samples the pipeline was fitted on.
    pub fn samples(&self) -> &Samples {
        &self.samples
    }

    /// The source whose hardware embedding initialised the target's.
    pub fn init_from(&self) -> Option<&str> {
        self.transferred.init_from.as_deref()
    }

    /// The transferred predictor and its calibration.
    pub fn transferred(&self) -> &Transferred {
        &self.transferred
    }
}

/// Log-ms prediction of each sample by a calibration fitted on the others.
fn loo_calibrated_logs(scores: &[f64], ms: &[f64]) -> Vec<f64> {
    (0..scores.len())
        .map(|i| {
            let keep = |v: &[f64]| -> Vec<f64> {
                v.iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(_, &x)| x)
                    .collect()
            };
            let cal = LogLinearCalibration::fit(&keep(scores), &keep(ms));
            cal.slope * scores[i] + cal.intercept
        })
        .collect()
}

/// Geometric blend `gnn^(1-w) * linear^w` (a weighted mean of log-ms).
pub fn blend_log(gnn: &[f64], linear: &[f64], w: f64) -> Vec<f64> {
    gnn.iter()
        .zip(linear)
        .map(|(g, l)| ((1.0 - w) * g.max(1e-12).ln() + w * l.max(1e-12).ln()).exp())
        .collect()
}

//! The few-shot pipeline shared by the evaluation harness, the host service
//! and the NAS: a pretrained predictor transferred to the target on its k
//! measured samples, its scores calibrated to ms on those samples, blended
//! (log space) with the linear stack (additive cost model + source-latency
//! ridge). One object for every caller means the service serves, and the
//! NAS searches with, exactly what `eval` measures.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::baselines::{SourceMatrix, Stack, StackChoice, StackRules};
use crate::blend::{self, BlendChoice, BlendRule};
use crate::calibrate::LogLinearCalibration;
use crate::dataset::SpaceData;
use crate::error::Result;
use crate::model::Predictor;
use crate::samples::{Sample, Samples};
use crate::train::{self, TransferOptions, Transferred};

/// How far (a factor) a sample's latency may stray from what the other
/// samples say before [`outliers`] calls it an outlier. Each sample is first
/// divided by the geometric mean of the source devices on its architecture,
/// so architecture effects cancel; the factor is then taken from the median
/// of those ratios. Clean vendored tables stray up to ~3,700x this way (NB201
/// archs whose outputs skip every op, timed near zero on two phones), so
/// only grosser errors (a broken timer, a forged upload) are caught.
pub const OUTLIER_FACTOR: f64 = 1e4;

/// Fewest samples [`outliers`] tests: the median of fewer is no reference.
pub const OUTLIER_MIN_SAMPLES: usize = 5;

/// The samples whose latency, relative to the source devices on the same
/// architecture, is more than [`OUTLIER_FACTOR`] away from the median such
/// ratio of all `samples`, in order. One such sample among k drags every
/// log-space fit of the pipeline (calibration, ridge) towards it; a caller
/// that takes measurements from untrusted boards fits on
/// [`Samples::without`] them. The evaluation protocol does not call it.
pub fn outliers(sources: &SourceMatrix, samples: &Samples) -> Vec<Sample> {
    if samples.len() < OUTLIER_MIN_SAMPLES || sources.columns.is_empty() {
        return Vec::new();
    }
    let ratio = |s: &Sample| {
        let logs = sources.columns.iter().filter_map(|c| c.get(s.row));
        s.ms.ln() - logs.sum::<f64>() / sources.columns.len() as f64
    };
    let ratios: Vec<f64> = samples.iter().map(ratio).collect();
    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let limit = OUTLIER_FACTOR.ln();
    samples
        .iter()
        .zip(&ratios)
        .filter(|(_, r)| (*r - median).abs() > limit)
        .map(|(s, _)| *s)
        .collect()
}

/// How to fit the pipeline to one target.
#[derive(Debug, Clone)]
pub struct Options {
    /// The transfer's settings, seed and progress bar.
    pub transfer: TransferOptions,
    /// How the weight of the linear stack in [`Fitted::predict`] is set;
    /// weight 0 = the paper's predictor alone.
    pub blend: BlendRule,
    /// The rules the stack weighs its two models under.
    pub stack_rules: StackRules,
}

impl Options {
    /// The served pipeline's options: [`BlendRule::SERVED`] and
    /// [`StackRules::SERVED`].
    pub fn served(transfer: TransferOptions) -> Self {
        Options {
            transfer,
            blend: BlendRule::SERVED,
            stack_rules: StackRules::SERVED,
        }
    }
}

/// Every choice a fit made without looking beyond its k samples and the
/// task's sources: the blend weight and the stack's rules and weight.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ServedChoice {
    /// The blend of GNN and stack.
    pub blend: BlendChoice,
    /// The stack's choice (`None` when the blend cannot use the stack).
    pub stack: Option<StackChoice>,
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
    stack_rules: StackRules,
    blend: BlendChoice,
}

impl<'a> FewShot<'a> {
    /// Transfers the pretrained predictor to `target` on `samples`, fits
    /// the linear stack on the same samples when the blend rule may use it,
    /// and sets the blend weight as the rule says.
    pub fn fit(&self, target: &str, samples: &Samples, opts: &Options) -> Result<Fitted<'a>> {
        let rule = opts.blend.validate()?;
        let transferred =
            train::transfer_measured(self.pretrained, self.data, target, samples, &opts.transfer)?;
        let stack = if rule.needs_stack() {
            Some(self.fit_stack(samples, opts.stack_rules)?)
        } else {
            None
        };
        let mut fitted = Fitted {
            data: self.data,
            sources: self.sources,
            transferred,
            samples: samples.clone(),
            stack,
            stack_rules: opts.stack_rules,
            blend: BlendChoice {
                rule,
                weight: 0.0,
                loo_mse: None,
            },
        };
        fitted.blend = fitted.choose_blend(rule)?;
        Ok(fitted)
    }

    fn fit_stack(&self, samples: &Samples, rules: StackRules) -> Result<Stack> {
        Stack::fit(
            self.data,
            self.sources,
            &samples.rows(),
            &samples.latencies(),
            &rules,
        )
    }
}

impl Fitted<'_> {
    /// The weight `rule` picks from the blend's leave-one-out log
    /// residuals on the k samples ([`BlendRule::choose_from_loo`]); only
    /// the k samples are read.
    pub fn choose_blend(&self, rule: BlendRule) -> Result<BlendChoice> {
        if let BlendRule::Fixed(weight) = rule {
            return Ok(BlendChoice {
                rule,
                weight,
                loo_mse: None,
            });
        }
        let gnn = self.gnn_loo_logs()?;
        let stack = self.stack_for(&[1.0])?.map(|s| s.loo_log_predictions());
        Ok(rule.choose_from_loo(&gnn, stack.as_deref(), &self.log_ms()))
    }

    /// ln(ms) of each sample.
    fn log_ms(&self) -> Vec<f64> {
        self.samples.iter().map(|s| s.ms.ln()).collect()
    }

    /// The GNN's leave-one-out log-ms prediction of each sample (the
    /// calibration refitted without it).
    fn gnn_loo_logs(&self) -> Result<Vec<f64>> {
        let t = &self.transferred;
        let scores = t.scores(&self.data.features, &self.samples.rows())?;
        Ok(loo_calibrated_logs(&scores, &self.samples.latencies()))
    }

    /// Predicted ms of `rows` at the chosen blend weight.
    pub fn predict(&self, rows: &[usize]) -> Result<Vec<f64>> {
        let mut out = self.predict_blends(rows, std::slice::from_ref(&self.blend.weight))?;
        Ok(out.pop().unwrap_or_default())
    }

    /// Predicted ms of `rows` at several blend weights (one entry per weight,
    /// in order), sharing the GNN's forward pass and the stack's fit.
    pub fn predict_blends(&self, rows: &[usize], blends: &[f64]) -> Result<Vec<Vec<f64>>> {
        let stack = self.stack_for(blends)?;
        self.blend_with(rows, blends, stack.as_deref())
    }

    /// Predicted ms of `rows` at weight `w` with a stack fitted now under
    /// `rules` (the transferred GNN shared): `eval` reports the old fixed
    /// rules beside the derived ones from one transfer.
    pub fn predict_restacked(
        &self,
        rows: &[usize],
        rules: &StackRules,
        w: f64,
    ) -> Result<(Vec<f64>, StackChoice)> {
        let stack = Stack::fit(
            self.data,
            self.sources,
            &self.samples.rows(),
            &self.samples.latencies(),
            rules,
        )?;
        let mut out = self.blend_with(rows, &[w], Some(&stack))?;
        Ok((out.pop().unwrap_or_default(), stack.choice()))
    }

    fn blend_with(
        &self,
        rows: &[usize],
        blends: &[f64],
        stack: Option<&Stack>,
    ) -> Result<Vec<Vec<f64>>> {
        let gnn = self.gnn_ms(rows)?;
        let linear = stack.map(|s| s.predict_rows(self.data, self.sources, rows));
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
                &self.stack_rules,
            )?)),
            (None, false) => None,
        })
    }

    /// The transferred GNN's calibrated ms alone (blend 0).
    pub fn gnn_ms(&self, rows: &[usize]) -> Result<Vec<f64>> {
        let t = &self.transferred;
        let scores = t.scores(&self.data.features, rows)?;
        Ok(t.calibration.apply_all(&scores))
    }

    /// Out-of-sample residuals `ln(measured) - ln(predicted)` of the fitted
    /// blend on the k samples. The GNN part leaves each sample out of the
    /// score -> ms calibration (its fine-tuning saw all k: a true leave-one-out
    /// would cost k transfers); the stack part is its own leave-one-out fit.
    /// Risk bounds are quantiles of these.
    pub fn loo_log_residuals(&self) -> Result<Vec<f64>> {
        self.loo_log_residuals_at(self.blend.weight)
    }

    /// [`Fitted::loo_log_residuals`] of the blend at weight `w`.
    pub fn loo_log_residuals_at(&self, w: f64) -> Result<Vec<f64>> {
        let gnn = self.gnn_loo_logs()?;
        let stack = self
            .stack_for(std::slice::from_ref(&w))?
            .map(|s| s.loo_log_predictions());
        Ok(blend::loo_residuals(
            &gnn,
            stack.as_deref(),
            &self.log_ms(),
            w,
        ))
    }

    /// The blend weight [`Fitted::predict`] uses.
    pub fn blend(&self) -> f64 {
        self.blend.weight
    }

    /// Every choice of this fit: the blend and the stack's rules and weight.
    pub fn choice(&self) -> ServedChoice {
        self.choice_at(self.blend)
    }

    /// [`Fitted::choice`] with another blend (what `eval` reports for each
    /// blend rule it evaluates from one fit).
    pub fn choice_at(&self, blend: BlendChoice) -> ServedChoice {
        ServedChoice {
            blend,
            stack: self
                .stack
                .as_ref()
                .filter(|_| blend.weight > 0.0)
                .map(Stack::choice),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use nasflat_shared::SearchSpace;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use rand::seq::index::sample;

    /// k = 20 random rows of `target` from its table, seeded.
    fn table_samples(data: &SpaceData, target: &str, seed: u64) -> Samples {
        let mut rng = StdRng::seed_from_u64(seed);
        let col = data.device_index(target).unwrap();
        let rows: Vec<usize> = sample(&mut rng, data.rows(), 60)
            .into_iter()
            .filter(|&r| data.latency(col, r).is_some_and(|v| v > 0.0))
            .take(20)
            .collect();
        Samples::from_table(data, target, &rows).unwrap()
    }

    /// On clean table samples of every device of both spaces (the others
    /// as sources, 20 seeds each) nothing is an outlier, so a caller that
    /// fits on `without(outliers)` fits on exactly the samples it had and
    /// predicts bit-identically; one latency a factor 1e5 off is caught.
    #[test]
    fn clean_samples_have_no_outliers_and_a_gross_error_is_caught() {
        for space in [SearchSpace::Nb201, SearchSpace::Fbnet] {
            let data = SpaceData::load(space).unwrap();
            let devices = data.latency.names().to_vec();
            for target in &devices {
                let others: Vec<String> =
                    devices.iter().filter(|d| *d != target).cloned().collect();
                let sources = SourceMatrix::new(&data, &others).unwrap();
                for seed in 0..20 {
                    let clean = table_samples(&data, target, seed);
                    let found = outliers(&sources, &clean);
                    assert!(found.is_empty(), "{space} {target} seed {seed}: {found:?}");
                    assert_eq!(clean.without(&found), clean);
                }
                let clean = table_samples(&data, target, 99);
                let mut items: Vec<Sample> = clean.iter().copied().collect();
                items[3].ms *= 1e5;
                let poisoned = Samples::new(items.clone()).unwrap();
                assert_eq!(
                    outliers(&sources, &poisoned),
                    vec![items[3]],
                    "{space} {target}"
                );
                assert_eq!(poisoned.without(&[items[3]]).len(), clean.len() - 1);
            }
        }
    }
}

//! The rules the linear stack chooses its weight under, derived per task
//! by leave-one-source-out: each source device in turn plays the target,
//! with the other sources as its sources and k random samples of its own
//! table, and the rules whose stacks rank its other architectures best
//! (mean Spearman) win. Only the task's source devices are read, never a
//! test device: the rules are as honest as the per-target choices.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::index::sample;
use serde::{Deserialize, Serialize};

use super::ridge::Ridge;
use super::stack::{additive_weight, log_all};
use super::{AdditiveModel, Anchor, SourceMatrix};
use crate::correlation::spearman;
use crate::dataset::SpaceData;

/// How the stack may weigh its two models.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StackRules {
    /// Least weight of the additive model, in tenths (10: sources never
    /// join): 20 leave-one-out errors are noisy, and a floor on the
    /// physical model guards against a weight that only fits the noise.
    pub min_additive_step: u32,
    /// The sources join only if they cut the additive model's LOO squared
    /// error to at most this share of it (1: any cut).
    pub source_gain: f64,
    /// How the additive model's two fits are combined.
    pub anchor: Anchor,
    /// Take the largest additive weight whose LOO error is within one
    /// standard error of the least (the one-standard-error rule).
    #[serde(default)]
    pub one_se: bool,
}

/// Where a stack's rules came from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum RulesOrigin {
    /// Derived by leave-one-source-out on the task's source devices.
    LeaveOneSourceOut {
        /// Simulated transfers (source devices x draws) they were scored on.
        simulations: usize,
        /// Their mean Spearman over those simulations.
        spearman: f64,
    },
    /// No source could be simulated (fewer than two sources, or too few
    /// valid rows): [`StackRules::PRIOR`].
    Prior,
    /// Given by the caller (the `legacy` rules, a test).
    Given,
}

/// Draws of k samples per simulated source device.
const DRAWS: usize = 3;

fn draws() -> usize {
    std::env::var("NASFLAT_DEV_DRAWS").ok().and_then(|v| v.parse().ok()).unwrap_or(DRAWS)
}

/// Architectures each simulated transfer is scored on (a random subset of
/// the source's table: enough for a Spearman accurate to ~0.005, and it
/// bounds the cost on NB201's 15,625 rows).
const SCORED_ROWS: usize = 2000;

impl StackRules {
    /// The rules the served stack used before they were derived per task
    /// (chosen by looking at the 12 test tasks; docs/experiments/table7.md,
    /// "Stacking rules"): kept to reproduce the old behaviour (`--blend
    /// legacy`), never served.
    pub const LEGACY: StackRules = StackRules {
        min_additive_step: 5,
        source_gain: 0.9,
        anchor: Anchor::Average,
        one_se: false,
    };

    /// The rules used when none can be derived, and the winner of exact
    /// ties: no constraint beyond the leave-one-out choice itself, the two
    /// additive fits averaged.
    pub const PRIOR: StackRules = StackRules {
        min_additive_step: 0,
        source_gain: 1.0,
        anchor: Anchor::Average,
        one_se: false,
    };

    /// The candidates [`StackRules::derive`] scores, the prior first: floors
    /// 0, 0.5 and 1 on the additive weight, required LOO cuts none, 10% and
    /// 20%, each anchor (a floor of 1 makes the cut moot: once per anchor).
    pub fn candidates() -> Vec<StackRules> {
        let mut out = Vec::new();
        for anchor in Anchor::ALL {
            for min_additive_step in [0, 5] {
                for source_gain in [1.0, 0.9, 0.8] {
                    out.push(StackRules {
                        min_additive_step,
                        source_gain,
                        anchor,
                        one_se: false,
                    });
                }
            }
            out.push(StackRules {
                min_additive_step: 10,
                source_gain: 1.0,
                anchor,
                one_se: false,
            });
            if std::env::var("NASFLAT_DEV_1SE").is_ok() {
                out.push(StackRules {
                    min_additive_step: 0,
                    source_gain: 1.0,
                    anchor,
                    one_se: true,
                });
            }
        }
        out
    }

    /// The candidate rules with the best mean Spearman over simulated
    /// k-sample transfers onto each source device of `sources` (the others
    /// as its sources), [`DRAWS`] draws each, seeded by `seed`. Reads only
    /// the sources' tables.
    pub fn derive(
        data: &SpaceData,
        sources: &SourceMatrix,
        k: usize,
        seed: u64,
    ) -> (StackRules, RulesOrigin) {
        let candidates = Self::candidates();
        let mut totals = vec![0.0; candidates.len()];
        let mut simulations = 0;
        for held in 0..sources.names.len() {
            for draw in 0..draws() {
                let sim_seed = seed
                    .wrapping_mul(1_000_003)
                    .wrapping_add((held * 1000 + draw) as u64);
                let Some(scores) = simulate(data, sources, held, k, sim_seed, &candidates) else {
                    continue;
                };
                for (t, s) in totals.iter_mut().zip(scores) {
                    *t += s;
                }
                simulations += 1;
            }
        }
        if simulations == 0 {
            return (Self::PRIOR, RulesOrigin::Prior);
        }
        let mut best = 0;
        for (i, t) in totals.iter().enumerate() {
            if *t > totals[best] {
                best = i;
            }
        }
        let origin = RulesOrigin::LeaveOneSourceOut {
            simulations,
            spearman: totals[best] / simulations as f64,
        };
        (candidates[best], origin)
    }
}

/// Spearman of each candidate's stack on one simulated transfer onto
/// source `held`; `None` when it cannot be simulated (too few valid rows,
/// no other source, a fit without solution).
fn simulate(
    data: &SpaceData,
    sources: &SourceMatrix,
    held: usize,
    k: usize,
    seed: u64,
    candidates: &[StackRules],
) -> Option<Vec<f64>> {
    let others = sources.without(held);
    if others.columns.is_empty() {
        return None;
    }
    let column = data.device_index(&sources.names[held]).ok()?;
    let valid = data.valid_rows(column);
    if valid.len() < k + 3 || k < 3 {
        return None;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let picked = sample(&mut rng, valid.len(), valid.len().min(k + SCORED_ROWS));
    let rows: Vec<usize> = picked.into_iter().map(|i| valid[i]).collect();
    let (fit, scored) = rows.split_at(k);
    let ms: Vec<f64> = fit.iter().filter_map(|&r| data.latency(column, r)).collect();
    let truth: Vec<f64> = scored
        .iter()
        .filter_map(|&r| data.latency(column, r))
        .collect();
    let additive = AdditiveModel::fit(data, fit, &ms).ok()?;
    let x: Vec<Vec<f64>> = fit.iter().map(|&a| others.row(a)).collect();
    let log_ms = log_all(&ms);
    let source_model = Ridge::fit_loo(&x, &log_ms)?;
    let from_sources: Vec<f64> = scored
        .iter()
        .map(|&r| source_model.predict(&others.row(r)))
        .collect();
    let mut by_anchor = Vec::with_capacity(Anchor::ALL.len());
    for anchor in Anchor::ALL {
        let model = additive.clone().with_anchor(anchor);
        let predicted: Vec<f64> = scored
            .iter()
            .map(|&r| model.predict(data, r).ln())
            .collect();
        by_anchor.push((anchor, log_all(&model.loo_predictions), predicted));
    }
    Some(
        candidates
            .iter()
            .map(|rules| {
                let (_, a_loo, a_pred) = by_anchor
                    .iter()
                    .find(|(anchor, ..)| *anchor == rules.anchor)
                    .unwrap_or(&by_anchor[0]);
                let w = additive_weight(a_loo, &source_model.loo_predictions, &log_ms, rules);
                let predicted: Vec<f64> = a_pred
                    .iter()
                    .zip(&from_sources)
                    .map(|(a, b)| w * a + (1.0 - w) * b)
                    .collect();
                spearman(&predicted, &truth)
            })
            .collect(),
    )
}

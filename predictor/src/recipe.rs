//! The mechanics of the paper's training recipe ([`Recipe::Paper`]), as its
//! released code (`correlation_trainer/main_trf.py`, abdelfattah-lab/
//! nasflat_latency) trains; docs/experiments/paper_recipe.md lists each
//! fact with where it is in the code.
//!
//! - learning rate: AdamW with `CosineAnnealingLR(T_max = epochs,
//!   eta_min = 1e-6)` stepped once per epoch, in pretraining and transfer;
//! - targets: latencies min-max normalised per device (linear, not log);
//! - pretraining batches: 128 graphs drawn from all source devices at once;
//! - loss: the pairwise hinge on at most 4n pairs of a batch of n, drawn at
//!   random among the pairs whose targets differ (pairs may span devices);
//! - readout: the mean over the last 4 transfer epochs.
//!
//! [`Recipe::Paper`]: crate::model::Recipe::Paper

use candle_core::{Device, Tensor};
use rand::Rng;
use rand::seq::SliceRandom;
use rand::seq::index::sample;

use crate::error::{PredictorError, Result};

/// Graphs per pretraining step (`batch_specified=128` for the source loader).
pub const PAPER_PRETRAIN_BATCH: usize = 128;

/// Pairs drawn per graph of a batch (`max_compare_ratio = 4`).
pub const PAIRS_PER_GRAPH: usize = 4;

/// Floor of the cosine schedule (`--eta_min 1e-6`).
pub const PAPER_ETA_MIN: f64 = 1e-6;

/// Transfer epochs whose predictions are averaged (`epoch > epochs - 5`).
pub const PAPER_READOUT_EPOCHS: usize = 4;

/// Learning rate of epoch `epoch` (0-based) of `epochs`: PyTorch's
/// `CosineAnnealingLR` stepped once per epoch, `base` at epoch 0 and
/// `eta_min` after the last epoch (`epoch == epochs`).
pub fn cosine_lr(base: f64, eta_min: f64, epoch: usize, epochs: usize) -> f64 {
    if epochs == 0 {
        return base;
    }
    let t = epoch.min(epochs) as f64 / epochs as f64;
    eta_min + (base - eta_min) * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0
}

/// `(v - min) / (max - min)` of each value (all 0 when `max == min`).
pub fn min_max(values: &[f64], min: f64, max: f64) -> Vec<f64> {
    let range = max - min;
    values
        .iter()
        .map(|v| if range > 0.0 { (v - min) / range } else { 0.0 })
        .collect()
}

/// Smallest and largest of `values`.
pub fn range(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// One epoch's batches over several devices' sample sets: every
/// `(set, index)` pooled, shuffled and cut into batches of `batch` (the last
/// one shorter), as a shuffled PyTorch `DataLoader` over the concatenated
/// sets yields them. Batches of one graph have no pair and are left out (the
/// paper's code skips them).
pub fn mixed_batches(
    sizes: &[usize],
    batch: usize,
    rng: &mut impl Rng,
) -> Result<Vec<Vec<(usize, usize)>>> {
    if batch < 2 {
        return Err(PredictorError::input(
            "batch size",
            "at least 2 (a pairwise loss)",
            batch.to_string(),
        ));
    }
    let mut items: Vec<(usize, usize)> = sizes
        .iter()
        .enumerate()
        .flat_map(|(set, &n)| (0..n).map(move |i| (set, i)))
        .collect();
    items.shuffle(rng);
    Ok(items
        .chunks(batch)
        .filter(|c| c.len() >= 2)
        .map(<[(usize, usize)]>::to_vec)
        .collect())
}

/// At most [`PAIRS_PER_GRAPH`] x n pairs `(i, j)`, `i < j`, of a batch of n
/// targets whose targets differ, drawn without replacement (all of them
/// when there are fewer), in the order numpy's `np.where` lists them.
pub fn random_pairs(targets: &[f64], rng: &mut impl Rng) -> Vec<(usize, usize)> {
    let n = targets.len();
    let mut all = Vec::new();
    for i in 0..n {
        for j in i + 1..n {
            if (targets[i] - targets[j]).abs() > 0.0 {
                all.push((i, j));
            }
        }
    }
    let most = PAIRS_PER_GRAPH * n;
    if all.len() <= most {
        return all;
    }
    sample(rng, all.len(), most)
        .into_iter()
        .map(|k| all[k])
        .collect()
}

/// The paper's pairwise hinge on chosen pairs: mean over `(i, j)` of
/// `max(0, margin - sign(y_i - y_j) (s_i - s_j))`.
pub fn pair_hinge(
    scores: &Tensor,
    targets: &[f64],
    pairs: &[(usize, usize)],
    margin: f64,
) -> Result<Tensor> {
    if pairs.is_empty() {
        return Err(PredictorError::input(
            "pairs",
            "at least one pair with different targets",
            "none",
        ));
    }
    let cpu = Device::Cpu;
    let first: Vec<u32> = pairs.iter().map(|&(i, _)| i as u32).collect();
    let second: Vec<u32> = pairs.iter().map(|&(_, j)| j as u32).collect();
    let sign: Vec<f32> = pairs
        .iter()
        .map(|&(i, j)| if targets[i] > targets[j] { 1.0 } else { -1.0 })
        .collect();
    let len = pairs.len();
    let s_i = scores.index_select(&Tensor::from_vec(first, len, &cpu)?, 0)?;
    let s_j = scores.index_select(&Tensor::from_vec(second, len, &cpu)?, 0)?;
    let signed = ((s_i - s_j)? * Tensor::from_vec(sign, len, &cpu)?)?;
    Ok((signed.neg()? + margin)?.relu()?.mean_all()?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn cosine_schedule_falls_monotonically_to_its_floor() {
        let epochs = 150;
        let lrs: Vec<f64> = (0..=epochs)
            .map(|e| cosine_lr(1e-3, PAPER_ETA_MIN, e, epochs))
            .collect();
        assert_eq!(lrs[0], 1e-3);
        assert!((lrs[epochs] - 1e-6).abs() < 1e-15, "{}", lrs[epochs]);
        assert!(lrs.windows(2).all(|w| w[1] < w[0]), "not strictly falling");
        // Half way it is the mean of start and floor (a cosine, not a line
        // or a step).
        let mid = cosine_lr(1e-3, PAPER_ETA_MIN, 75, epochs);
        assert!((mid - (1e-3 + 1e-6) / 2.0).abs() < 1e-12, "{mid}");
        let quarter = cosine_lr(1e-3, PAPER_ETA_MIN, 50, 200);
        let expected = 1e-6 + (1e-3 - 1e-6) * (1.0 + (std::f64::consts::PI / 4.0).cos()) / 2.0;
        assert!(
            (quarter - expected).abs() < 1e-12,
            "{quarter} vs {expected}"
        );
        // The last epoch trains just above the floor.
        assert!(lrs[epochs - 1] < 1.2e-6, "{}", lrs[epochs - 1]);
    }

    #[test]
    fn min_max_maps_each_device_onto_zero_one() {
        let fast = [1.0, 2.0, 3.0];
        let slow = [100.0, 300.0, 200.0];
        let (lo, hi) = range(&slow);
        assert_eq!((lo, hi), (100.0, 300.0));
        assert_eq!(min_max(&slow, lo, hi), vec![0.0, 1.0, 0.5]);
        let (lo, hi) = range(&fast);
        assert_eq!(min_max(&fast, lo, hi), vec![0.0, 0.5, 1.0]);
        assert_eq!(min_max(&[4.0, 4.0], 4.0, 4.0), vec![0.0, 0.0]);
    }

    /// Three devices of 100, 60 and 10 samples: every sample lands in
    /// exactly one batch, batches hold 128 (the last fewer), and the first
    /// batch mixes all devices in about their shares.
    #[test]
    fn mixed_batches_cover_every_sample_once_across_devices() {
        let sizes = [100, 60, 10];
        let mut rng = StdRng::seed_from_u64(7);
        let batches = mixed_batches(&sizes, PAPER_PRETRAIN_BATCH, &mut rng).unwrap();
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![128, 42]
        );
        let mut seen: Vec<(usize, usize)> = batches.concat();
        seen.sort_unstable();
        let expected: Vec<(usize, usize)> = sizes
            .iter()
            .enumerate()
            .flat_map(|(s, &n)| (0..n).map(move |i| (s, i)))
            .collect();
        assert_eq!(seen, expected);
        for (set, &size) in sizes.iter().enumerate() {
            let share = batches[0].iter().filter(|(s, _)| *s == set).count();
            let expected = 128.0 * size as f64 / 170.0;
            assert!(
                (share as f64 - expected).abs() < 0.35 * expected + 3.0,
                "device {set}: {share} of 128, expected ~{expected:.0}"
            );
        }
        // A lone tail graph has no pair: left out.
        let batches = mixed_batches(&[129], 128, &mut rng).unwrap();
        assert_eq!(batches.len(), 1);
        assert!(mixed_batches(&[10], 1, &mut rng).is_err());
    }

    #[test]
    fn random_pairs_are_four_per_graph_distinct_and_informative() {
        let mut rng = StdRng::seed_from_u64(3);
        let targets: Vec<f64> = (0..128).map(|i| f64::from(i % 50)).collect();
        let pairs = random_pairs(&targets, &mut rng);
        assert_eq!(pairs.len(), 4 * 128);
        let mut unique = pairs.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), pairs.len());
        assert!(
            pairs
                .iter()
                .all(|&(i, j)| i < j && targets[i] != targets[j])
        );
        // Fewer informative pairs than 4n: all of them.
        let small = random_pairs(&[1.0, 2.0, 2.0, 3.0], &mut rng);
        assert_eq!(small, vec![(0, 1), (0, 2), (0, 3), (1, 3), (2, 3)]);
    }

    #[test]
    fn pair_hinge_penalises_only_misordered_or_close_pairs() {
        let scores = Tensor::new(&[0.0f32, 1.0, 0.5], &Device::Cpu).unwrap();
        let targets = [0.0, 1.0, 2.0];
        // (0,1): y0 < y1 and s0 < s1 by 1 -> 0; (1,2): y1 < y2 but s1 > s2
        // by 0.5 -> 0.6; (0,2): s0 < s2 by 0.5 -> 0.
        let loss = pair_hinge(&scores, &targets, &[(0, 1), (1, 2), (0, 2)], 0.1).unwrap();
        let value = loss.to_scalar::<f32>().unwrap();
        assert!((value - 0.2).abs() < 1e-6, "{value}");
        assert!(pair_hinge(&scores, &targets, &[], 0.1).is_err());
    }
}

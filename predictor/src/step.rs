//! One training step with its batch computed in parts, side by side.
//!
//! Candle runs one thread per op in `nasflat-host` and a 128-graph step
//! of the paper's recipe is too small to gain from threads inside each op,
//! so a step parallelises over graphs instead: each part runs its forward
//! on its own thread, the loss is taken once over all scores, and each
//! part's backward is seeded with its share of the loss's gradient. The
//! parts' gradients add up to the whole batch's. The number of parts is
//! a property of the phase, not of the machine, so a run's numbers do not
//! depend on how many threads computed them.

use std::ops::Range;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use crate::error::{PredictorError, Result};
use crate::features::ArchFeatures;
use crate::model::Predictor;
use crate::parallel::map_in_groups;

/// Parts a paper-recipe pretraining batch (128 graphs) is split into: one
/// per core of the 2-core machine this is built for.
pub const PAPER_STEP_PARTS: usize = 2;

/// The graphs of one training step, each on its hardware row.
pub struct StepBatch<'a> {
    /// Feature tables the rows index.
    pub features: &'a ArchFeatures,
    /// Architecture rows.
    pub rows: &'a [usize],
    /// Hardware row per graph.
    pub devices: &'a [usize],
}

/// The loss of `batch` under `loss_of` (which maps the `[B]` scores to a
/// scalar) and its gradients, the batch computed in `parts` contiguous
/// pieces on at most `threads` threads.
pub fn split_gradients(
    model: &Predictor,
    batch: &StepBatch<'_>,
    parts: usize,
    threads: usize,
    loss_of: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<(f64, GradStore)> {
    let pieces = pieces(batch.rows.len(), parts);
    let scores = map_in_groups(&pieces, threads, "training step", |r| {
        Ok(vec![model.forward_rows(
            batch.features,
            &batch.rows[r.clone()],
            &batch.devices[r.clone()],
        )?])
    })?;
    let detached: Vec<Tensor> = scores.iter().map(Tensor::detach).collect();
    let joined = Var::from_tensor(&Tensor::cat(&detached, 0)?)?;
    let loss = loss_of(joined.as_tensor())?;
    let seed = loss
        .backward()?
        .get(joined.as_tensor())
        .map(Tensor::detach)
        .ok_or_else(|| PredictorError::internal("training step", "the loss ignores the scores"))?;
    let indexed: Vec<(usize, Range<usize>)> = pieces.into_iter().enumerate().collect();
    let stores = map_in_groups(&indexed, threads, "training step", |(i, r)| {
        let share = seed.narrow(0, r.start, r.len())?;
        Ok(vec![(&scores[*i] * share)?.sum_all()?.backward()?])
    })?;
    let total = sum_stores(model, stores)?;
    Ok((f64::from(loss.to_scalar::<f32>()?), total))
}

/// `len` items in `parts` contiguous ranges (fewer when `len` is small).
fn pieces(len: usize, parts: usize) -> Vec<Range<usize>> {
    let size = len.div_ceil(parts.max(1)).max(1);
    (0..len)
        .step_by(size)
        .map(|start| start..(start + size).min(len))
        .collect()
}

/// Adds the parts' gradients of every model variable into one store.
fn sum_stores(model: &Predictor, stores: Vec<GradStore>) -> Result<GradStore> {
    let mut stores = stores.into_iter();
    let mut total = stores
        .next()
        .ok_or_else(|| PredictorError::internal("training step", "an empty batch"))?;
    for store in stores {
        for var in model.vars() {
            let Some(grad) = store.get(&var) else {
                continue;
            };
            let sum = match total.get(&var) {
                Some(t) => (t + grad)?,
                None => grad.clone(),
            };
            total.insert(&var, sum);
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pieces_cover_the_batch_in_order() {
        assert_eq!(pieces(128, 2), vec![0..64, 64..128]);
        assert_eq!(pieces(5, 2), vec![0..3, 3..5]);
        assert_eq!(pieces(1, 2), vec![0..1]);
        assert_eq!(pieces(7, 1), vec![0..7]);
        assert!(pieces(0, 2).is_empty());
    }
}

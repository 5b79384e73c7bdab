//! What both learned encoders share: seeded minibatch order, the optimiser,
//! and the report of a training run.

use std::time::Instant;

use candle_core::{DType, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::error::Result;

/// Outcome of one training run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    /// Mean training loss of each epoch.
    pub epoch_losses: Vec<f64>,
    /// Wall-clock seconds of the training loop.
    pub seconds: f64,
    /// Reconstruction (Arch2Vec) or masked-op (CATE) accuracy, `(name, value)`.
    pub accuracies: Vec<(String, f64)>,
}

/// Shuffled minibatches of `0..n`, drawn from `rng`.
pub fn minibatches(n: usize, batch: usize, rng: &mut StdRng) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    order.chunks(batch.max(1)).map(<[usize]>::to_vec).collect()
}

/// AdamW over every variable of `varmap`, no weight decay.
pub fn adam(varmap: &VarMap, lr: f64) -> Result<AdamW> {
    let params = ParamsAdamW {
        lr,
        weight_decay: 0.0,
        ..ParamsAdamW::default()
    };
    Ok(AdamW::new(varmap.all_vars(), params)?)
}

/// A progress bar over `steps` optimiser steps, hidden when `show` is false.
pub fn progress(steps: usize, label: &str, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} ({eta})")
    {
        bar.set_style(style);
    }
    bar.set_message(label.to_string());
    bar
}

/// Runs `epochs` passes of `step` over shuffled minibatches and returns the
/// mean loss per epoch and the wall time.
pub fn run_epochs(
    n: usize,
    epochs: usize,
    batch: usize,
    rng: &mut StdRng,
    opt: &mut AdamW,
    bar: &ProgressBar,
    mut step: impl FnMut(&[usize], &mut StdRng) -> Result<candle_core::Tensor>,
) -> Result<(Vec<f64>, f64)> {
    let start = Instant::now();
    let mut epoch_losses = Vec::with_capacity(epochs);
    for _ in 0..epochs {
        let batches = minibatches(n, batch, rng);
        let mut total = 0.0;
        for b in &batches {
            let loss = step(b, rng)?;
            opt.backward_step(&loss)?;
            total += f64::from(loss.to_scalar::<f32>()?);
            bar.inc(1);
        }
        epoch_losses.push(total / batches.len().max(1) as f64);
    }
    bar.finish_and_clear();
    Ok((epoch_losses, start.elapsed().as_secs_f64()))
}

/// Names of the variables that get no gradient, or an all-zero one, from
/// `loss` (sorted). candle's fused `softmax_last_dim` / `layer_norm` /
/// `rms_norm` have no backward and raise no error: a parameter behind one
/// silently stops learning, so every model's tests check this is empty.
pub fn vars_without_gradient<'a>(
    loss: &Tensor,
    vars: impl IntoIterator<Item = (&'a str, &'a Var)>,
) -> Result<Vec<String>> {
    let grads = loss.backward()?;
    let mut missing = Vec::new();
    for (name, var) in vars {
        let norm = match grads.get(var.as_tensor()) {
            Some(g) => g
                .abs()?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?,
            None => 0.0,
        };
        if norm <= 0.0 {
            missing.push(name.to_string());
        }
    }
    missing.sort();
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn a_variable_the_loss_does_not_reach_is_named() {
        let used = Var::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        let unused = Var::new(&[3.0f32], &Device::Cpu).unwrap();
        let zero = Var::new(&[0.0f32], &Device::Cpu).unwrap();
        // d/dzero of zero * zero is 0 at zero: present but all-zero.
        let loss = (used.as_tensor().sqr().unwrap().sum_all().unwrap()
            + zero.as_tensor().sqr().unwrap().sum_all().unwrap())
        .unwrap();
        let vars = [("used", &used), ("unused", &unused), ("zero", &zero)];
        let missing = vars_without_gradient(&loss, vars).unwrap();
        assert_eq!(missing, vec!["unused", "zero"]);
    }
}

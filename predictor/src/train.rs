//! Pretraining on source devices and few-shot transfer to a target device
//! (paper Sections 3.4 and 5.2).

use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use indicatif::ProgressBar;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::calibrate::LogLinearCalibration;
use crate::correlation::spearman;
use crate::dataset::{SpaceData, sample_rows};
use crate::error::{PredictorError, Result};
use crate::model::{GraphBatch, LossKind, Predictor, PredictorConfig, TrainConfig};
use crate::samples::Samples;

/// Measured samples of one device, paired with its hardware-embedding row.
#[derive(Debug, Clone)]
pub struct DeviceSamples {
    /// Row of the device in the predictor's hardware table.
    pub row: usize,
    /// Architecture rows.
    pub archs: Vec<usize>,
    /// Latencies (ms), same order.
    pub latencies: Vec<f64>,
}

impl DeviceSamples {
    /// Gathers the latencies of `archs` on table column `column`.
    pub fn gather(
        data: &SpaceData,
        name: &str,
        column: usize,
        row: usize,
        archs: Vec<usize>,
    ) -> Result<Self> {
        let latencies = archs
            .iter()
            .map(|&a| {
                data.latency(column, a).ok_or_else(|| {
                    PredictorError::input(
                        "sample",
                        format!("an arch {name} has a latency for"),
                        format!("arch {a}"),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DeviceSamples {
            row,
            archs,
            latencies,
        })
    }
}

/// Optimiser settings of one training phase.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    /// Passes over the data.
    pub epochs: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Graphs per step (all from one device, so pairs are comparable).
    pub batch_size: usize,
    /// Objective.
    pub loss: LossKind,
    /// Hinge margin.
    pub margin: f64,
}

/// Pairwise hinge loss (TA-GATES): for every pair with `y_i > y_j`,
/// `max(0, margin - (s_i - s_j))`, averaged over such pairs.
pub fn pairwise_hinge(scores: &Tensor, targets: &[f64], margin: f64) -> Result<Tensor> {
    let n = targets.len();
    let mut mask = vec![0f32; n * n];
    let mut count = 0usize;
    for i in 0..n {
        for j in 0..n {
            if targets[i] > targets[j] {
                mask[i * n + j] = 1.0;
                count += 1;
            }
        }
    }
    let mask = Tensor::from_vec(mask, (n, n), &Device::Cpu)?;
    let diff = scores.unsqueeze(1)?.broadcast_sub(&scores.unsqueeze(0)?)?;
    let hinge = (diff.neg()? + margin)?.relu()?;
    Ok(((hinge * mask)?.sum_all()? / count.max(1) as f64)?)
}

/// Mean squared error against standardised targets.
pub fn mse(scores: &Tensor, targets: &[f64]) -> Result<Tensor> {
    let t: Vec<f32> = targets.iter().map(|&v| v as f32).collect();
    let t = Tensor::from_vec(t, targets.len(), &Device::Cpu)?;
    Ok((scores - t)?.sqr()?.mean_all()?)
}

/// Standardised log latency of a device's samples (the MSE target; ranks are
/// unchanged, so the hinge loss sees the same order).
fn standardised_log(latencies: &[f64]) -> Vec<f64> {
    let logs: Vec<f64> = latencies.iter().map(|v| v.max(1e-9).ln()).collect();
    let (mean, std) = crate::correlation::mean_std(&logs);
    let std = if std > 1e-9 { std } else { 1.0 };
    logs.iter().map(|v| (v - mean) / std).collect()
}

/// Trains `model` on the samples of one or more devices.
pub fn fit(
    model: &Predictor,
    data: &SpaceData,
    sets: &[DeviceSamples],
    phase: Phase,
    rng: &mut StdRng,
    progress: Option<&ProgressBar>,
) -> Result<f64> {
    let params = ParamsAdamW {
        lr: phase.lr,
        weight_decay: phase.weight_decay,
        ..ParamsAdamW::default()
    };
    let mut opt = AdamW::new(model.vars(), params)?;
    let targets: Vec<Vec<f64>> = sets
        .iter()
        .map(|s| standardised_log(&s.latencies))
        .collect();
    let mut last = f64::NAN;
    for _ in 0..phase.epochs {
        let mut batches: Vec<(usize, Vec<usize>)> = Vec::new();
        for (d, set) in sets.iter().enumerate() {
            let mut order: Vec<usize> = (0..set.archs.len()).collect();
            order.shuffle(rng);
            let mut chunks: Vec<Vec<usize>> = order
                .chunks(phase.batch_size)
                .map(<[usize]>::to_vec)
                .collect();
            // A 1-graph tail has no pair to rank: fold it into the previous batch.
            if chunks.len() > 1
                && chunks.last().is_some_and(|c| c.len() < 2)
                && let Some(tail) = chunks.pop()
                && let Some(prev) = chunks.last_mut()
            {
                prev.extend(tail);
            }
            batches.extend(chunks.into_iter().filter(|c| c.len() >= 2).map(|c| (d, c)));
        }
        batches.shuffle(rng);
        let mut total = 0.0;
        for (d, idx) in &batches {
            let set = &sets[*d];
            let rows: Vec<usize> = idx.iter().map(|&i| set.archs[i]).collect();
            let y: Vec<f64> = idx.iter().map(|&i| targets[*d][i]).collect();
            let batch = GraphBatch::build(&data.features, model.config(), &rows, set.row)?;
            let scores = model.forward(&batch)?;
            let loss = match phase.loss {
                LossKind::Hinge => pairwise_hinge(&scores, &y, phase.margin)?,
                LossKind::Mse => mse(&scores, &y)?,
            };
            opt.backward_step(&loss)?;
            total += f64::from(loss.to_scalar::<f32>()?);
        }
        last = total / batches.len().max(1) as f64;
        if let Some(p) = progress {
            p.inc(1);
        }
    }
    Ok(last)
}

/// Draws `n` random measured archs per source device (seeded) and pretrains
/// a fresh predictor on them.
pub fn pretrain(
    data: &SpaceData,
    sources: &[String],
    config: &PredictorConfig,
    train: &TrainConfig,
    seed: u64,
    progress: Option<&ProgressBar>,
) -> Result<Predictor> {
    train.validate()?;
    let mut rng = StdRng::seed_from_u64(seed);
    let supp = data.features.supplementary_dim(config.supplementary);
    let model = Predictor::new(config, data.space, sources, supp, seed)?;
    let mut sets = Vec::with_capacity(sources.len());
    for (row, name) in sources.iter().enumerate() {
        let column = data.device_index(name)?;
        let valid = data.valid_rows(column);
        let n = train.source_samples.min(valid.len());
        let archs = sample_rows(name, &valid, n, &mut rng)?;
        sets.push(DeviceSamples::gather(data, name, column, row, archs)?);
    }
    let phase = Phase {
        epochs: train.epochs,
        lr: train.lr,
        weight_decay: train.weight_decay,
        batch_size: train.batch_size,
        loss: train.loss,
        margin: train.margin,
    };
    fit(&model, data, &sets, phase, &mut rng, progress)?;
    Ok(model)
}

/// The source device whose latencies on the target's samples correlate best
/// (Spearman) with the target's (paper Section 5.2), with that correlation.
pub fn best_correlated_source(
    data: &SpaceData,
    sources: &[String],
    archs: &[usize],
    latencies: &[f64],
) -> Result<Option<(usize, f64)>> {
    let mut best: Option<(usize, f64)> = None;
    for (i, name) in sources.iter().enumerate() {
        let column = data.device_index(name)?;
        let mut xs = Vec::with_capacity(archs.len());
        let mut ys = Vec::with_capacity(archs.len());
        for (&a, &y) in archs.iter().zip(latencies) {
            if let Some(x) = data.latency(column, a) {
                xs.push(x);
                ys.push(y);
            }
        }
        let rho = spearman(&xs, &ys);
        if best.is_none_or(|(_, b)| rho > b) {
            best = Some((i, rho));
        }
    }
    Ok(best)
}

/// A predictor fine-tuned for one target device.
pub struct Transferred {
    /// The fine-tuned copy (source rows plus the target's).
    pub model: Predictor,
    /// Hardware-embedding row of the target.
    pub row: usize,
    /// Score -> ms map fitted on the target samples.
    pub calibration: LogLinearCalibration,
    /// Source whose embedding initialised the target's, if any.
    pub init_from: Option<String>,
}

/// How a transfer runs: the optimisation settings, its seed and an
/// optional progress bar that advances once per transfer epoch (the service
/// reports it as the job's progress).
#[derive(Debug, Clone)]
pub struct TransferOptions {
    /// Epochs, learning rate and loss of the transfer phase.
    pub train: TrainConfig,
    /// Seed of the batch order.
    pub seed: u64,
    /// Advanced once per epoch, when given.
    pub progress: Option<ProgressBar>,
}

/// [`transfer_measured`] with the target's latencies on `archs` read from
/// the space's table (the evaluation protocol).
pub fn transfer(
    pretrained: &Predictor,
    data: &SpaceData,
    target: &str,
    archs: &[usize],
    train: &TrainConfig,
    seed: u64,
) -> Result<Transferred> {
    let samples = Samples::from_table(data, target, archs)?;
    let opts = TransferOptions {
        train: train.clone(),
        seed,
        progress: None,
    };
    transfer_measured(pretrained, data, target, &samples, &opts)
}

/// Copies `pretrained`, adds a hardware-embedding row for `target` (INIT:
/// from the best-correlated source when `train.hw_init`), and fine-tunes all
/// weights with a fresh optimiser at the transfer learning rate on the
/// target's measured `samples`.
pub fn transfer_measured(
    pretrained: &Predictor,
    data: &SpaceData,
    target: &str,
    samples: &Samples,
    opts: &TransferOptions,
) -> Result<Transferred> {
    if samples.len() < 2 {
        return Err(PredictorError::TooFewSamples {
            needed: 2,
            got: samples.len(),
        });
    }
    let train = &opts.train;
    let archs = samples.rows();
    let latencies = samples.latencies();
    let mut model = pretrained.try_clone()?;
    let init = if train.hw_init {
        best_correlated_source(data, pretrained.devices(), &archs, &latencies)?.map(|(i, _)| i)
    } else {
        None
    };
    let row = model.add_device(&format!("{target}#target"), init)?;
    let set = DeviceSamples {
        row,
        archs,
        latencies,
    };
    let phase = Phase {
        epochs: train.transfer_epochs,
        lr: train.transfer_lr,
        weight_decay: train.weight_decay,
        batch_size: train.batch_size,
        loss: train.loss,
        margin: train.margin,
    };
    let mut rng = StdRng::seed_from_u64(opts.seed);
    fit(
        &model,
        data,
        std::slice::from_ref(&set),
        phase,
        &mut rng,
        opts.progress.as_ref(),
    )?;
    let scores = model.predict(&data.features, &set.archs, row)?;
    let calibration = LogLinearCalibration::fit(&scores, &set.latencies);
    Ok(Transferred {
        model,
        row,
        calibration,
        init_from: init.map(|i| pretrained.devices()[i].clone()),
    })
}

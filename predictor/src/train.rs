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
use crate::features::ArchFeatures;
use crate::model::{GraphBatch, LossKind, Predictor, PredictorConfig, Recipe, TrainConfig};
use crate::recipe::{
    PAPER_ETA_MIN, PAPER_PRETRAIN_BATCH, PAPER_READOUT_EPOCHS, cosine_lr, min_max, mixed_batches,
    pair_hinge, random_pairs, range,
};
use crate::samples::Samples;
use crate::step::{PAPER_STEP_PARTS, StepBatch, split_gradients};

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
    /// Served: constant rate, per-device batches, every pair; paper: see
    /// [`fit_paper`].
    pub recipe: Recipe,
    /// Pieces each step's batch is computed in ([`crate::step`]; 1 = whole).
    pub parts: usize,
}

impl Phase {
    /// AdamW over `model`'s parameters at this phase's rate and decay (both
    /// recipes start from it; the paper's then schedules the rate).
    fn optimizer(&self, model: &Predictor) -> Result<AdamW> {
        let params = ParamsAdamW {
            lr: self.lr,
            weight_decay: self.weight_decay,
            ..ParamsAdamW::default()
        };
        Ok(AdamW::new(model.vars(), params)?)
    }

    /// The pretraining phase of `train` (the paper's recipe pretrains on
    /// [`PAPER_PRETRAIN_BATCH`] graphs per step).
    pub fn pretraining(train: &TrainConfig) -> Self {
        Phase {
            epochs: train.epochs,
            lr: train.lr,
            weight_decay: train.weight_decay,
            batch_size: match train.recipe {
                Recipe::Served => train.batch_size,
                Recipe::Paper => PAPER_PRETRAIN_BATCH,
            },
            loss: train.loss,
            margin: train.margin,
            recipe: train.recipe,
            parts: match train.recipe {
                Recipe::Served => 1,
                Recipe::Paper => PAPER_STEP_PARTS,
            },
        }
    }

    /// The transfer phase of `train` (fresh optimiser, transfer rate).
    pub fn transfer(train: &TrainConfig) -> Self {
        Phase {
            epochs: train.transfer_epochs,
            lr: train.transfer_lr,
            weight_decay: train.weight_decay,
            batch_size: train.batch_size,
            loss: train.loss,
            margin: train.margin,
            recipe: train.recipe,
            parts: 1,
        }
    }
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

/// Trains `model` on the samples of one or more devices with the recipe of
/// `phase` (the paper's min-max targets span each set's own samples here;
/// [`pretrain`] spans each source's whole table column).
pub fn fit(
    model: &Predictor,
    data: &SpaceData,
    sets: &[DeviceSamples],
    phase: Phase,
    rng: &mut StdRng,
    progress: Option<&ProgressBar>,
) -> Result<f64> {
    match phase.recipe {
        Recipe::Served => fit_served(model, data, sets, phase, rng, progress),
        Recipe::Paper => {
            let ranges: Vec<(f64, f64)> = sets.iter().map(|s| range(&s.latencies)).collect();
            let run = PaperRun {
                sets,
                ranges: &ranges,
                snapshots: None,
                threads: 1,
            };
            fit_paper(model, &data.features, run, phase, rng, progress)
        }
    }
}

/// The served recipe: constant-rate AdamW, batches of one device, every
/// ordered pair of a batch ranked on standardised log latency.
fn fit_served(
    model: &Predictor,
    data: &SpaceData,
    sets: &[DeviceSamples],
    phase: Phase,
    rng: &mut StdRng,
    progress: Option<&ProgressBar>,
) -> Result<f64> {
    let mut opt = phase.optimizer(model)?;
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

/// What [`fit_paper`] trains on: sample sets, the latency range each set's
/// targets are min-max normalised over, and where to keep the readout
/// snapshots (transfer only).
pub struct PaperRun<'a> {
    /// One set per device.
    pub sets: &'a [DeviceSamples],
    /// `(min, max)` latency per set.
    pub ranges: &'a [(f64, f64)],
    /// Receives a copy of the model after each of the last
    /// [`PAPER_READOUT_EPOCHS`] epochs, when given.
    pub snapshots: Option<&'a mut Vec<Predictor>>,
    /// Threads a step's parts may run on (the numbers do not depend on it).
    pub threads: usize,
}

/// The paper's recipe ([`crate::recipe`]): cosine-decayed AdamW, min-max
/// targets per device, shuffled batches drawn across all sets, the hinge on
/// 4n random pairs per batch. Returns the last epoch's mean loss.
pub fn fit_paper(
    model: &Predictor,
    features: &ArchFeatures,
    run: PaperRun<'_>,
    phase: Phase,
    rng: &mut StdRng,
    progress: Option<&ProgressBar>,
) -> Result<f64> {
    if phase.loss != LossKind::Hinge {
        return Err(PredictorError::input(
            "loss",
            "hinge (the paper's recipe ranks pairs)",
            format!("{:?}", phase.loss),
        ));
    }
    let PaperRun {
        sets,
        ranges,
        mut snapshots,
        threads,
    } = run;
    let mut opt = phase.optimizer(model)?;
    let targets: Vec<Vec<f64>> = sets
        .iter()
        .zip(ranges)
        .map(|(s, &(lo, hi))| min_max(&s.latencies, lo, hi))
        .collect();
    let sizes: Vec<usize> = sets.iter().map(|s| s.archs.len()).collect();
    let mut last = f64::NAN;
    for epoch in 0..phase.epochs {
        opt.set_learning_rate(cosine_lr(phase.lr, PAPER_ETA_MIN, epoch, phase.epochs));
        let (mut total, mut steps) = (0.0, 0usize);
        for batch in mixed_batches(&sizes, phase.batch_size, rng)? {
            let y: Vec<f64> = batch.iter().map(|&(s, i)| targets[s][i]).collect();
            let pairs = random_pairs(&y, rng);
            if pairs.is_empty() {
                continue;
            }
            let rows: Vec<usize> = batch.iter().map(|&(s, i)| sets[s].archs[i]).collect();
            let devices: Vec<usize> = batch.iter().map(|&(s, _)| sets[s].row).collect();
            let batch = StepBatch {
                features,
                rows: &rows,
                devices: &devices,
            };
            let (loss, grads) = split_gradients(model, &batch, phase.parts, threads, |s| {
                pair_hinge(s, &y, &pairs, phase.margin)
            })?;
            opt.step(&grads)?;
            total += loss;
            steps += 1;
        }
        last = total / steps.max(1) as f64;
        if let Some(kept) = snapshots.as_deref_mut()
            && epoch + PAPER_READOUT_EPOCHS >= phase.epochs
        {
            kept.push(model.try_clone()?);
        }
        if let Some(p) = progress {
            p.inc(1);
        }
    }
    Ok(last)
}

/// Draws `n` random measured archs per source device (seeded; the paper's
/// recipe draws one set for all sources) and pretrains a fresh predictor on
/// them; a paper-recipe step spreads its parts over `threads` threads.
pub fn pretrain(
    data: &SpaceData,
    sources: &[String],
    config: &PredictorConfig,
    train: &TrainConfig,
    seed: u64,
    threads: usize,
    progress: Option<&ProgressBar>,
) -> Result<Predictor> {
    train.validate()?;
    let mut rng = StdRng::seed_from_u64(seed);
    let supp = data.features.supplementary_dim(config.supplementary);
    let model = Predictor::new(config, data.space, sources, supp, seed)?;
    if train.recipe == Recipe::Paper {
        let (sets, ranges) = paper_source_sets(data, sources, train.source_samples, &mut rng)?;
        let run = PaperRun {
            sets: &sets,
            ranges: &ranges,
            snapshots: None,
            threads,
        };
        let phase = Phase::pretraining(train);
        fit_paper(&model, &data.features, run, phase, &mut rng, progress)?;
        return Ok(model);
    }
    let mut sets = Vec::with_capacity(sources.len());
    for (row, name) in sources.iter().enumerate() {
        let column = data.device_index(name)?;
        let valid = data.valid_rows(column);
        let n = train.source_samples.min(valid.len());
        let archs = sample_rows(name, &valid, n, &mut rng)?;
        sets.push(DeviceSamples::gather(data, name, column, row, archs)?);
    }
    fit(
        &model,
        data,
        &sets,
        Phase::pretraining(train),
        &mut rng,
        progress,
    )?;
    Ok(model)
}

/// Source sample sets with the `(min, max)` latency of each.
type RangedSets = (Vec<DeviceSamples>, Vec<(f64, f64)>);

/// The paper's source data: one random set of `n` architectures measured
/// on every source (its code draws `train_samps` once for all devices),
/// each source's latencies with the range of its whole table column (its
/// min-max normalisation spans the device's table).
fn paper_source_sets(
    data: &SpaceData,
    sources: &[String],
    n: usize,
    rng: &mut StdRng,
) -> Result<RangedSets> {
    let columns = sources
        .iter()
        .map(|name| data.device_index(name))
        .collect::<Result<Vec<_>>>()?;
    let common: Vec<usize> = (0..data.rows())
        .filter(|&r| {
            columns
                .iter()
                .all(|&c| data.latency(c, r).is_some_and(|v| v > 0.0))
        })
        .collect();
    let archs = sample_rows("every source device", &common, n.min(common.len()), rng)?;
    let mut sets = Vec::with_capacity(sources.len());
    let mut ranges = Vec::with_capacity(sources.len());
    for (row, (name, &column)) in sources.iter().zip(&columns).enumerate() {
        sets.push(DeviceSamples::gather(
            data,
            name,
            column,
            row,
            archs.clone(),
        )?);
        let table: Vec<f64> = data
            .valid_rows(column)
            .into_iter()
            .filter_map(|r| data.latency(column, r))
            .collect();
        ranges.push(range(&table));
    }
    Ok((sets, ranges))
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
    /// The paper's readout: copies of the model after each of the last
    /// [`PAPER_READOUT_EPOCHS`] transfer epochs, whose scores are averaged;
    /// empty: the model's own scores.
    pub snapshots: Vec<Predictor>,
}

impl Transferred {
    /// Scores of `rows` on the target: the model's, or the mean of the
    /// readout snapshots' when there are any.
    pub fn scores(&self, features: &ArchFeatures, rows: &[usize]) -> Result<Vec<f64>> {
        readout_scores(&self.model, &self.snapshots, self.row, features, rows)
    }
}

/// `model`'s scores of `rows` on hardware row `row`, or the mean of the
/// `snapshots`' scores when there are any.
fn readout_scores(
    model: &Predictor,
    snapshots: &[Predictor],
    row: usize,
    features: &ArchFeatures,
    rows: &[usize],
) -> Result<Vec<f64>> {
    if snapshots.is_empty() {
        return model.predict(features, rows, row);
    }
    let mut mean = vec![0.0; rows.len()];
    for snapshot in snapshots {
        for (m, s) in mean.iter_mut().zip(snapshot.predict(features, rows, row)?) {
            *m += s / snapshots.len() as f64;
        }
    }
    Ok(mean)
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
    let phase = Phase::transfer(train);
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut snapshots = Vec::new();
    match train.recipe {
        Recipe::Served => {
            fit(
                &model,
                data,
                std::slice::from_ref(&set),
                phase,
                &mut rng,
                opts.progress.as_ref(),
            )?;
        }
        Recipe::Paper => {
            let run = PaperRun {
                sets: std::slice::from_ref(&set),
                ranges: &[range(&set.latencies)],
                snapshots: Some(&mut snapshots),
                threads: 1,
            };
            fit_paper(
                &model,
                &data.features,
                run,
                phase,
                &mut rng,
                opts.progress.as_ref(),
            )?;
        }
    }
    let scores = readout_scores(&model, &snapshots, row, &data.features, &set.archs)?;
    Ok(Transferred {
        model,
        row,
        calibration: LogLinearCalibration::fit(&scores, &set.latencies),
        init_from: init.map(|i| pretrained.devices()[i].clone()),
        snapshots,
    })
}

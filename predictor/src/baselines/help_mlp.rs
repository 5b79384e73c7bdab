//! A HELP-style predictor (Lee et al., 2021): an MLP over the flattened
//! one-hot op matrix concatenated with a hardware embedding made of the
//! device's latencies on 10 fixed reference architectures. Trained on the
//! source devices with MSE, then fine-tuned on the target's k samples (plain
//! fine-tuning instead of HELP's meta-learning, which the paper also finds
//! weaker than NASFLAT).

use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::dataset::{SpaceData, sample_rows};
use crate::error::{PredictorError, Result};
use crate::model::layers::{Mlp, ParamFactory};
use nasflat_shared::ArchGraph;

/// The HELP-style regressor and the normalisation of its hardware input.
pub struct HelpMlp {
    varmap: VarMap,
    mlp: Mlp,
    vocab: usize,
    hw_mean: Vec<f64>,
    hw_std: Vec<f64>,
}

/// One device's training data for the MLP.
struct HelpSet {
    hw: Vec<f32>,
    archs: Vec<usize>,
    targets: Vec<f64>,
}

impl HelpMlp {
    /// The device's log latencies on the reference archs (HELP's embedding).
    fn raw_hw(data: &SpaceData, column: usize) -> Result<Vec<f64>> {
        data.help_reference
            .iter()
            .map(|&a| {
                data.latency(column, a)
                    .filter(|v| *v > 0.0)
                    .map(f64::ln)
                    .ok_or_else(|| {
                        PredictorError::input(
                            "HELP reference architecture",
                            "measured on the target",
                            format!("arch {a} not measured"),
                        )
                    })
            })
            .collect()
    }

    fn hw_vector(&self, raw: &[f64]) -> Vec<f32> {
        raw.iter()
            .zip(&self.hw_mean)
            .zip(&self.hw_std)
            .map(|((v, m), s)| ((v - m) / s) as f32)
            .collect()
    }

    fn push_input(&self, data: &SpaceData, hw: &[f32], row: usize, out: &mut Vec<f32>) {
        data.features.push_one_hot(self.vocab, row, out);
        out.extend_from_slice(hw);
    }

    fn width(&self, data: &SpaceData) -> usize {
        data.features.nodes * self.vocab + self.hw_mean.len()
    }

    fn inputs(&self, data: &SpaceData, hw: &[f32], rows: &[usize]) -> Result<Tensor> {
        let mut x = Vec::with_capacity(rows.len() * self.width(data));
        for &r in rows {
            self.push_input(data, hw, r, &mut x);
        }
        Ok(Tensor::from_vec(
            x,
            (rows.len(), self.width(data)),
            &Device::Cpu,
        )?)
    }

    fn train(
        &self,
        data: &SpaceData,
        sets: &[HelpSet],
        epochs: usize,
        lr: f64,
        rng: &mut StdRng,
    ) -> Result<()> {
        let params = ParamsAdamW {
            lr,
            weight_decay: 1e-5,
            ..ParamsAdamW::default()
        };
        let mut opt = AdamW::new(self.varmap.all_vars(), params)?;
        let mut items: Vec<(usize, usize)> = sets
            .iter()
            .enumerate()
            .flat_map(|(d, s)| (0..s.archs.len()).map(move |i| (d, i)))
            .collect();
        for _ in 0..epochs {
            items.shuffle(rng);
            for chunk in items.chunks(32) {
                let mut x = Vec::with_capacity(chunk.len() * self.width(data));
                let mut y = Vec::with_capacity(chunk.len());
                for &(d, i) in chunk {
                    self.push_input(data, &sets[d].hw, sets[d].archs[i], &mut x);
                    y.push(sets[d].targets[i] as f32);
                }
                let x = Tensor::from_vec(x, (chunk.len(), self.width(data)), &Device::Cpu)?;
                let y = Tensor::from_vec(y, chunk.len(), &Device::Cpu)?;
                let pred = self.mlp.forward(&x)?.squeeze(1)?;
                let loss = (pred - y)?.sqr()?.mean_all()?;
                opt.backward_step(&loss)?;
            }
        }
        Ok(())
    }

    /// Pretrains on `n` random archs of each source device.
    pub fn pretrain(
        data: &SpaceData,
        sources: &[String],
        n: usize,
        epochs: usize,
        seed: u64,
    ) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed);
        let vocab = ArchGraph::op_vocab_size(data.space);
        let mut raws = Vec::new();
        for name in sources {
            raws.push(HelpMlp::raw_hw(data, data.device_index(name)?)?);
        }
        let dims = data.help_reference.len();
        let count = raws.len().max(1) as f64;
        let hw_mean: Vec<f64> = (0..dims)
            .map(|c| raws.iter().map(|r| r[c]).sum::<f64>() / count)
            .collect();
        let hw_std: Vec<f64> = (0..dims)
            .map(|c| {
                let v = raws
                    .iter()
                    .map(|r| (r[c] - hw_mean[c]).powi(2))
                    .sum::<f64>()
                    / count;
                v.sqrt().max(0.1)
            })
            .collect();
        let varmap = VarMap::new();
        let mut f = ParamFactory::new(&varmap, seed);
        let input = data.features.nodes * vocab + dims;
        let mlp = Mlp::new(&mut f, "help", input, &[100, 100, 100], 1)?;
        let model = HelpMlp {
            varmap,
            mlp,
            vocab,
            hw_mean,
            hw_std,
        };
        let mut sets = Vec::new();
        for (name, raw) in sources.iter().zip(&raws) {
            let column = data.device_index(name)?;
            let valid = data.valid_rows(column);
            let archs = sample_rows(name, &valid, n.min(valid.len()), &mut rng)?;
            let lat: Vec<f64> = archs
                .iter()
                .filter_map(|&a| data.latency(column, a))
                .collect();
            sets.push(HelpSet {
                hw: model.hw_vector(raw),
                archs,
                targets: standardise_log(&lat),
            });
        }
        model.train(data, &sets, epochs, 1e-3, &mut rng)?;
        Ok(model)
    }

    /// Fine-tunes a copy on the target's samples and returns log-scale scores
    /// for `rows`.
    pub fn transfer_predict(
        &self,
        data: &SpaceData,
        target: &str,
        archs: &[usize],
        rows: &[usize],
        epochs: usize,
        seed: u64,
    ) -> Result<Vec<f64>> {
        let column = data.device_index(target)?;
        let hw = self.hw_vector(&HelpMlp::raw_hw(data, column)?);
        let varmap = VarMap::new();
        let mut f = ParamFactory::new(&varmap, seed);
        let input = data.features.nodes * self.vocab + self.hw_mean.len();
        let mlp = Mlp::new(&mut f, "help", input, &[100, 100, 100], 1)?;
        {
            let src = self
                .varmap
                .data()
                .lock()
                .map_err(|e| PredictorError::Poisoned(e.to_string()))?;
            let dst = varmap
                .data()
                .lock()
                .map_err(|e| PredictorError::Poisoned(e.to_string()))?;
            for (name, var) in dst.iter() {
                if let Some(v) = src.get(name) {
                    var.set(&v.as_tensor().copy()?)?;
                }
            }
        }
        let copy = HelpMlp {
            varmap,
            mlp,
            vocab: self.vocab,
            hw_mean: self.hw_mean.clone(),
            hw_std: self.hw_std.clone(),
        };
        let lat: Vec<f64> = archs
            .iter()
            .filter_map(|&a| data.latency(column, a))
            .collect();
        let set = HelpSet {
            hw: hw.clone(),
            archs: archs.to_vec(),
            targets: standardise_log(&lat),
        };
        let mut rng = StdRng::seed_from_u64(seed);
        copy.train(data, std::slice::from_ref(&set), epochs, 1e-3, &mut rng)?;
        let mut out = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(4096) {
            let x = copy.inputs(data, &hw, chunk)?;
            let pred = copy
                .mlp
                .forward(&x)?
                .squeeze(1)?
                .to_dtype(candle_core::DType::F64)?;
            out.extend(pred.to_vec1::<f64>()?);
        }
        Ok(out)
    }
}

fn standardise_log(lat: &[f64]) -> Vec<f64> {
    let logs: Vec<f64> = lat.iter().map(|v| v.max(1e-9).ln()).collect();
    let (m, s) = crate::correlation::mean_std(&logs);
    let s = if s > 1e-9 { s } else { 1.0 };
    logs.iter().map(|v| (v - m) / s).collect()
}

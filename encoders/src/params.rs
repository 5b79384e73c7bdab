//! Seeded parameters and the few differentiable layers the encoders need.
//!
//! Weights and noise come from our own `StdRng` (never candle's global RNG)
//! so that a seed fully determines a run. Layer norm and softmax are written
//! from primitives with a backward pass (candle 0.11's fused `layer_norm` and
//! `softmax_last_dim` have none, see STACK.md).

use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::VarMap;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{EncodeError, Result};

/// Creates named, seeded variables inside a [`VarMap`].
pub struct ParamFactory<'a> {
    varmap: &'a VarMap,
    rng: StdRng,
}

impl<'a> ParamFactory<'a> {
    /// A factory whose draws are determined by `seed`.
    pub fn new(varmap: &'a VarMap, seed: u64) -> Self {
        ParamFactory {
            varmap,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// A variable with entries uniform in `[-bound, bound]`.
    pub fn uniform(&mut self, name: &str, shape: &[usize], bound: f64) -> Result<Tensor> {
        let t = uniform_tensor(&mut self.rng, shape, bound)?;
        self.insert(name, t)
    }

    /// A variable filled with one value.
    pub fn constant(&mut self, name: &str, shape: &[usize], value: f64) -> Result<Tensor> {
        let t = (Tensor::ones(shape, DType::F32, &Device::Cpu)? * value)?;
        self.insert(name, t)
    }

    fn insert(&mut self, name: &str, tensor: Tensor) -> Result<Tensor> {
        let var = Var::from_tensor(&tensor)?;
        let out = var.as_tensor().clone();
        self.varmap
            .data()
            .lock()
            .map_err(|e| EncodeError::Poisoned(e.to_string()))?
            .insert(name.to_string(), var);
        Ok(out)
    }
}

/// An f32 tensor uniform in `[-bound, bound]` drawn from `rng`.
pub fn uniform_tensor(rng: &mut StdRng, shape: &[usize], bound: f64) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|_| ((rng.random::<f64>() * 2.0 - 1.0) * bound) as f32)
        .collect();
    Ok(Tensor::from_vec(data, shape, &Device::Cpu)?)
}

/// An f32 tensor of standard normal draws from `rng` (Box-Muller), for the
/// VAE's reparameterisation noise and the proxies' synthetic batch.
pub fn normal_tensor(rng: &mut StdRng, shape: &[usize]) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| standard_normal(rng) as f32).collect();
    Ok(Tensor::from_vec(data, shape, &Device::Cpu)?)
}

/// One standard normal draw.
pub fn standard_normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// `y = x W + b` on the last dimension of any-rank input.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// PyTorch's default init bound `1/sqrt(in)`.
    pub fn new(
        f: &mut ParamFactory<'_>,
        name: &str,
        input: usize,
        output: usize,
        bias: bool,
    ) -> Result<Self> {
        let bound = 1.0 / (input.max(1) as f64).sqrt();
        let weight = f.uniform(&format!("{name}.weight"), &[input, output], bound)?;
        let bias = if bias {
            Some(f.uniform(&format!("{name}.bias"), &[output], bound)?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }

    /// Applies the layer.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let last = dims.last().copied().unwrap_or(0);
        let rows: usize = dims[..dims.len().saturating_sub(1)].iter().product();
        let y = x.reshape((rows, last))?.matmul(&self.weight)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out_dims = dims;
        if let Some(l) = out_dims.last_mut() {
            *l = self.weight.dim(1)?;
        }
        Ok(y.reshape(out_dims)?)
    }
}

/// Layer norm over the last dimension, from differentiable primitives.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    gamma: Tensor,
    beta: Tensor,
}

impl LayerNorm {
    /// Unit scale, zero shift.
    pub fn new(f: &mut ParamFactory<'_>, name: &str, dim: usize) -> Result<Self> {
        Ok(LayerNorm {
            gamma: f.constant(&format!("{name}.gamma"), &[dim], 1.0)?,
            beta: f.constant(&format!("{name}.beta"), &[dim], 0.0)?,
        })
    }

    /// Normalises the last dimension.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + 1e-5)?.sqrt()?)?;
        Ok(normed
            .broadcast_mul(&self.gamma)?
            .broadcast_add(&self.beta)?)
    }
}

/// Mean cross-entropy of `logits [n, classes]` against `targets [n]` (u32),
/// weighted per row by `weights [n]` (0/1 masks select rows); the weighted
/// mean over rows with weight > 0.
pub fn weighted_cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    weights: &Tensor,
) -> Result<Tensor> {
    let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let picked = log_probs
        .gather(&targets.unsqueeze(1)?, 1)?
        .squeeze(1)?
        .neg()?;
    let total = weights.sum_all()?;
    Ok((picked * weights)?.sum_all()?.broadcast_div(&total)?)
}

/// Row-wise argmax of `logits [n, classes]`.
pub fn argmax_rows(logits: &Tensor) -> Result<Vec<u32>> {
    Ok(logits.argmax(D::Minus1)?.to_vec1::<u32>()?)
}

//! Building blocks with seeded initialisation and differentiable forms only.
//!
//! Weights are drawn from our own seeded `StdRng` (not candle's global RNG) so
//! that a seed fully determines a run. Layer norm is written out by hand
//! because candle 0.11's fused `ops::layer_norm` has no backward pass.

use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::VarMap;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{PredictorError, Result};

/// Creates named, seeded variables inside a [`VarMap`].
pub struct ParamFactory<'a> {
    varmap: &'a VarMap,
    rng: StdRng,
    device: Device,
}

impl<'a> ParamFactory<'a> {
    /// A factory whose draws are determined by `seed`.
    pub fn new(varmap: &'a VarMap, seed: u64) -> Self {
        ParamFactory {
            varmap,
            rng: StdRng::seed_from_u64(seed),
            device: Device::Cpu,
        }
    }

    /// A variable with entries uniform in `[-bound, bound]`.
    pub fn uniform(&mut self, name: &str, shape: &[usize], bound: f64) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| (self.rng.random::<f64>() * 2.0 - 1.0) * bound)
            .map(|v| v as f32)
            .collect();
        self.insert(name, Tensor::from_vec(data, shape, &self.device)?)
    }

    /// A variable filled with one value.
    pub fn constant(&mut self, name: &str, shape: &[usize], value: f64) -> Result<Tensor> {
        let t = (Tensor::ones(shape, DType::F32, &self.device)? * value)?;
        self.insert(name, t)
    }

    fn insert(&mut self, name: &str, tensor: Tensor) -> Result<Tensor> {
        let var = Var::from_tensor(&tensor)?;
        let out = var.as_tensor().clone();
        self.varmap
            .data()
            .lock()
            .map_err(|e| PredictorError::Poisoned(e.to_string()))?
            .insert(name.to_string(), var);
        Ok(out)
    }
}

/// `y = x W + b`, applied to the last dimension of any-rank input.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// Kaiming-uniform-like init (PyTorch's default bound `1/sqrt(in)`).
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

    /// A copy sharing the weights' storage but outside autograd, for
    /// inference: ops on variables record their inputs, so a forward pass
    /// on the trained layers keeps every intermediate alive until its
    /// result is dropped (about 0.5 GB for the whole NB201 space).
    pub fn detached(&self) -> Self {
        Linear {
            weight: self.weight.detach(),
            bias: self.bias.as_ref().map(Tensor::detach),
        }
    }

    /// Applies the layer.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let last = dims.last().copied().unwrap_or(0);
        let rows: usize = dims[..dims.len().saturating_sub(1)].iter().product();
        let y = x.reshape((rows, last))?.matmul(&self.weight)?;
        let y = match &self.bias {
            Some(b) => super::fused::add_row(&y, b)?,
            None => y,
        };
        let mut out_dims = dims;
        if let Some(l) = out_dims.last_mut() {
            *l = self.weight.dim(1)?;
        }
        Ok(y.reshape(out_dims)?)
    }
}

/// A stack of linear layers with LeakyReLU between them (none after the last).
#[derive(Debug, Clone)]
pub struct Mlp {
    layers: Vec<Linear>,
}

impl Mlp {
    /// `input -> hidden... -> output`.
    pub fn new(
        f: &mut ParamFactory<'_>,
        name: &str,
        input: usize,
        hidden: &[usize],
        output: usize,
    ) -> Result<Self> {
        let mut layers = Vec::with_capacity(hidden.len() + 1);
        let mut width = input;
        for (i, &h) in hidden.iter().chain(std::iter::once(&output)).enumerate() {
            layers.push(Linear::new(f, &format!("{name}.{i}"), width, h, true)?);
            width = h;
        }
        Ok(Mlp { layers })
    }

    /// See [`Linear::detached`].
    pub fn detached(&self) -> Self {
        Mlp {
            layers: self.layers.iter().map(Linear::detached).collect(),
        }
    }

    /// Applies the stack (LeakyReLU between layers).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, leaky_relu)
    }

    /// Applies the stack with `activation` between layers.
    pub fn forward_with(
        &self,
        x: &Tensor,
        activation: fn(&Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let mut h = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h)?;
            if i + 1 < self.layers.len() {
                h = activation(&h)?;
            }
        }
        Ok(h)
    }
}

/// ReLU (the paper's code's activation inside its GNN and MLPs).
pub fn relu(x: &Tensor) -> Result<Tensor> {
    Ok(x.relu()?)
}

/// LeakyReLU with slope 0.01 (one fused op, [`super::fused`]).
pub fn leaky_relu(x: &Tensor) -> Result<Tensor> {
    Ok(super::fused::leaky_relu(x)?)
}

/// Layer norm over the last dimension, written out so it has a backward pass.
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

    /// See [`Linear::detached`].
    pub fn detached(&self) -> Self {
        LayerNorm {
            gamma: self.gamma.detach(),
            beta: self.beta.detach(),
        }
    }

    /// Normalises the last dimension.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + 1e-5)?.sqrt()?)?;
        let scaled = super::fused::mul_row(&normed, &self.gamma)?;
        Ok(super::fused::add_row(&scaled, &self.beta)?)
    }
}

//! The NAS-Bench-Suite-Zero proxies at random initialisation, following the
//! reference implementations (`zero-cost-nas` / NASLib): scores summed over
//! all conv and linear weights.
//!
//! | proxy | pass | score |
//! |---|---|---|
//! | grad_norm | CE loss | `sum_l ||dL/dW_l||_2` |
//! | snip | CE loss | `sum |W * dL/dW|` |
//! | plain | CE loss | `sum W * dL/dW` |
//! | fisher | CE loss | `sum_l sum_k 0.5 mean_b (sum_xy act * dL/dact)^2` |
//! | nwot | CE forward | `log|det K|`, K = Hamming-agreement kernel of ReLU codes |
//! | grasp | CE loss at `W +- eps g` | `-sum W * (H g)`, H g by central differences |
//! | jacov | `d sum(logits)/dx` | `-sum_i log(l_i + k) + 1/(l_i + k)`, l = eig(corr(J)) |
//! | epe_nas | same Jacobian | `sum_c |sum log(|corr(J_c)| + k)|` per label class c |
//! | synflow | `sum(logits)` of `|W|` in f64, no BN, all-ones input | `sum |W * dR/dW|` |
//! | l2_norm | none | `sum_l ||W_l||_2` |
//!
//! GraSP's Hessian-gradient product uses a central difference instead of
//! double backpropagation, which candle does not do.

use candle_core::{DType, Device, Tensor, Var};
use nasflat_shared::Nb201Arch;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::linalg::{corrcoef, log_abs_det, symmetric_eigenvalues};
use super::network::{Nb201Net, Nb201Weights, Trace};
use crate::error::{EncodeError, Result};
use crate::params::normal_tensor;

/// The proxies computed here, in output-column order (alphabetical, as in
/// `zcp_subset.csv`).
pub const PROXY_NAMES: [&str; 10] = [
    "epe_nas",
    "fisher",
    "grad_norm",
    "grasp",
    "jacov",
    "l2_norm",
    "nwot",
    "plain",
    "snip",
    "synflow",
];

/// Stabiliser of the Jacobian proxies (the reference's `k = 1e-5`).
const JACOBIAN_K: f64 = 1e-5;

/// Settings of the proxy computation.
#[derive(Debug, Clone, PartialEq)]
pub struct ZcpConfig {
    /// Images in the synthetic batch.
    pub batch: usize,
    /// Classifier outputs (CIFAR-10).
    pub classes: usize,
    /// Input height and width.
    pub resolution: usize,
    /// Seed of the batch and (mixed with the arch index) of the weights.
    pub seed: u64,
    /// Compute GraSP (two extra forward/backward passes).
    pub grasp: bool,
    /// GraSP's finite-difference step, relative: the weights move by
    /// `grasp_step * ||W|| / ||g||` along the gradient `g`.
    pub grasp_step: f64,
}

impl Default for ZcpConfig {
    fn default() -> Self {
        ZcpConfig {
            batch: 8,
            classes: 10,
            resolution: 32,
            seed: 0,
            grasp: true,
            grasp_step: 1e-2,
        }
    }
}

impl ZcpConfig {
    /// Rejects batches the proxies cannot use.
    pub fn validate(&self) -> Result<()> {
        if self.batch < 2 || self.classes == 0 || !self.resolution.is_multiple_of(4) {
            return Err(EncodeError::Invalid {
                what: "zcp config",
                reason: format!(
                    "need batch >= 2, classes >= 1, resolution a multiple of 4: {self:?}"
                ),
            });
        }
        Ok(())
    }

    /// Weight seed of architecture `index`: independent of the order in
    /// which architectures are scored, so a resumed run gives the same values.
    pub fn weight_seed(&self, index: usize) -> u64 {
        self.seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

/// The fixed synthetic batch: standard normal images, labels
/// `i % min(classes, batch / 2)`.
#[derive(Debug, Clone)]
pub struct SyntheticBatch {
    /// `[batch, 3, r, r]`.
    pub images: Tensor,
    /// `[batch]` (u32).
    pub labels: Tensor,
    /// The labels as numbers.
    pub label_ids: Vec<u32>,
}

impl SyntheticBatch {
    /// The batch of `config`.
    pub fn new(config: &ZcpConfig) -> Result<Self> {
        config.validate()?;
        let mut rng = StdRng::seed_from_u64(config.seed);
        let r = config.resolution;
        let images = normal_tensor(&mut rng, &[config.batch, 3, r, r])?;
        // At least two images per label, so that EPE-NAS's per-class
        // correlation is defined for every class present.
        let label_count = config.classes.min(config.batch / 2).max(1);
        let label_ids: Vec<u32> = (0..config.batch)
            .map(|i| (i % label_count) as u32)
            .collect();
        let labels = Tensor::from_vec(label_ids.clone(), config.batch, &Device::Cpu)?;
        Ok(SyntheticBatch {
            images,
            labels,
            label_ids,
        })
    }
}

/// Scores in [`PROXY_NAMES`] order; NaN where a proxy is undefined (e.g. the
/// Jacobian of a cell whose output is always zero).
pub type ProxyScores = [f64; PROXY_NAMES.len()];

/// Position of a proxy in [`PROXY_NAMES`].
fn slot(name: &str) -> usize {
    PROXY_NAMES.iter().position(|&p| p == name).unwrap_or(0)
}

/// All proxies of one architecture at the seeded random init of `index`.
pub fn score_arch(
    arch: &Nb201Arch,
    index: usize,
    batch: &SyntheticBatch,
    config: &ZcpConfig,
) -> Result<ProxyScores> {
    let (weights, _vars) = Nb201Weights::random(arch, config.classes, config.weight_seed(index))?;
    score_weights(arch, &weights, batch, config)
}

/// All proxies of one network with the given weights.
pub fn score_weights(
    arch: &Nb201Arch,
    weights: &Nb201Weights,
    batch: &SyntheticBatch,
    config: &ZcpConfig,
) -> Result<ProxyScores> {
    let net = Nb201Net::new(*arch);
    let mut out = [f64::NAN; PROXY_NAMES.len()];
    out[slot("l2_norm")] = l2_norm(weights)?;

    let b = batch.label_ids.len();
    let mut trace = Trace {
        nwot_kernel: Some(Tensor::zeros((b, b), DType::F64, &Device::Cpu)?),
        fisher_gates: Some(Vec::new()),
        ..Trace::default()
    };
    // One forward pass serves two backward passes: the CE loss's (weight
    // gradients) and `sum(logits)`'s (input Jacobian). The Fisher gates are
    // ones, so they change neither.
    let images = Var::from_tensor(&batch.images)?;
    let logits = net.forward(weights, images.as_tensor(), &mut trace)?;
    let loss = candle_nn::loss::cross_entropy(&logits, &batch.labels)?;
    let grads = loss.backward()?;
    let g: Vec<Tensor> = weights
        .weights
        .iter()
        .map(|w| grads.get(w).cloned().map_or_else(|| w.zeros_like(), Ok))
        .collect::<std::result::Result<_, _>>()?;
    let (mut grad_norm, mut snip, mut plain) = (0.0, 0.0, 0.0);
    for (w, g) in weights.weights.iter().zip(&g) {
        grad_norm += scalar(&g.sqr()?.sum_all()?)?.sqrt();
        let wg = (w * g)?;
        snip += scalar(&wg.abs()?.sum_all()?)?;
        plain += scalar(&wg.sum_all()?)?;
    }
    out[slot("grad_norm")] = grad_norm;
    out[slot("snip")] = snip;
    out[slot("plain")] = plain;
    let mut fisher = 0.0;
    for gate in trace.fisher_gates.iter().flatten() {
        if let Some(gg) = grads.get(gate.as_tensor()) {
            let per_sample = gg.reshape((b, ()))?;
            fisher += 0.5 * scalar(&per_sample.sqr()?.mean(0)?.sum_all()?)?;
        }
    }
    out[slot("fisher")] = fisher;
    if let Some(k) = &trace.nwot_kernel {
        out[slot("nwot")] = finite(log_abs_det(&k.to_vec2::<f64>()?));
    }
    if config.grasp {
        out[slot("grasp")] = grasp(&net, weights, &g, batch, config.grasp_step)?;
    }
    let jacobian = logits.sum_all()?.backward()?.remove(images.as_tensor());
    let (jacov, epe) = jacobian_scores(jacobian.as_ref(), &batch.label_ids)?;
    out[slot("jacov")] = jacov;
    out[slot("epe_nas")] = epe;
    out[slot("synflow")] = synflow(&net, weights, config.resolution)?;
    Ok(out)
}

/// `sum_l ||W_l||_2` over conv and linear weights.
pub fn l2_norm(weights: &Nb201Weights) -> Result<f64> {
    let mut total = 0.0;
    for w in &weights.weights {
        total += scalar(&w.sqr()?.sum_all()?)?.sqrt();
    }
    Ok(total)
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

fn finite(v: f64) -> f64 {
    if v.is_finite() { v } else { f64::NAN }
}

/// Gradient of the CE loss with respect to every weight, at `weights`.
fn ce_grads(net: &Nb201Net, weights: &Nb201Weights, batch: &SyntheticBatch) -> Result<Vec<Tensor>> {
    let logits = net.forward(weights, &batch.images, &mut Trace::default())?;
    let loss = candle_nn::loss::cross_entropy(&logits, &batch.labels)?;
    let grads = loss.backward()?;
    weights
        .weights
        .iter()
        .map(|w| Ok(grads.get(w).cloned().map_or_else(|| w.zeros_like(), Ok)?))
        .collect()
}

/// GraSP: `-sum W * (H g)` with `H g ~ (grad(W + eps g) - grad(W - eps g)) / 2 eps`,
/// `eps` chosen so the step is `step` times the weight norm.
fn grasp(
    net: &Nb201Net,
    weights: &Nb201Weights,
    g: &[Tensor],
    batch: &SyntheticBatch,
    step: f64,
) -> Result<f64> {
    let mut g_sq = 0.0;
    let mut w_sq = 0.0;
    for (w, gi) in weights.weights.iter().zip(g) {
        g_sq += scalar(&gi.sqr()?.sum_all()?)?;
        w_sq += scalar(&w.sqr()?.sum_all()?)?;
    }
    if g_sq <= 0.0 {
        return Ok(0.0);
    }
    let eps = step * (w_sq / g_sq).sqrt();
    let shifted = |sign: f64| -> Result<Vec<Tensor>> {
        let (moved, _vars) = weights.map(|i, t| match g.get(i) {
            Some(gi) => Ok((t + (gi * (sign * eps))?)?),
            None => Ok(t.clone()),
        })?;
        ce_grads(net, &moved, batch)
    };
    let plus = shifted(1.0)?;
    let minus = shifted(-1.0)?;
    let mut total = 0.0;
    for ((w, p), m) in weights.weights.iter().zip(&plus).zip(&minus) {
        let hg = ((p - m)? / (2.0 * eps))?;
        total -= scalar(&(w * hg)?.sum_all()?)?;
    }
    Ok(total)
}

/// `(jacov, epe_nas)` from the input Jacobian `j` of `sum(logits)` (NaN
/// when the input got no gradient).
fn jacobian_scores(j: Option<&Tensor>, label_ids: &[u32]) -> Result<(f64, f64)> {
    let Some(j) = j else {
        return Ok((f64::NAN, f64::NAN));
    };
    let b = label_ids.len();
    let rows: Vec<Vec<f64>> = j.reshape((b, ()))?.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let jacov = match corrcoef(&rows) {
        Some(c) => finite(
            -symmetric_eigenvalues(&c)
                .iter()
                .map(|&v| (v + JACOBIAN_K).ln() + 1.0 / (v + JACOBIAN_K))
                .sum::<f64>(),
        ),
        None => f64::NAN,
    };
    let mut epe = 0.0;
    let mut any = false;
    let mut classes: Vec<u32> = label_ids.to_vec();
    classes.sort_unstable();
    classes.dedup();
    for c in classes {
        let members: Vec<Vec<f64>> = rows
            .iter()
            .zip(label_ids)
            .filter(|(_, l)| **l == c)
            .map(|(r, _)| r.clone())
            .collect();
        if members.len() < 2 {
            continue;
        }
        let Some(corr) = corrcoef(&members) else {
            return Ok((jacov, f64::NAN));
        };
        let s: f64 = corr
            .iter()
            .flatten()
            .map(|v| (v.abs() + JACOBIAN_K).ln())
            .sum();
        epe += s.abs();
        any = true;
    }
    Ok((jacov, if any { finite(epe) } else { f64::NAN }))
}

/// SynFlow: the network with `|W|` (and `|bias|`) in f64, batch norm
/// removed, on one all-ones image; `sum |W * d sum(logits) / dW|`.
fn synflow(net: &Nb201Net, weights: &Nb201Weights, resolution: usize) -> Result<f64> {
    let (abs, _vars) = weights.map(|_, t| Ok(t.abs()?.to_dtype(DType::F64)?))?;
    let x = Tensor::ones((1, 3, resolution, resolution), DType::F64, &Device::Cpu)?;
    let mut trace = Trace {
        no_batch_norm: true,
        ..Trace::default()
    };
    let logits = net.forward(&abs, &x, &mut trace)?;
    let grads = logits.sum_all()?.backward()?;
    let mut total = 0.0;
    for w in &abs.weights {
        if let Some(g) = grads.get(w) {
            total += (w * g)?.abs()?.sum_all()?.to_scalar::<f64>()?;
        }
    }
    Ok(finite(total))
}

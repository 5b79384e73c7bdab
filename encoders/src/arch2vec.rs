//! Arch2Vec (Yan et al., NeurIPS 2020): a variational graph autoencoder
//! whose GIN encoder maps each node to a latent Gaussian and whose decoders
//! reconstruct the op of every node and the adjacency (inner product of the
//! node latents). The architecture's embedding is the node-mean of the
//! latent means, as in arch2vec's own code. Paper Section 4 uses it as a
//! sampler and supplementary encoding.

use candle_core::{D, Tensor};
use candle_nn::VarMap;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::error::{EncodeError, Result};
use crate::graphs::SpaceGraphs;
use crate::params::{Linear, ParamFactory, argmax_rows, normal_tensor, weighted_cross_entropy};
use crate::training::{TrainReport, adam, progress, run_epochs};

/// Hyper-parameters of an Arch2Vec run.
#[derive(Debug, Clone, PartialEq)]
pub struct Arch2VecConfig {
    /// Latent width per node (= embedding width).
    pub latent: usize,
    /// GIN hidden width.
    pub hidden: usize,
    /// GIN layers (message-passing hops).
    pub layers: usize,
    /// Passes over all architectures.
    pub epochs: usize,
    /// Graphs per step.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Weight of the KL term (per latent entry) against the reconstruction.
    pub kl_weight: f64,
    /// Seed of the weights, batch order and reparameterisation noise.
    pub seed: u64,
}

impl Arch2VecConfig {
    /// Defaults sized for a few minutes on one core.
    pub fn for_space(graphs: &SpaceGraphs, seed: u64) -> Self {
        // NB201 reconstructs its ops almost perfectly within the shorter
        // run (docs/experiments/encodings.md); FBNet has a third of the
        // graphs, so twice the passes.
        let epochs = if graphs.len() > 10_000 { 20 } else { 40 };
        Arch2VecConfig {
            latent: 32,
            hidden: 64,
            layers: 4,
            epochs,
            batch_size: 64,
            lr: 1e-3,
            kl_weight: 0.01,
            seed,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.latent == 0 || self.hidden == 0 || self.layers == 0 || self.batch_size == 0 {
            return Err(EncodeError::Invalid {
                what: "arch2vec config",
                reason: format!("widths, layers and batch size must be positive: {self:?}"),
            });
        }
        Ok(())
    }
}

/// A trained (or freshly initialised) Arch2Vec model.
pub struct Arch2Vec {
    gin: Vec<(Linear, Linear)>,
    mu: Linear,
    logvar: Linear,
    op_decoder: Linear,
    varmap: VarMap,
}

impl Arch2Vec {
    /// Seeded initialisation for a space with `vocab` op ids.
    pub fn new(config: &Arch2VecConfig, vocab: usize) -> Result<Self> {
        config.validate()?;
        let varmap = VarMap::new();
        let mut f = ParamFactory::new(&varmap, config.seed);
        let mut gin = Vec::with_capacity(config.layers);
        let mut width = vocab;
        for l in 0..config.layers {
            let a = Linear::new(&mut f, &format!("gin{l}.0"), width, config.hidden, true)?;
            let b = Linear::new(
                &mut f,
                &format!("gin{l}.1"),
                config.hidden,
                config.hidden,
                true,
            )?;
            gin.push((a, b));
            width = config.hidden;
        }
        let mu = Linear::new(&mut f, "mu", config.hidden, config.latent, true)?;
        let logvar = Linear::new(&mut f, "logvar", config.hidden, config.latent, true)?;
        let op_decoder = Linear::new(&mut f, "op_decoder", config.latent, vocab, true)?;
        Ok(Arch2Vec {
            gin,
            mu,
            logvar,
            op_decoder,
            varmap,
        })
    }

    /// The trainable variables.
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// GIN-0 encoder: `h <- MLP(h + (A + A^T) h)`, then the two Gaussian
    /// heads; returns `(mu, logvar)`, each `[batch, nodes, latent]`.
    fn encode(&self, graphs: &SpaceGraphs, batch: &[usize]) -> Result<(Tensor, Tensor)> {
        let adj = graphs.adjacency(batch)?;
        let sym = (&adj + adj.transpose(1, 2)?)?;
        let mut h = graphs.one_hot_ops(batch)?;
        for (a, b) in &self.gin {
            let agg = (&h + sym.matmul(&h)?)?;
            h = b.forward(&a.forward(&agg)?.relu()?)?.relu()?;
        }
        Ok((self.mu.forward(&h)?, self.logvar.forward(&h)?))
    }

    /// Op logits `[batch * nodes, vocab]` and adjacency logits
    /// `[batch, nodes, nodes]` decoded from node latents `z`.
    fn decode(&self, z: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, n, l) = z.dims3()?;
        let ops = self.op_decoder.forward(&z.reshape((b * n, l))?)?;
        let adj = z.matmul(&z.transpose(1, 2)?.contiguous()?)?;
        Ok((ops, adj))
    }

    /// ELBO loss of one batch: op cross-entropy + adjacency BCE over the
    /// upper triangle + `kl_weight` x KL(q(z|G) || N(0, I)).
    pub fn loss(
        &self,
        graphs: &SpaceGraphs,
        batch: &[usize],
        kl_weight: f64,
        rng: &mut StdRng,
    ) -> Result<Tensor> {
        let (mu, logvar) = self.encode(graphs, batch)?;
        let noise = normal_tensor(rng, mu.dims())?;
        let z = (&mu + (noise * (&logvar * 0.5)?.exp()?)?)?;
        let (op_logits, adj_logits) = self.decode(&z)?;
        let targets = graphs.ops(batch)?.flatten_all()?;
        let ones = Tensor::ones(targets.dims(), candle_core::DType::F32, targets.device())?;
        let op_loss = weighted_cross_entropy(&op_logits, &targets, &ones)?;
        let adj_loss = upper_bce(&adj_logits, &graphs.adjacency(batch)?)?;
        let kl = ((logvar.exp()? + mu.sqr()?)? - &logvar)?
            .affine(1.0, -1.0)?
            .mean_all()?
            .affine(0.5, 0.0)?;
        Ok(((op_loss + adj_loss)? + (kl * kl_weight)?)?)
    }

    /// 32-d (= latent) embedding per architecture: node-mean of `mu`.
    pub fn embed(&self, graphs: &SpaceGraphs) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(graphs.len());
        let all: Vec<usize> = (0..graphs.len()).collect();
        for chunk in all.chunks(1024) {
            let (mu, _) = self.encode(graphs, chunk)?;
            out.extend(mu.mean(1)?.to_vec2::<f32>()?);
        }
        Ok(out)
    }

    /// Reconstruction accuracy from the latent means over all graphs:
    /// `(op accuracy over nodes, adjacency accuracy over upper-triangle pairs)`.
    pub fn reconstruction_accuracy(&self, graphs: &SpaceGraphs) -> Result<(f64, f64)> {
        let (mut op_hits, mut op_total, mut adj_hits, mut adj_total) =
            (0usize, 0usize, 0usize, 0usize);
        let all: Vec<usize> = (0..graphs.len()).collect();
        let n = graphs.nodes;
        for chunk in all.chunks(1024) {
            let (mu, _) = self.encode(graphs, chunk)?;
            let (op_logits, adj_logits) = self.decode(&mu)?;
            let predicted = argmax_rows(&op_logits)?;
            let truth = graphs.ops(chunk)?.flatten_all()?.to_vec1::<u32>()?;
            op_hits += predicted.iter().zip(&truth).filter(|(p, t)| p == t).count();
            op_total += truth.len();
            let logits = adj_logits.flatten_all()?.to_vec1::<f32>()?;
            let target = graphs.adjacency(chunk)?.flatten_all()?.to_vec1::<f32>()?;
            for b in 0..chunk.len() {
                for i in 0..n {
                    for j in i + 1..n {
                        let k = (b * n + i) * n + j;
                        adj_hits += usize::from((logits[k] > 0.0) == (target[k] > 0.5));
                        adj_total += 1;
                    }
                }
            }
        }
        Ok((
            op_hits as f64 / op_total.max(1) as f64,
            adj_hits as f64 / adj_total.max(1) as f64,
        ))
    }
}

/// Mean BCE-with-logits over the strict upper triangle (`i < j`): the
/// graphs are DAGs in topological order, so only those entries can be 1.
fn upper_bce(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    let n = logits.dim(D::Minus1)?;
    let mask: Vec<f32> = (0..n * n)
        .map(|k| if k / n < k % n { 1.0 } else { 0.0 })
        .collect();
    let mask = Tensor::from_vec(mask, (n, n), logits.device())?;
    let pos = logits.relu()?;
    let softplus = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    let loss = ((pos - (logits * target)?)? + softplus)?;
    let masked = loss.broadcast_mul(&mask)?;
    let count = (logits.dim(0)? * n * (n - 1) / 2).max(1) as f64;
    Ok((masked.sum_all()? / count)?)
}

/// Trains Arch2Vec on every graph of `graphs` and reports loss per epoch,
/// wall time and reconstruction accuracy.
pub fn train_arch2vec(
    graphs: &SpaceGraphs,
    config: &Arch2VecConfig,
    show_progress: bool,
) -> Result<(Arch2Vec, TrainReport)> {
    let model = Arch2Vec::new(config, graphs.vocab)?;
    let mut rng = StdRng::seed_from_u64(config.seed.wrapping_add(1));
    let mut opt = adam(model.varmap(), config.lr)?;
    let steps = config.epochs * graphs.len().div_ceil(config.batch_size);
    let bar = progress(steps, "arch2vec", show_progress);
    let (epoch_losses, seconds) = run_epochs(
        graphs.len(),
        config.epochs,
        config.batch_size,
        &mut rng,
        &mut opt,
        &bar,
        |batch, rng| model.loss(graphs, batch, config.kl_weight, rng),
    )?;
    let (ops, adj) = model.reconstruction_accuracy(graphs)?;
    let report = TrainReport {
        epoch_losses,
        seconds,
        accuracies: vec![
            ("op_reconstruction".into(), ops),
            ("adjacency_reconstruction".into(), adj),
        ],
    };
    Ok((model, report))
}

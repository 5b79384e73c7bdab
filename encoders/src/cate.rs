//! CATE (Yan et al., ICML 2021): a transformer encoder over the op sequence
//! trained on pairs of computationally similar architectures with a
//! masked-op objective: some ops of the first architecture are replaced by a
//! mask token and predicted from both architectures at once. The
//! architecture's embedding is the node-mean of the encoder output.
//!
//! Tokens are node ops plus a learned position (node index) and segment
//! (first/second architecture) embedding. Attention inside an architecture
//! follows its graph (each node sees itself and its direct predecessors and
//! successors, CATE's adjacency-aware mask); attention across the pair is
//! unrestricted. "Computationally similar" = same bucket of consecutive
//! FLOPs ranks (ties broken by params).

use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarMap;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{EncodeError, Result};
use crate::graphs::SpaceGraphs;
use crate::params::{LayerNorm, Linear, ParamFactory, argmax_rows, weighted_cross_entropy};
use crate::training::{TrainReport, adam, progress, run_epochs};

/// Attention logit added where attention is not allowed.
const BLOCKED: f32 = -1e9;

/// Hyper-parameters of a CATE run.
#[derive(Debug, Clone, PartialEq)]
pub struct CateConfig {
    /// Model width (= embedding width).
    pub d_model: usize,
    /// Attention heads.
    pub heads: usize,
    /// Encoder layers.
    pub layers: usize,
    /// Feed-forward hidden width.
    pub ffn: usize,
    /// Passes over all architectures (each is the first of one pair per pass).
    pub epochs: usize,
    /// Pairs per step.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Probability that an op node of the first architecture is masked
    /// (at least one always is).
    pub mask_prob: f64,
    /// Architectures per FLOPs bucket.
    pub bucket_size: usize,
    /// Share of architectures held out as first-of-pair for the masked accuracy.
    pub holdout: f64,
    /// Seed of the weights, pairs and masks.
    pub seed: u64,
}

impl CateConfig {
    /// Defaults sized for a few minutes on one core.
    pub fn for_space(graphs: &SpaceGraphs, seed: u64) -> Self {
        let epochs = if graphs.len() > 10_000 { 15 } else { 30 };
        CateConfig {
            d_model: 32,
            heads: 2,
            layers: 2,
            ffn: 64,
            epochs,
            batch_size: 64,
            lr: 1e-3,
            mask_prob: 0.2,
            bucket_size: 32,
            holdout: 0.05,
            seed,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.d_model == 0
            || self.heads == 0
            || !self.d_model.is_multiple_of(self.heads)
            || self.layers == 0
            || self.batch_size == 0
            || self.bucket_size < 2
        {
            return Err(EncodeError::Invalid {
                what: "cate config",
                reason: format!(
                    "need d_model divisible by heads, positive sizes, bucket_size >= 2: {self:?}"
                ),
            });
        }
        Ok(())
    }
}

struct EncoderLayer {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    norm1: LayerNorm,
    ff1: Linear,
    ff2: Linear,
    norm2: LayerNorm,
}

/// A trained (or freshly initialised) CATE encoder.
pub struct Cate {
    token: Tensor,
    position: Tensor,
    segment: Tensor,
    layers: Vec<EncoderLayer>,
    head: Linear,
    heads: usize,
    vocab: usize,
    varmap: VarMap,
}

/// A batch of token sequences with their attention bias.
struct Sequences {
    tokens: Tensor,
    positions: Tensor,
    segments: Tensor,
    bias: Tensor,
}

impl Cate {
    /// Seeded initialisation for `nodes`-node graphs with `vocab` op ids
    /// (the mask token is id `vocab`).
    pub fn new(config: &CateConfig, vocab: usize, nodes: usize) -> Result<Self> {
        config.validate()?;
        let varmap = VarMap::new();
        let mut f = ParamFactory::new(&varmap, config.seed);
        let d = config.d_model;
        let token = f.uniform("token", &[vocab + 1, d], 1.0)?;
        let position = f.uniform("position", &[nodes, d], 1.0)?;
        let segment = f.uniform("segment", &[2, d], 1.0)?;
        let mut layers = Vec::with_capacity(config.layers);
        for l in 0..config.layers {
            layers.push(EncoderLayer {
                q: Linear::new(&mut f, &format!("l{l}.q"), d, d, true)?,
                k: Linear::new(&mut f, &format!("l{l}.k"), d, d, true)?,
                v: Linear::new(&mut f, &format!("l{l}.v"), d, d, true)?,
                o: Linear::new(&mut f, &format!("l{l}.o"), d, d, true)?,
                norm1: LayerNorm::new(&mut f, &format!("l{l}.norm1"), d)?,
                ff1: Linear::new(&mut f, &format!("l{l}.ff1"), d, config.ffn, true)?,
                ff2: Linear::new(&mut f, &format!("l{l}.ff2"), config.ffn, d, true)?,
                norm2: LayerNorm::new(&mut f, &format!("l{l}.norm2"), d)?,
            });
        }
        let head = Linear::new(&mut f, "head", d, vocab, true)?;
        Ok(Cate {
            token,
            position,
            segment,
            layers,
            head,
            heads: config.heads,
            vocab,
            varmap,
        })
    }

    /// The trainable variables.
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// Post-norm transformer encoder; returns `[batch, tokens, d_model]`.
    fn encode(&self, seq: &Sequences) -> Result<Tensor> {
        let (b, t) = seq.tokens.dims2()?;
        let d = self.token.dim(1)?;
        let emb = |table: &Tensor, ids: &Tensor| -> Result<Tensor> {
            Ok(table
                .index_select(&ids.flatten_all()?, 0)?
                .reshape((b, t, d))?)
        };
        let mut h = ((emb(&self.token, &seq.tokens)? + emb(&self.position, &seq.positions)?)?
            + emb(&self.segment, &seq.segments)?)?;
        let hd = d / self.heads;
        let scale = 1.0 / (hd as f64).sqrt();
        for layer in &self.layers {
            let split = |x: Tensor| -> Result<Tensor> {
                Ok(x.reshape((b, t, self.heads, hd))?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let q = split(layer.q.forward(&h)?)?;
            let k = split(layer.k.forward(&h)?)?;
            let v = split(layer.v.forward(&h)?)?;
            let scores = (q.matmul(&k.transpose(2, 3)?.contiguous()?)? * scale)?
                .broadcast_add(&seq.bias.unsqueeze(1)?)?;
            let attn = candle_nn::ops::softmax(&scores, D::Minus1)?;
            let ctx = attn
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b, t, d))?;
            h = layer.norm1.forward(&(h + layer.o.forward(&ctx)?)?)?;
            let ff = layer.ff2.forward(&layer.ff1.forward(&h)?.relu()?)?;
            h = layer.norm2.forward(&(h + ff)?)?;
        }
        Ok(h)
    }

    /// Masked-op loss of one batch of pairs (`firsts[i]` masked, paired with
    /// `partners[i]`); returns `(loss, correct predictions, masked tokens)`.
    pub fn pair_loss(
        &self,
        graphs: &SpaceGraphs,
        firsts: &[usize],
        partners: &[usize],
        mask_prob: f64,
        rng: &mut StdRng,
    ) -> Result<(Tensor, usize, usize)> {
        let n = graphs.nodes;
        let t = 2 * n;
        let b = firsts.len();
        let mut tokens = Vec::with_capacity(b * t);
        let mut targets = Vec::with_capacity(b * t);
        let mut weights = Vec::with_capacity(b * t);
        let mut bias = Vec::with_capacity(b * t * t);
        for (&a, &p) in firsts.iter().zip(partners) {
            let ops_a = &graphs.graphs[a].ops;
            // Only op nodes (not input/output) are masked: their ids are the
            // architecture; the end nodes are the same everywhere.
            let mut masked: Vec<bool> = (0..n)
                .map(|i| i > 0 && i + 1 < n && rng.random::<f64>() < mask_prob)
                .collect();
            if !masked.iter().any(|&m| m) {
                let pick = 1 + rng.random_range(0..n - 2);
                masked[pick] = true;
            }
            for i in 0..n {
                tokens.push(if masked[i] {
                    self.vocab as u32
                } else {
                    ops_a[i] as u32
                });
                targets.push(ops_a[i] as u32);
                weights.push(if masked[i] { 1f32 } else { 0.0 });
            }
            for &op in &graphs.graphs[p].ops {
                tokens.push(op as u32);
                targets.push(op as u32);
                weights.push(0.0);
            }
            let mask_a = graphs.undirected_with_self(a);
            let mask_p = graphs.undirected_with_self(p);
            for i in 0..t {
                for j in 0..t {
                    let allowed = match (i < n, j < n) {
                        (true, true) => mask_a[i * n + j],
                        (false, false) => mask_p[(i - n) * n + (j - n)],
                        _ => true,
                    };
                    bias.push(if allowed { 0.0 } else { BLOCKED });
                }
            }
        }
        let positions: Vec<u32> = (0..b)
            .flat_map(|_| (0..t).map(|i| (i % n) as u32))
            .collect();
        let segments: Vec<u32> = (0..b)
            .flat_map(|_| (0..t).map(|i| u32::from(i >= n)))
            .collect();
        let dev = Device::Cpu;
        let seq = Sequences {
            tokens: Tensor::from_vec(tokens, (b, t), &dev)?,
            positions: Tensor::from_vec(positions, (b, t), &dev)?,
            segments: Tensor::from_vec(segments, (b, t), &dev)?,
            bias: Tensor::from_vec(bias, (b, t, t), &dev)?,
        };
        let h = self.encode(&seq)?;
        let d = h.dim(2)?;
        let logits = self.head.forward(&h.reshape((b * t, d))?)?;
        let target_t = Tensor::from_vec(targets.clone(), b * t, &dev)?;
        let weight_t = Tensor::from_vec(weights.clone(), b * t, &dev)?;
        let loss = weighted_cross_entropy(&logits, &target_t, &weight_t)?;
        let predicted = argmax_rows(&logits.detach())?;
        let mut hits = 0;
        let mut total = 0;
        for k in 0..b * t {
            if weights[k] > 0.0 {
                total += 1;
                hits += usize::from(predicted[k] == targets[k]);
            }
        }
        Ok((loss, hits, total))
    }

    /// `d_model`-wide embedding per architecture: node-mean of the encoder
    /// output for the architecture alone (segment 0, graph attention).
    pub fn embed(&self, graphs: &SpaceGraphs) -> Result<Vec<Vec<f32>>> {
        let n = graphs.nodes;
        let dev = Device::Cpu;
        let mut out = Vec::with_capacity(graphs.len());
        let all: Vec<usize> = (0..graphs.len()).collect();
        for chunk in all.chunks(512) {
            let b = chunk.len();
            let tokens: Vec<u32> = chunk
                .iter()
                .flat_map(|&i| graphs.graphs[i].ops.iter().map(|&o| o as u32))
                .collect();
            let positions: Vec<u32> = (0..b).flat_map(|_| (0..n).map(|i| i as u32)).collect();
            let bias: Vec<f32> = chunk
                .iter()
                .flat_map(|&i| {
                    graphs
                        .undirected_with_self(i)
                        .into_iter()
                        .map(|a| if a { 0.0 } else { BLOCKED })
                })
                .collect();
            let seq = Sequences {
                tokens: Tensor::from_vec(tokens, (b, n), &dev)?,
                positions: Tensor::from_vec(positions, (b, n), &dev)?,
                segments: Tensor::zeros((b, n), DType::U32, &dev)?,
                bias: Tensor::from_vec(bias, (b, n, n), &dev)?,
            };
            out.extend(self.encode(&seq)?.mean(1)?.to_vec2::<f32>()?);
        }
        Ok(out)
    }
}

/// Buckets of `bucket_size` consecutive architectures in (FLOPs, params)
/// order; returns the bucket id of every architecture.
pub fn flops_buckets(flops: &[f64], params: &[f64], bucket_size: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..flops.len()).collect();
    order.sort_by(|&a, &b| {
        flops[a]
            .total_cmp(&flops[b])
            .then(params[a].total_cmp(&params[b]))
            .then(a.cmp(&b))
    });
    let mut bucket = vec![0; flops.len()];
    for (rank, &i) in order.iter().enumerate() {
        bucket[i] = rank / bucket_size.max(1);
    }
    bucket
}

/// A random partner from the same bucket (never the architecture itself
/// unless it is alone in its bucket).
fn partner(i: usize, members: &[Vec<usize>], bucket: &[usize], rng: &mut StdRng) -> usize {
    let m = &members[bucket[i]];
    if m.len() < 2 {
        return i;
    }
    loop {
        let p = m[rng.random_range(0..m.len())];
        if p != i {
            return p;
        }
    }
}

/// Trains CATE on pairs drawn from `buckets` (see [`flops_buckets`]) and
/// reports loss per epoch, wall time and held-out masked-op accuracy.
pub fn train_cate(
    graphs: &SpaceGraphs,
    buckets: &[usize],
    config: &CateConfig,
    show_progress: bool,
) -> Result<(Cate, TrainReport)> {
    if buckets.len() != graphs.len() {
        return Err(EncodeError::Invalid {
            what: "cate buckets",
            reason: format!("{} buckets for {} graphs", buckets.len(), graphs.len()),
        });
    }
    let model = Cate::new(config, graphs.vocab, graphs.nodes)?;
    let mut rng = StdRng::seed_from_u64(config.seed.wrapping_add(1));
    let n_buckets = buckets.iter().copied().max().map_or(0, |m| m + 1);
    let mut members = vec![Vec::new(); n_buckets];
    for (i, &b) in buckets.iter().enumerate() {
        members[b].push(i);
    }
    // Held-out first-of-pair architectures: every k-th index, so the split
    // is spread over the whole FLOPs range.
    let stride = if config.holdout > 0.0 {
        ((1.0 / config.holdout).round() as usize).max(2)
    } else {
        usize::MAX
    };
    let (held, train): (Vec<usize>, Vec<usize>) =
        (0..graphs.len()).partition(|i| i % stride == stride - 1);
    let mut opt = adam(model.varmap(), config.lr)?;
    let steps = config.epochs * train.len().div_ceil(config.batch_size);
    let bar = progress(steps, "cate", show_progress);
    let (epoch_losses, seconds) = run_epochs(
        train.len(),
        config.epochs,
        config.batch_size,
        &mut rng,
        &mut opt,
        &bar,
        |batch, rng| {
            let firsts: Vec<usize> = batch.iter().map(|&k| train[k]).collect();
            let partners: Vec<usize> = firsts
                .iter()
                .map(|&i| partner(i, &members, buckets, rng))
                .collect();
            Ok(model
                .pair_loss(graphs, &firsts, &partners, config.mask_prob, rng)?
                .0)
        },
    )?;
    let mut eval_rng = StdRng::seed_from_u64(config.seed.wrapping_add(2));
    let (mut hits, mut total) = (0, 0);
    for chunk in held.chunks(256) {
        let partners: Vec<usize> = chunk
            .iter()
            .map(|&i| partner(i, &members, buckets, &mut eval_rng))
            .collect();
        let (_, h, t) =
            model.pair_loss(graphs, chunk, &partners, config.mask_prob, &mut eval_rng)?;
        hits += h;
        total += t;
    }
    let report = TrainReport {
        epoch_losses,
        seconds,
        accuracies: vec![(
            "masked_op_heldout".into(),
            hits as f64 / total.max(1) as f64,
        )],
    };
    Ok((model, report))
}

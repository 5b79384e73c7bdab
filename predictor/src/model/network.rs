//! The NASFLAT predictor (paper Fig. 3, Appendix A.4.5).
//!
//! op embedding ++ hardware embedding (per node, "OPHW", Section 5.1)
//! -> op-HW GNN (DGF, [128, 128]) -> MLP ([128]) back to `op_dim`
//! -> main GNN (DGF and/or GAT, [128, 128, 128]) gated by those embeddings
//! -> output-node embedding ++ supplementary encoding -> MLP head -> score.
//!
//! That is the network of the paper's text ([`NetworkForm::Text`]); the
//! one its released code computes ([`NetworkForm::Code`]) lives in
//! [`super::code_net`] and shares the embedding tables and the head.

use candle_core::{DType, Device, IndexOp, Tensor, Var};
use candle_nn::VarMap;
use nasflat_shared::{Arch, ArchGraph, SearchSpace};

use super::code_net::CodeBody;
use super::config::{GnnKind, NetworkForm, PAPER_SUPPLEMENTARY_OUT, PredictorConfig};
use super::edgeless::NodeSet;
use super::gnn::{DgfLayer, GatLayer};
use super::layers::{Mlp, ParamFactory};
use super::memo::{Level, Step, needed_positions};
use crate::error::{PredictorError, Result};
use crate::features::{ArchFeatures, NODE_FEATURES};

/// Name of the hardware embedding table in the variable map.
const HW_EMB: &str = "hw_emb";

/// Most graphs per memoised prediction pass ([`Predictor::predict`]).
/// Bigger passes share more node states, but the states that dominate the
/// work (the readout node's) are distinct per graph anyway; at this size an
/// activation is ~2 MB (4,096 x 128 floats), far below glibc's mmap
/// threshold, so buffers are reused instead of page-faulted in. The NB201
/// space takes four passes, spread over the cores.
pub const PREDICT_CHUNK_GRAPHS: usize = 4_096;

/// Most graphs per dense prediction pass of the code's network: every
/// node state is computed per graph there, so an FBNet activation of this
/// many graphs is already 12 MB (24 nodes x 1,024 x 128 floats).
pub const CODE_PREDICT_CHUNK_GRAPHS: usize = 1_024;

/// One batch of graphs of a space, all tensors on the CPU.
#[derive(Debug, Clone)]
pub struct GraphBatch {
    /// Op id per node, node-major `[N, B]` u32.
    pub ops: Tensor,
    /// Standardised per-node costs, node-major `[N, B, NODE_FEATURES]`.
    pub node_features: Tensor,
    /// Supplementary encoding, `[B, S]` (absent when `S = 0`).
    pub supplementary: Option<Tensor>,
    /// Hardware-embedding row per graph, `[B]` u32.
    pub devices: Tensor,
}

impl GraphBatch {
    /// Gathers rows of the feature tables; every graph is paired with `device`.
    pub fn build(
        features: &ArchFeatures,
        config: &PredictorConfig,
        rows: &[usize],
        device: usize,
    ) -> Result<Self> {
        Self::build_mixed(features, config, rows, &vec![device; rows.len()])
    }

    /// Gathers rows of the feature tables, graph `i` paired with hardware
    /// row `devices[i]` (the paper's pretraining batches mix devices).
    pub fn build_mixed(
        features: &ArchFeatures,
        config: &PredictorConfig,
        rows: &[usize],
        devices: &[usize],
    ) -> Result<Self> {
        if devices.len() != rows.len() {
            return Err(PredictorError::input(
                "batch devices",
                format!("one per graph ({})", rows.len()),
                devices.len().to_string(),
            ));
        }
        let n = features.nodes;
        let b = rows.len();
        let mut ops = vec![0u32; b * n];
        let mut nf = vec![0f32; b * n * NODE_FEATURES];
        let mut supp = Vec::new();
        for (bi, &r) in rows.iter().enumerate() {
            if r >= features.len {
                return Err(PredictorError::input(
                    "row",
                    format!("< {}", features.len),
                    r.to_string(),
                ));
            }
            for node in 0..n {
                ops[node * b + bi] = features.ops[r * n + node];
                let src = (r * n + node) * NODE_FEATURES;
                let dst = (node * b + bi) * NODE_FEATURES;
                nf[dst..dst + NODE_FEATURES]
                    .copy_from_slice(&features.node_features[src..src + NODE_FEATURES]);
            }
            features.push_supplementary(config.supplementary, r, &mut supp);
        }
        let dim = features.supplementary_dim(config.supplementary);
        let cpu = Device::Cpu;
        Ok(GraphBatch {
            ops: Tensor::from_vec(ops, (n, b), &cpu)?,
            node_features: Tensor::from_vec(nf, (n, b, NODE_FEATURES), &cpu)?,
            supplementary: if dim > 0 {
                Some(Tensor::from_vec(supp, (b, dim), &cpu)?)
            } else {
                None
            },
            devices: Tensor::from_vec(devices.iter().map(|&d| d as u32).collect(), b, &cpu)?,
        })
    }
}

/// The network's tensors: embeddings, GNN layers and head.
struct Network {
    op_emb: Tensor,
    hw_emb: Tensor,
    /// What sits between the embeddings and the head.
    body: Body,
    /// The paper's supplementary embedder, when configured.
    supplementary: Option<Mlp>,
    head: Mlp,
}

/// The GNN part of either network form ([`NetworkForm`]).
enum Body {
    Text(TextBody),
    Code(CodeBody),
}

/// The network the paper's text describes.
struct TextBody {
    node_emb: Tensor,
    ophw_gnn: Vec<DgfLayer>,
    ophw_mlp: Option<Mlp>,
    dgf: Vec<DgfLayer>,
    gat: Vec<GatLayer>,
}

impl TextBody {
    fn detached(&self) -> TextBody {
        TextBody {
            node_emb: self.node_emb.detach(),
            ophw_gnn: self.ophw_gnn.iter().map(DgfLayer::detached).collect(),
            ophw_mlp: self.ophw_mlp.as_ref().map(Mlp::detached),
            dgf: self.dgf.iter().map(DgfLayer::detached).collect(),
            gat: self.gat.iter().map(GatLayer::detached).collect(),
        }
    }
}

impl Network {
    /// The same network outside autograd, sharing the weights' storage
    /// (see [`super::layers::Linear::detached`]), for inference.
    fn detached(&self) -> Network {
        Network {
            op_emb: self.op_emb.detach(),
            hw_emb: self.hw_emb.detach(),
            body: match &self.body {
                Body::Text(t) => Body::Text(t.detached()),
                Body::Code(c) => Body::Code(c.detached()),
            },
            supplementary: self.supplementary.as_ref().map(Mlp::detached),
            head: self.head.detached(),
        }
    }
}

/// The supplementary encoding as the head sees it: through the paper's
/// embedder when the network has one, raw otherwise.
fn embed_supplementary(net: &Network, raw: &Tensor) -> Result<Tensor> {
    match &net.supplementary {
        Some(mlp) => mlp.forward(raw),
        None => Ok(raw.clone()),
    }
}

/// The text form's layers, and the width of the graph state its
/// readouts give the head (both branches' when DGF and GAT run side by
/// side). Variable names predate [`NetworkForm`], so saved weights load.
fn text_body(
    f: &mut ParamFactory<'_>,
    config: &PredictorConfig,
    node_emb: Tensor,
) -> Result<(Body, usize)> {
    let extra = if config.node_costs { NODE_FEATURES } else { 0 };
    let mut ophw_gnn = Vec::new();
    let mut ophw_mlp = None;
    if config.ophw {
        let mut width = config.op_dim + config.hw_dim + extra;
        for (i, &w) in config.ophw_gnn.iter().enumerate() {
            let name = format!("ophw_gnn.{i}");
            ophw_gnn.push(DgfLayer::new(f, &name, width, w, config.op_dim + extra)?);
            width = w;
        }
        ophw_mlp = Some(Mlp::new(
            f,
            "ophw_mlp",
            width,
            &config.ophw_mlp,
            config.op_dim,
        )?);
    }
    let gate_dim = config.op_dim + extra;
    let mut dgf = Vec::new();
    let mut gat = Vec::new();
    let mut width = config.node_dim;
    for (i, &w) in config.gnn.iter().enumerate() {
        if config.gnn_kind != GnnKind::Gat {
            dgf.push(DgfLayer::new(f, &format!("dgf.{i}"), width, w, gate_dim)?);
        }
        if config.gnn_kind != GnnKind::Dgf {
            gat.push(GatLayer::new(f, &format!("gat.{i}"), width, w, gate_dim)?);
        }
        width = w;
    }
    let branches = if config.gnn_kind == GnnKind::Ensemble {
        2
    } else {
        1
    };
    let body = TextBody {
        node_emb,
        ophw_gnn,
        ophw_mlp,
        dgf,
        gat,
    };
    Ok((Body::Text(body), branches * width))
}

/// The aggregation matrix (`agg[j][i] = 1` iff `i` feeds `j`), the text
/// form's attention mask (0 for a node itself and its predecessors) and
/// each node's predecessors. The code's FBNet graphs have no edges but
/// every node's own (`adj = np.eye(...)`), so there aggregation is the
/// identity and only attention mixes layers.
type GraphMatrices = (Vec<f32>, Vec<f32>, Vec<Vec<usize>>);

/// Whether the model sees the space's graphs as edgeless (the code's
/// network on FBNet): then a training or prediction pass groups each
/// graph's nodes ([`super::edgeless`]).
fn is_edgeless(config: &PredictorConfig, space: SearchSpace) -> bool {
    config.network == NetworkForm::Code && space == SearchSpace::Fbnet
}

fn graph_matrices(
    config: &PredictorConfig,
    space: SearchSpace,
    nodes: usize,
) -> Result<GraphMatrices> {
    let mut agg = vec![0f32; nodes * nodes];
    let mut mask = vec![-1e9f32; nodes * nodes];
    let mut preds = vec![Vec::new(); nodes];
    if is_edgeless(config, space) {
        for i in 0..nodes {
            agg[i * nodes + i] = 1.0;
            mask[i * nodes + i] = 0.0;
        }
        return Ok((agg, mask, preds));
    }
    let graph = Arch::from_index(space, 0)?.graph();
    for i in 0..nodes {
        mask[i * nodes + i] = 0.0;
        for j in 0..nodes {
            if graph.adjacency[i][j] != 0 {
                agg[j * nodes + i] = 1.0;
                mask[j * nodes + i] = 0.0;
                preds[j].push(i);
            }
        }
    }
    Ok((agg, mask, preds))
}

/// The latency predictor: embeddings, GNNs and head, with its device list.
pub struct Predictor {
    config: PredictorConfig,
    space: SearchSpace,
    devices: Vec<String>,
    seed: u64,
    supplementary_dim: usize,
    varmap: VarMap,
    net: Network,
    aggregation: Tensor,
    mask_bias: Tensor,
    /// Predecessors of each node (shared by all graphs of the space).
    preds: Vec<Vec<usize>>,
}

impl Predictor {
    /// A freshly initialised predictor for `devices` (one hardware-embedding
    /// row each); all weights are drawn from `seed`.
    pub fn new(
        config: &PredictorConfig,
        space: SearchSpace,
        devices: &[String],
        supplementary_dim: usize,
        seed: u64,
    ) -> Result<Self> {
        if devices.is_empty() {
            return Err(PredictorError::input(
                "devices",
                "at least one device",
                "none",
            ));
        }
        if config.gnn.is_empty() {
            return Err(PredictorError::input("gnn", "at least one layer", "none"));
        }
        let varmap = VarMap::new();
        let mut f = ParamFactory::new(&varmap, seed);
        let vocab = ArchGraph::op_vocab_size(space);
        let nodes = ArchGraph::node_count(space);
        let op_emb = f.uniform("op_emb", &[vocab, config.op_dim], 1.0)?;
        // The order of the draws is part of what a seed means: the text
        // form draws its node table and then the hardware table before any
        // layer, as it did before the code's network existed; the code's
        // network draws its layers first, as when its figures in
        // docs/experiments/paper_recipe.md were measured.
        let hw_table =
            |f: &mut ParamFactory<'_>| f.uniform(HW_EMB, &[devices.len(), config.hw_dim], 1.0);
        let (body, hw_emb, graph_width) = match config.network {
            NetworkForm::Text => {
                let node_emb = f.uniform("node_emb", &[nodes, config.node_dim], 1.0)?;
                let hw_emb = hw_table(&mut f)?;
                let (body, width) = text_body(&mut f, config, node_emb)?;
                (body, hw_emb, width)
            }
            NetworkForm::Code => {
                if config.node_costs || !config.ophw {
                    return Err(PredictorError::input(
                        "network",
                        "the code's network with ops only and per-node hardware (no node costs, ophw on)",
                        format!("node costs {}, ophw {}", config.node_costs, config.ophw),
                    ));
                }
                let code = CodeBody::new(&mut f, config)?;
                let hw_emb = hw_table(&mut f)?;
                (Body::Code(code), hw_emb, CodeBody::width(config))
            }
        };
        let hw_in_head = if config.ophw { 0 } else { config.hw_dim };
        let supplementary = if supplementary_dim > 0 && !config.supplementary_embedder.is_empty() {
            Some(Mlp::new(
                &mut f,
                "supp_emb",
                supplementary_dim,
                &config.supplementary_embedder,
                PAPER_SUPPLEMENTARY_OUT,
            )?)
        } else {
            None
        };
        let supp_in_head = if supplementary.is_some() {
            PAPER_SUPPLEMENTARY_OUT
        } else {
            supplementary_dim
        };
        let head_in = graph_width + supp_in_head + hw_in_head;
        let head = Mlp::new(&mut f, "head", head_in, &config.head, 1)?;
        let (agg, mask, preds) = graph_matrices(config, space, nodes)?;
        let cpu = Device::Cpu;
        Ok(Predictor {
            config: config.clone(),
            space,
            devices: devices.to_vec(),
            seed,
            supplementary_dim,
            varmap,
            net: Network {
                op_emb,
                hw_emb,
                body,
                supplementary,
                head,
            },
            aggregation: Tensor::from_vec(agg, (nodes, nodes), &cpu)?,
            mask_bias: Tensor::from_vec(mask, (nodes, nodes), &cpu)?,
            preds,
        })
    }

    /// Scores a batch: `[B]`, higher = slower (log-ms scale after MSE training).
    pub fn forward(&self, batch: &GraphBatch) -> Result<Tensor> {
        self.dense_forward(&self.net, batch)
    }

    /// [`Self::forward`] with the given network (the trained one, or its
    /// detached copy for inference).
    fn dense_forward(&self, net: &Network, batch: &GraphBatch) -> Result<Tensor> {
        let (op, hw) = self.embed(net, &batch.ops, &batch.devices)?;
        let readouts = match &net.body {
            Body::Text(text) => self.text_readouts(text, op, &hw, batch)?,
            Body::Code(code) => {
                vec![code.forward(&op, &hw, &self.aggregation, self.config.readout)?]
            }
        };
        self.head_forward(net, readouts, hw, batch)
    }

    /// Op embeddings of node-major op ids `[N, B]` -> `[N, B, op_dim]`,
    /// and each graph's hardware row `[B, hw_dim]`.
    fn embed(&self, net: &Network, ops: &Tensor, devices: &Tensor) -> Result<(Tensor, Tensor)> {
        let (n, b) = ops.dims2()?;
        let op =
            net.op_emb
                .index_select(&ops.flatten_all()?, 0)?
                .reshape((n, b, self.config.op_dim))?;
        Ok((op, net.hw_emb.index_select(devices, 0)?))
    }

    /// The code's network on a batch of edgeless graphs, each grouped
    /// into its distinct ops ([`super::edgeless`]): the same `[B]` as
    /// [`Self::dense_forward`], on fewer rows and without `[N, N]` products.
    fn edgeless_forward(
        &self,
        net: &Network,
        code: &CodeBody,
        batch: &GraphBatch,
    ) -> Result<Tensor> {
        let set = NodeSet::group(&batch.ops)?;
        let (op, hw) = self.embed(net, &set.ops, &batch.devices)?;
        let state = code.forward_edgeless(&op, &hw, &set.counts, set.nodes, self.config.readout)?;
        self.head_forward(net, vec![state], hw, batch)
    }

    /// The head over the graph states, the supplementary encoding and (when
    /// hardware is not per node) the device row -> `[B]`.
    fn head_forward(
        &self,
        net: &Network,
        mut readouts: Vec<Tensor>,
        hw: Tensor,
        batch: &GraphBatch,
    ) -> Result<Tensor> {
        if let Some(s) = &batch.supplementary {
            readouts.push(embed_supplementary(net, s)?);
        }
        if !self.config.ophw {
            readouts.push(hw);
        }
        let h = Tensor::cat(&readouts, 1)?;
        Ok(net.head.forward(&h)?.squeeze(1)?)
    }

    /// The text form's graph states, one `[B, D]` per GNN branch.
    fn text_readouts(
        &self,
        net: &TextBody,
        op: Tensor,
        hw: &Tensor,
        batch: &GraphBatch,
    ) -> Result<Vec<Tensor>> {
        let (n, b, _) = op.dims3()?;
        let op = if self.config.node_costs {
            Tensor::cat(&[&op, &batch.node_features], 2)?
        } else {
            op
        };
        let gate = if let Some(mlp) = &net.ophw_mlp {
            // Operation-wise hardware embedding (Section 5.1): every node sees
            // the device, so the op embedding can depend on the hardware.
            let hw_nodes = hw.unsqueeze(0)?.broadcast_as((n, b, self.config.hw_dim))?;
            let mut x = Tensor::cat(&[&op, &hw_nodes.contiguous()?], 2)?;
            for layer in &net.ophw_gnn {
                x = layer.forward(&x, &op, &self.aggregation)?;
            }
            let refined = mlp.forward(&x)?;
            if self.config.node_costs {
                Tensor::cat(&[&refined, &batch.node_features], 2)?
            } else {
                refined
            }
        } else {
            op
        };
        let x0 = net
            .node_emb
            .unsqueeze(1)?
            .broadcast_as((n, b, self.config.node_dim))?
            .contiguous()?;
        let mut readouts = Vec::with_capacity(2);
        if !net.dgf.is_empty() {
            let mut x = x0.clone();
            for (i, layer) in net.dgf.iter().enumerate() {
                x = layer.forward(&x, &gate, &self.aggregation)?;
                if i + 1 < net.dgf.len() {
                    x = super::layers::leaky_relu(&x)?;
                }
            }
            readouts.push(self.dense_readout(&x)?);
        }
        if !net.gat.is_empty() {
            let mut x = x0;
            for layer in &net.gat {
                x = layer.forward(&x, &gate, &self.mask_bias)?;
            }
            readouts.push(self.dense_readout(&x)?);
        }
        Ok(readouts)
    }

    /// The graph-level state of node-major states `[N, B, D]` -> `[B, D]`
    /// ([`Readout`]).
    fn dense_readout(&self, x: &Tensor) -> Result<Tensor> {
        let read = self.config.readout.positions(x.dim(0)?);
        Ok(if read.len() == 1 {
            x.i(read.start)?
        } else {
            x.narrow(0, read.start, read.len())?.mean(0)?
        })
    }

    /// Scores many rows on one device, as `f64`: the same function as
    /// [`Self::forward`], computed once per distinct node state rather than
    /// once per graph and node ([`super::memo`]), in passes of at most
    /// [`PREDICT_CHUNK_GRAPHS`] graphs; the code's network, which has no
    /// memoised form, in passes of [`CODE_PREDICT_CHUNK_GRAPHS`] (densely,
    /// or on each edgeless graph's distinct ops, [`super::edgeless`]).
    pub fn predict(
        &self,
        features: &ArchFeatures,
        rows: &[usize],
        device: usize,
    ) -> Result<Vec<f64>> {
        if let Some(&r) = rows.iter().find(|&&r| r >= features.len) {
            return Err(PredictorError::input(
                "row",
                format!("< {}", features.len),
                r.to_string(),
            ));
        }
        if device >= self.devices.len() {
            return Err(PredictorError::input(
                "device row",
                format!("< {}", self.devices.len()),
                device.to_string(),
            ));
        }
        if features.nodes != self.preds.len() {
            return Err(PredictorError::input(
                "features",
                format!("graphs of {} nodes (the model's space)", self.preds.len()),
                format!("{} nodes", features.nodes),
            ));
        }
        let net = self.net.detached();
        // Candle parallelises each op when it has threads; the host binary
        // gives it one (small training batches are fastest that way), and
        // then the passes themselves run side by side.
        let threads = if candle_core::utils::get_num_threads() > 1 {
            1
        } else {
            std::thread::available_parallelism().map_or(1, usize::from)
        };
        let most = match net.body {
            Body::Text(_) => PREDICT_CHUNK_GRAPHS,
            Body::Code(_) => CODE_PREDICT_CHUNK_GRAPHS,
        };
        let chunk = most.min(rows.len().div_ceil(threads).max(1));
        let chunks: Vec<&[usize]> = rows.chunks(chunk).collect();
        crate::parallel::map_in_groups(&chunks, threads, "prediction", |rows| {
            Ok(self
                .pass(&net, features, rows, &vec![device; rows.len()])?
                .to_dtype(DType::F64)?
                .to_vec1::<f64>()?)
        })
    }

    /// Scores a training batch, graph `i` on hardware row `devices[i]`,
    /// inside autograd: the same function as [`Self::forward`], computed by
    /// the memoised pass (each distinct node state once, only the states the
    /// readout needs, attention over predecessors only instead of a dense
    /// node x node matrix), so a step costs a fraction of the dense one;
    /// the code's network runs densely, or on each edgeless graph's
    /// distinct ops ([`super::edgeless`]).
    pub fn forward_rows(
        &self,
        features: &ArchFeatures,
        rows: &[usize],
        devices: &[usize],
    ) -> Result<Tensor> {
        if devices.len() != rows.len() {
            return Err(PredictorError::input(
                "batch devices",
                format!("one per graph ({})", rows.len()),
                devices.len().to_string(),
            ));
        }
        if let Some(&r) = rows.iter().find(|&&r| r >= features.len) {
            return Err(PredictorError::input(
                "row",
                format!("< {}", features.len),
                r.to_string(),
            ));
        }
        if let Some(&d) = devices.iter().find(|&&d| d >= self.devices.len()) {
            return Err(PredictorError::input(
                "device row",
                format!("< {}", self.devices.len()),
                d.to_string(),
            ));
        }
        if features.nodes != self.preds.len() {
            return Err(PredictorError::input(
                "features",
                format!("graphs of {} nodes (the model's space)", self.preds.len()),
                format!("{} nodes", features.nodes),
            ));
        }
        self.pass(&self.net, features, rows, devices)
    }

    /// One pass over `rows`, graph `i` on hardware row `devices[i]`
    /// (validated by the caller) -> `[B]`: memoised for the text form,
    /// dense for the code's (whose attention spans the whole graph).
    fn pass(
        &self,
        net: &Network,
        features: &ArchFeatures,
        rows: &[usize],
        devices: &[usize],
    ) -> Result<Tensor> {
        match &net.body {
            Body::Text(text) => self.memo_pass(net, text, features, rows, devices),
            Body::Code(code) => {
                let batch = GraphBatch::build_mixed(features, &self.config, rows, devices)?;
                if is_edgeless(&self.config, self.space) {
                    self.edgeless_forward(net, code, &batch)
                } else {
                    self.dense_forward(net, &batch)
                }
            }
        }
    }

    /// One memoised pass over `rows`, graph `i` on hardware row
    /// `devices[i]` (validated by the caller) -> `[B]`.
    fn memo_pass(
        &self,
        net: &Network,
        body: &TextBody,
        features: &ArchFeatures,
        rows: &[usize],
        devices: &[usize],
    ) -> Result<Tensor> {
        let n = features.nodes;
        let b = rows.len();
        let cpu = Device::Cpu;
        let node_costs = self.config.node_costs;
        let node_features = |flat: usize| {
            let (g, v) = (flat / n, flat % n);
            let at = (rows[g] * n + v) * NODE_FEATURES;
            &features.node_features[at..at + NODE_FEATURES]
        };
        // Level 0: a node's own inputs (position, op, cost features, and
        // the hardware row when every node sees it).
        let ophw = body.ophw_mlp.is_some();
        let inputs = Level::from_keys(b, n, |flat| {
            let (g, v) = (flat / n, flat % n);
            let mut bits = [0u32; NODE_FEATURES];
            if node_costs {
                for (bit, x) in bits.iter_mut().zip(node_features(flat)) {
                    *bit = x.to_bits();
                }
            }
            let device = if ophw { devices[g] } else { 0 };
            (v, features.ops[rows[g] * n + v], bits, device)
        });
        let mut rep_ops = Vec::with_capacity(inputs.len());
        let mut rep_costs = Vec::with_capacity(inputs.len() * NODE_FEATURES);
        for &flat in inputs.reps() {
            rep_ops.push(features.ops[rows[flat / n] * n + flat % n]);
            rep_costs.extend_from_slice(node_features(flat));
        }
        let u0 = inputs.len();
        let costs = Tensor::from_vec(rep_costs, (u0, NODE_FEATURES), &cpu)?;
        let op = net
            .op_emb
            .index_select(&Tensor::from_vec(rep_ops, u0, &cpu)?, 0)?;
        let op = if node_costs {
            Tensor::cat(&[&op, &costs], 1)?
        } else {
            op
        };
        let hw_rows = |ids: Vec<u32>| -> Result<Tensor> {
            let len = ids.len();
            Ok(net
                .hw_emb
                .index_select(&Tensor::from_vec(ids, len, &cpu)?, 0)?)
        };
        let all = vec![true; n];
        let (gate_level, gate) = match &body.ophw_mlp {
            Some(mlp) => {
                let mut x = Tensor::cat(
                    &[
                        &op,
                        &hw_rows(
                            inputs
                                .reps()
                                .iter()
                                .map(|&flat| devices[flat / n] as u32)
                                .collect(),
                        )?,
                    ],
                    1,
                )?;
                let mut level = inputs.clone();
                for layer in &body.ophw_gnn {
                    let step = Step::new(&level, &inputs, &self.preds, &all)?;
                    x = layer.forward_rows(&x, &op, &step)?;
                    level = step.level;
                }
                let refined = mlp.forward(&x)?;
                let gate = if node_costs {
                    let own = costs.index_select(&level.rows_in(&inputs)?, 0)?;
                    Tensor::cat(&[&refined, &own], 1)?
                } else {
                    refined
                };
                (level, gate)
            }
            None => (inputs.clone(), op),
        };
        // The main GNN starts from the per-position embedding; its last
        // step is needed only at the nodes the readout reads.
        let positions = Level::from_keys(b, n, |flat| flat % n);
        let position_ids: Vec<u32> = positions.reps().iter().map(|&f| (f % n) as u32).collect();
        let x0 = body
            .node_emb
            .index_select(&Tensor::from_vec(position_ids, positions.len(), &cpu)?, 0)?;
        let read: Vec<usize> = self.config.readout.positions(n).collect();
        let need = needed_positions(&self.preds, &read, self.config.gnn.len());
        let mut steps: Vec<Step> = Vec::with_capacity(need.len());
        for compute in &need {
            let input = steps.last().map_or(&positions, |s| &s.level);
            let step = Step::new(input, &gate_level, &self.preds, compute)?;
            steps.push(step);
        }
        tracing::trace!(
            graphs = b,
            inputs = inputs.len(),
            gates = gate_level.len(),
            steps = ?steps.iter().map(|s| s.level.len()).collect::<Vec<_>>(),
            "memoised prediction pass"
        );
        let last = steps
            .last()
            .ok_or_else(|| PredictorError::internal("gnn", "a network without layers"))?;
        let mut readout_rows = Vec::with_capacity(b * read.len());
        for g in 0..b {
            for &v in &read {
                let id = last.level.id(g, v).ok_or_else(|| {
                    PredictorError::internal("memoised inference", "readout not computed")
                })?;
                readout_rows.push(id as u32);
            }
        }
        let readout_rows = Tensor::from_vec(readout_rows, b * read.len(), &cpu)?;
        // Graph g's states are rows g * read.len() .. of the gathered block.
        let gather = |x: &Tensor| -> Result<Tensor> {
            let rows = x.index_select(&readout_rows, 0)?;
            Ok(if read.len() == 1 {
                rows
            } else {
                rows.reshape((b, read.len(), x.dim(1)?))?.mean(1)?
            })
        };
        let mut readouts = Vec::with_capacity(4);
        if !body.dgf.is_empty() {
            let mut x = x0.clone();
            for (i, (layer, step)) in body.dgf.iter().zip(&steps).enumerate() {
                x = layer.forward_rows(&x, &gate, step)?;
                if i + 1 < body.dgf.len() {
                    x = super::layers::leaky_relu(&x)?;
                }
            }
            readouts.push(gather(&x)?);
        }
        if !body.gat.is_empty() {
            let mut x = x0;
            for (layer, step) in body.gat.iter().zip(&steps) {
                x = layer.forward_rows(&x, &gate, step)?;
            }
            readouts.push(gather(&x)?);
        }
        let dim = features.supplementary_dim(self.config.supplementary);
        if dim > 0 {
            let mut supp = Vec::with_capacity(b * dim);
            for &r in rows {
                features.push_supplementary(self.config.supplementary, r, &mut supp);
            }
            let raw = Tensor::from_vec(supp, (b, dim), &cpu)?;
            readouts.push(embed_supplementary(net, &raw)?);
        }
        if body.ophw_mlp.is_none() {
            readouts.push(hw_rows(devices.iter().map(|&d| d as u32).collect())?);
        }
        let h = Tensor::cat(&readouts, 1)?;
        Ok(net.head.forward(&h)?.squeeze(1)?)
    }

    /// Adds a hardware-embedding row for a new device, initialised from the
    /// row of `init_from` (paper Section 5.2) or the mean of all rows.
    /// Returns the new row's index.
    pub fn add_device(&mut self, name: &str, init_from: Option<usize>) -> Result<usize> {
        if self.devices.iter().any(|d| d == name) {
            return Err(PredictorError::input(
                "device",
                "a name not yet in the predictor",
                format!("`{name}`"),
            ));
        }
        let current = self.net.hw_emb.detach();
        let row = match init_from {
            Some(i) if i < self.devices.len() => current.i(i..i + 1)?,
            Some(i) => {
                return Err(PredictorError::input(
                    "hw init",
                    format!("a row < {}", self.devices.len()),
                    i.to_string(),
                ));
            }
            None => current.mean_keepdim(0)?,
        };
        let table = Tensor::cat(&[&current, &row], 0)?;
        let var = Var::from_tensor(&table)?;
        self.net.hw_emb = var.as_tensor().clone();
        self.varmap
            .data()
            .lock()
            .map_err(|e| PredictorError::Poisoned(e.to_string()))?
            .insert(HW_EMB.to_string(), var);
        self.devices.push(name.to_string());
        Ok(self.devices.len() - 1)
    }

    /// A deep copy with independent variables (for per-target transfer).
    pub fn try_clone(&self) -> Result<Self> {
        let mut copy = Predictor::new(
            &self.config,
            self.space,
            &self.devices,
            self.supplementary_dim,
            self.seed,
        )?;
        copy.copy_values_from(&self.varmap)?;
        Ok(copy)
    }

    /// Overwrites every variable (same names) with the values in `source`;
    /// the hardware table may change size.
    fn copy_values_from(&mut self, source: &VarMap) -> Result<()> {
        let src = source
            .data()
            .lock()
            .map_err(|e| PredictorError::Poisoned(e.to_string()))?;
        let mut dst = self
            .varmap
            .data()
            .lock()
            .map_err(|e| PredictorError::Poisoned(e.to_string()))?;
        for (name, var) in dst.iter_mut() {
            let value = src.get(name).ok_or_else(|| {
                PredictorError::internal("clone", format!("missing variable {name}"))
            })?;
            if name == HW_EMB {
                let fresh = Var::from_tensor(&value.as_tensor().copy()?)?;
                self.net.hw_emb = fresh.as_tensor().clone();
                *var = fresh;
            } else {
                var.set(&value.as_tensor().copy()?)?;
            }
        }
        Ok(())
    }

    /// Loads weights saved by `VarMap::save` (same names and shapes).
    pub fn load_weights(&mut self, path: &std::path::Path) -> Result<()> {
        if !path.exists() {
            return Err(PredictorError::Checkpoint {
                path: path.display().to_string(),
                reason: "weights file not found".into(),
            });
        }
        self.varmap.load(path)?;
        Ok(())
    }

    /// All trainable variables.
    pub fn vars(&self) -> Vec<Var> {
        self.varmap.all_vars()
    }

    /// Named variables (for gradient checks).
    pub fn named_vars(&self) -> Result<Vec<(String, Var)>> {
        let data = self
            .varmap
            .data()
            .lock()
            .map_err(|e| PredictorError::Poisoned(e.to_string()))?;
        let mut out: Vec<(String, Var)> =
            data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The variable map (for safetensors save/load).
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// Device names, one per hardware-embedding row.
    pub fn devices(&self) -> &[String] {
        &self.devices
    }

    /// Row of a device, or [`PredictorError::DeviceNotInModel`].
    pub fn device_row(&self, name: &str) -> Result<usize> {
        self.devices.iter().position(|d| d == name).ok_or_else(|| {
            PredictorError::DeviceNotInModel {
                device: name.to_string(),
                known: self.devices.join(", "),
            }
        })
    }

    /// The configuration.
    pub fn config(&self) -> &PredictorConfig {
        &self.config
    }

    /// The search space.
    pub fn space(&self) -> SearchSpace {
        self.space
    }

    /// Seed of the initial weights.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Width of the supplementary encoding the head expects.
    pub fn supplementary_dim(&self) -> usize {
        self.supplementary_dim
    }
}

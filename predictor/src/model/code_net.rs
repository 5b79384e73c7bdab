//! The network as the paper's released code computes it
//! ([`NetworkForm::Code`]; `GIN_Model` in
//! `correlation_trainer/models_abl_p2.py`, read, not copied).
//!
//! It differs from the network the paper's text describes
//! ([`NetworkForm::Text`], `super::network`) in five ways, each of which
//! lets information travel further than the graph's edges:
//! - every node but the input starts from one shared embedding (no
//!   position), widened to [`CODE_HIDDEN`];
//! - op and hardware embeddings only *gate* the GNNs; the op GNN's output
//!   node state, through an MLP, is appended to every node's gate, so each
//!   node's gate sees the whole graph;
//! - each layer is the mean of a DGF and a GAT layer on one stream;
//! - attention spans every node ([`GatLayer::forward_all_nodes`]);
//! - FBNet graphs have no edges (`adj = np.eye(...)` in
//!   `nas_embedding_suite/fbnet_ss.py`): only attention mixes layers.
//!
//! There is no memoised form: global attention makes every node state
//! depend on the whole graph, so nothing is shared between graphs. Within
//! an edgeless graph, though, layers with one op share their state, so
//! FBNet graphs are computed as sets of distinct ops
//! ([`CodeBody::forward_edgeless`], [`super::edgeless`]).
//!
//! [`NetworkForm::Code`]: super::config::NetworkForm::Code
//! [`NetworkForm::Text`]: super::config::NetworkForm::Text

use candle_core::{IndexOp, Tensor};

use super::config::{
    CODE_BROADCAST_HIDDEN, CODE_BROADCAST_OUT, CODE_HIDDEN, GnnKind, PredictorConfig, Readout,
};
use super::gnn::{DgfLayer, GatLayer};
use super::layers::{Linear, Mlp, ParamFactory, relu};
use crate::error::{PredictorError, Result};

/// One layer of the code's GNN: DGF, GAT or the mean of both
/// (`EnsembleGATDGFLayer` with `ensemble_fuse_method = "add"`).
#[derive(Debug, Clone)]
struct CodeLayer {
    dgf: Option<DgfLayer>,
    gat: Option<GatLayer>,
}

impl CodeLayer {
    fn new(
        f: &mut ParamFactory<'_>,
        name: &str,
        (input, output): (usize, usize),
        gate_dim: usize,
        kind: GnnKind,
    ) -> Result<Self> {
        let dgf = match kind {
            GnnKind::Gat => None,
            _ => Some(DgfLayer::new(
                f,
                &format!("{name}.dgf"),
                input,
                output,
                gate_dim,
            )?),
        };
        let gat = match kind {
            GnnKind::Dgf => None,
            _ => Some(GatLayer::new(
                f,
                &format!("{name}.gat"),
                input,
                output,
                gate_dim,
            )?),
        };
        Ok(CodeLayer { dgf, gat })
    }

    fn detached(&self) -> Self {
        CodeLayer {
            dgf: self.dgf.as_ref().map(DgfLayer::detached),
            gat: self.gat.as_ref().map(GatLayer::detached),
        }
    }

    /// `x: [N, B, in]`, `gate: [N, B, gate_dim]` -> `[N, B, out]`.
    fn forward(&self, x: &Tensor, gate: &Tensor, graph: Graphs<'_>) -> Result<Tensor> {
        let dgf = self.dgf.as_ref().map(|l| match graph {
            Graphs::Edges(edges) => l.forward(x, gate, edges),
            Graphs::Edgeless { .. } => l.forward_edgeless(x, gate),
        });
        let gat = self.gat.as_ref().map(|l| match graph {
            Graphs::Edges(edges) => l.forward_all_nodes(x, gate, edges),
            Graphs::Edgeless { counts, nodes } => l.forward_edgeless(x, gate, counts, nodes),
        });
        match (dgf, gat) {
            (Some(d), Some(g)) => Ok(((d? + g?)? * 0.5)?),
            (Some(one), None) | (None, Some(one)) => one,
            (None, None) => Err(PredictorError::internal(
                "code network",
                "a layer of neither kind",
            )),
        }
    }
}

/// How the nodes of a batch's graphs are connected.
#[derive(Debug, Clone, Copy)]
enum Graphs<'a> {
    /// One `[N, N]` edge matrix for every graph (row `j` holds `j`'s
    /// predecessors).
    Edges(&'a Tensor),
    /// No edges but self loops; each row stands for `counts` (`[U, B, 1]`)
    /// identical nodes of a graph of `nodes` ([`super::edgeless`]).
    Edgeless { counts: &'a Tensor, nodes: usize },
}

/// Runs a stack of layers with ReLU between them (none after the last).
fn run_stack(
    layers: &[CodeLayer],
    x0: &Tensor,
    gate: &Tensor,
    graph: Graphs<'_>,
) -> Result<Tensor> {
    let mut y = x0.clone();
    for (i, layer) in layers.iter().enumerate() {
        y = layer.forward(&y, gate, graph)?;
        if i + 1 < layers.len() {
            y = relu(&y)?;
        }
    }
    Ok(y)
}

/// The code's embeddings and GNNs; the op and hardware tables, the
/// supplementary embedder and the head are shared with the text form.
#[derive(Debug, Clone)]
pub struct CodeBody {
    /// The input node's embedding (`input_node_emb`), `[1, node_dim]`.
    input_node: Tensor,
    /// Every other node's embedding (`other_node_emb`, zero at start).
    other_node: Tensor,
    /// The output node's hardware embedding (`output_hw_emb`), `[1, hw_dim]`.
    output_hw: Tensor,
    /// `node_dim -> CODE_HIDDEN` (`x_hidden`).
    x_hidden: Linear,
    /// The op GNN (`op_f_gcns`).
    op_gnn: Vec<CodeLayer>,
    /// Output-node state -> every node's gate (`replace_bgcn_mlp`).
    broadcast: Mlp,
    /// Gate ++ broadcast -> refined gate (`updateop_embedder`).
    update_gate: Mlp,
    /// The main GNN (`gcns`).
    gnn: Vec<CodeLayer>,
}

impl CodeBody {
    /// Seeded weights for `config` (widths `ophw_gnn`, `ophw_mlp`, `gnn`).
    pub fn new(f: &mut ParamFactory<'_>, config: &PredictorConfig) -> Result<Self> {
        let gate_dim = config.op_dim + config.hw_dim;
        let stack = |f: &mut ParamFactory<'_>, name: &str, widths: &[usize]| {
            let mut width = CODE_HIDDEN;
            let mut layers = Vec::with_capacity(widths.len());
            for (i, &w) in widths.iter().enumerate() {
                let layer = CodeLayer::new(
                    f,
                    &format!("{name}.{i}"),
                    (width, w),
                    gate_dim,
                    config.gnn_kind,
                )?;
                layers.push(layer);
                width = w;
            }
            Ok::<_, PredictorError>((layers, width))
        };
        let (op_gnn, op_width) = stack(f, "code.op_gnn", &config.ophw_gnn)?;
        if op_gnn.is_empty() {
            return Err(PredictorError::input(
                "ophw gnn",
                "at least one layer",
                "none",
            ));
        }
        let (gnn, _) = stack(f, "code.gnn", &config.gnn)?;
        Ok(CodeBody {
            input_node: f.uniform("code.input_node", &[1, config.node_dim], 1.0)?,
            other_node: f.constant("code.other_node", &[1, config.node_dim], 0.0)?,
            output_hw: f.uniform("code.output_hw", &[1, config.hw_dim], 1.0)?,
            x_hidden: Linear::new(f, "code.x_hidden", config.node_dim, CODE_HIDDEN, true)?,
            op_gnn,
            broadcast: Mlp::new(
                f,
                "code.broadcast",
                op_width,
                &CODE_BROADCAST_HIDDEN,
                CODE_BROADCAST_OUT,
            )?,
            update_gate: Mlp::new(
                f,
                "code.update_gate",
                gate_dim + CODE_BROADCAST_OUT,
                &config.ophw_mlp,
                gate_dim,
            )?,
            gnn,
        })
    }

    /// The same body outside autograd (see [`Linear::detached`]).
    pub fn detached(&self) -> Self {
        CodeBody {
            input_node: self.input_node.detach(),
            other_node: self.other_node.detach(),
            output_hw: self.output_hw.detach(),
            x_hidden: self.x_hidden.detached(),
            op_gnn: self.op_gnn.iter().map(CodeLayer::detached).collect(),
            broadcast: self.broadcast.detached(),
            update_gate: self.update_gate.detached(),
            gnn: self.gnn.iter().map(CodeLayer::detached).collect(),
        }
    }

    /// Graph states `[B, D]` of a batch: `op: [N, B, op_dim]` the op
    /// embeddings, `hw: [B, hw_dim]` each graph's device row, `edges: [N,
    /// N]` with row `j` holding `j`'s predecessors.
    pub fn forward(
        &self,
        op: &Tensor,
        hw: &Tensor,
        edges: &Tensor,
        readout: Readout,
    ) -> Result<Tensor> {
        let states = self.states(op, hw, Graphs::Edges(edges))?;
        let read = readout.positions(states.dim(0)?);
        Ok(states.narrow(0, read.start, read.len())?.mean(0)?)
    }

    /// [`Self::forward`] on edgeless graphs grouped into sets
    /// ([`super::edgeless::NodeSet`]): `op: [U, B, op_dim]` the rows' op
    /// embeddings, `counts: [U, B, 1]` the nodes each row stands for,
    /// `nodes` the graphs' node count. The same function, on fewer rows.
    pub fn forward_edgeless(
        &self,
        op: &Tensor,
        hw: &Tensor,
        counts: &Tensor,
        nodes: usize,
        readout: Readout,
    ) -> Result<Tensor> {
        let states = self.states(op, hw, Graphs::Edgeless { counts, nodes })?;
        let rows = states.dim(0)?;
        match readout {
            Readout::Output => Ok(states.i(rows - 1)?),
            // Every node but the input: rows 1.. weighted by their counts,
            // over the real graph's node count.
            Readout::Mean => {
                let weighted = states
                    .narrow(0, 1, rows - 1)?
                    .broadcast_mul(&counts.narrow(0, 1, rows - 1)?)?;
                Ok((weighted.sum(0)? / readout.positions(nodes).len() as f64)?)
            }
        }
    }

    /// Every node's final state, `[N, B, D]`.
    fn states(&self, op: &Tensor, hw: &Tensor, graph: Graphs<'_>) -> Result<Tensor> {
        let (n, b, _) = op.dims3()?;
        if n < 2 {
            return Err(PredictorError::input(
                "graph",
                "an input and an output node",
                format!("{n} nodes"),
            ));
        }
        let gate = self.initial_gate(op, hw)?;
        let x0 = self.initial_states(n, b)?;
        let op_states = run_stack(&self.op_gnn, &x0, &gate, graph)?;
        let spread = self.broadcast.forward_with(&op_states.i(n - 1)?, relu)?;
        let spread = spread
            .unsqueeze(0)?
            .broadcast_as((n, b, CODE_BROADCAST_OUT))?;
        let gate = self
            .update_gate
            .forward_with(&Tensor::cat(&[&gate, &spread.contiguous()?], 2)?, relu)?;
        run_stack(&self.gnn, &x0, &gate, graph)
    }

    /// Op ++ hardware per node, `[N, B, op_dim + hw_dim]`: zeros at the
    /// input node, the learned output embedding at the output node's
    /// hardware part (`_concat_op_embs`, `_concat_hw_embs`).
    fn initial_gate(&self, op: &Tensor, hw: &Tensor) -> Result<Tensor> {
        let (n, b, op_dim) = op.dims3()?;
        let hw_dim = hw.dim(1)?;
        let hw_mid = hw.unsqueeze(0)?.broadcast_as((n - 2, b, hw_dim))?;
        let hw_out = self.output_hw.unsqueeze(0)?.broadcast_as((1, b, hw_dim))?;
        let hw_in = Tensor::zeros((1, b, hw_dim), hw.dtype(), hw.device())?;
        let hw_nodes = Tensor::cat(&[&hw_in, &hw_mid.contiguous()?, &hw_out.contiguous()?], 0)?;
        let op_in = Tensor::zeros((1, b, op_dim), op.dtype(), op.device())?;
        let op_nodes = Tensor::cat(&[&op_in, &op.narrow(0, 1, n - 1)?], 0)?;
        Ok(Tensor::cat(&[&op_nodes, &hw_nodes], 2)?)
    }

    /// Every graph's starting node states, `[N, B, CODE_HIDDEN]`.
    fn initial_states(&self, n: usize, b: usize) -> Result<Tensor> {
        let others = self
            .other_node
            .broadcast_as((n - 1, self.other_node.dim(1)?))?;
        let nodes = Tensor::cat(&[&self.input_node, &others.contiguous()?], 0)?;
        let x = self.x_hidden.forward(&nodes)?;
        Ok(x.unsqueeze(1)?
            .broadcast_as((n, b, CODE_HIDDEN))?
            .contiguous()?)
    }

    /// Width of the graph state the head reads.
    pub fn width(config: &PredictorConfig) -> usize {
        config.gnn.last().copied().unwrap_or(CODE_HIDDEN)
    }
}

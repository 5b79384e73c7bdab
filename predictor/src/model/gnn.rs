//! The two message-passing modules of the paper (Appendix A.3.1).
//!
//! Node `j` aggregates from its predecessors: with `A[i][j] = 1` iff `i`
//! feeds `j`, the aggregation matrix is `A^T`. All graphs of a space share
//! one adjacency, so activations are kept node-major, `[N, B, D]`: the
//! aggregation of a whole batch is then one `[N, N] x [N, B*D]` matrix
//! product instead of B tiny ones (about 2x faster on one CPU thread).

use candle_core::{D, Tensor};

use super::fused::{add_row, mul_row};
use super::layers::{LayerNorm, Linear, ParamFactory};
use super::memo::Step;
use crate::error::Result;

/// Dense Graph Flow layer, paper Eq. 1:
/// `X' = sigmoid(O W_o) * (A X W_f) + X W_f + b_f`.
/// The residual `X W_f` keeps nodes distinguishable (no over-smoothing).
#[derive(Debug, Clone)]
pub struct DgfLayer {
    w_f: Linear,
    b_f: Tensor,
    w_o: Linear,
}

impl DgfLayer {
    /// `input -> output` features, gated by `op_dim`-wide op embeddings.
    pub fn new(
        f: &mut ParamFactory<'_>,
        name: &str,
        input: usize,
        output: usize,
        op_dim: usize,
    ) -> Result<Self> {
        let bound = 1.0 / (input.max(1) as f64).sqrt();
        Ok(DgfLayer {
            w_f: Linear::new(f, &format!("{name}.w_f"), input, output, false)?,
            b_f: f.uniform(&format!("{name}.b_f"), &[output], bound)?,
            w_o: Linear::new(f, &format!("{name}.w_o"), op_dim, output, true)?,
        })
    }

    /// A copy outside autograd (see [`super::layers::Linear::detached`]).
    pub fn detached(&self) -> Self {
        DgfLayer {
            w_f: self.w_f.detached(),
            b_f: self.b_f.detach(),
            w_o: self.w_o.detached(),
        }
    }

    /// `x: [N, B, in]`, `ops: [N, B, op_dim]`, `agg: [N, N]` -> `[N, B, out]`.
    pub fn forward(&self, x: &Tensor, ops: &Tensor, agg: &Tensor) -> Result<Tensor> {
        let xw = self.w_f.forward(x)?;
        let (n, b, d) = xw.dims3()?;
        let gate = candle_nn::ops::sigmoid(&self.w_o.forward(ops)?)?;
        let message = agg.matmul(&xw.reshape((n, b * d))?)?.reshape((n, b, d))?;
        Ok(add_row(&(gate * message)?.add(&xw)?, &self.b_f)?)
    }

    /// [`Self::forward`] on graphs whose only edges are self loops (the
    /// code's FBNet graphs): the aggregation is the identity, so each
    /// node's message is its own state and no `[N, N]` product is needed.
    pub fn forward_edgeless(&self, x: &Tensor, ops: &Tensor) -> Result<Tensor> {
        let xw = self.w_f.forward(x)?;
        let gate = candle_nn::ops::sigmoid(&self.w_o.forward(ops)?)?;
        Ok(add_row(&(gate * &xw)?.add(&xw)?, &self.b_f)?)
    }

    /// The same layer on interned rows ([`super::memo`]): `x: [U_a, in]`
    /// rows of the step's input level, `ops: [U_g, op_dim]` rows of its gate
    /// level -> `[U_c, out]`, one row per unique state of the new level.
    pub fn forward_rows(&self, x: &Tensor, ops: &Tensor, step: &Step) -> Result<Tensor> {
        let xw = self.w_f.forward(x)?;
        let own = xw.index_select(&step.self_rows, 0)?;
        let mut message: Option<Tensor> = None;
        for (s, rows) in step.slot_rows.iter().enumerate().skip(1) {
            let weight = step.predecessor_weight.narrow(1, s, 1)?;
            let term = xw.index_select(rows, 0)?.broadcast_mul(&weight)?;
            message = Some(match message {
                Some(m) => m.add(&term)?,
                None => term,
            });
        }
        let message = match message {
            Some(m) => m,
            None => own.zeros_like()?,
        };
        let gate =
            candle_nn::ops::sigmoid(&self.w_o.forward(ops)?)?.index_select(&step.gate_rows, 0)?;
        Ok(add_row(&(gate * message)?.add(&own)?, &self.b_f)?)
    }
}

/// Graph attention layer, paper Eqs. 2-3:
/// `Attn_j = softmax_j(LeakyReLU(A_j * a(W_p X_i * W_p X_j))) W_p X_j`,
/// `X' = LayerNorm(sigmoid(O W_o) * sum_j Attn_j)`.
/// The attention `a` is linear, so `a(p_i * p_j) = (p_i * a) . p_j` and all
/// pairs of a graph are one matrix product. Each node also attends to itself (as in
/// Velickovic et al.), which keeps the input node's row of the softmax defined.
#[derive(Debug, Clone)]
pub struct GatLayer {
    w_p: Linear,
    attention: Tensor,
    w_o: Linear,
    norm: LayerNorm,
    scale: f64,
}

impl GatLayer {
    /// `input -> output` features, gated by `op_dim`-wide op embeddings.
    pub fn new(
        f: &mut ParamFactory<'_>,
        name: &str,
        input: usize,
        output: usize,
        op_dim: usize,
    ) -> Result<Self> {
        let bound = 1.0 / (output.max(1) as f64).sqrt();
        Ok(GatLayer {
            w_p: Linear::new(f, &format!("{name}.w_p"), input, output, false)?,
            attention: f.uniform(&format!("{name}.a"), &[output], bound)?,
            w_o: Linear::new(f, &format!("{name}.w_o"), op_dim, output, true)?,
            norm: LayerNorm::new(f, &format!("{name}.norm"), output)?,
            scale: 1.0 / (output.max(1) as f64).sqrt(),
        })
    }

    /// A copy outside autograd (see [`super::layers::Linear::detached`]).
    pub fn detached(&self) -> Self {
        GatLayer {
            w_p: self.w_p.detached(),
            attention: self.attention.detach(),
            w_o: self.w_o.detached(),
            norm: self.norm.detached(),
            scale: self.scale,
        }
    }

    /// `x: [N, B, in]`, `ops: [N, B, op_dim]`, `mask_bias: [N, N]` holding
    /// 0 where node j (row) may attend to node i (column: predecessors and
    /// itself) and a large negative number elsewhere -> `[N, B, out]`.
    pub fn forward(&self, x: &Tensor, ops: &Tensor, mask_bias: &Tensor) -> Result<Tensor> {
        self.attend(x, ops, self.scale, |logits| {
            Ok(logits.broadcast_add(mask_bias)?)
        })
    }

    /// Dense attention over `[N, B, in]` states: the pairwise scores times
    /// `scale`, through LeakyReLU, then `mask` (how the two forms exclude
    /// or include non-neighbours), softmax, message, gate, layer norm.
    fn attend(
        &self,
        x: &Tensor,
        ops: &Tensor,
        scale: f64,
        mask: impl FnOnce(Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let p = self.w_p.forward(x)?;
        // Pairwise scores need graph-major layout: [B, N, D] batched matmuls.
        let pb = p.transpose(0, 1)?.contiguous()?;
        let query = mul_row(&pb, &self.attention)?;
        let scores = (query.matmul(&pb.transpose(1, 2)?.contiguous()?)? * scale)?;
        let scores = mask(super::layers::leaky_relu(&scores)?)?;
        let attn = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let message = attn.matmul(&pb)?.transpose(0, 1)?.contiguous()?;
        let gate = candle_nn::ops::sigmoid(&self.w_o.forward(ops)?)?;
        self.norm.forward(&(gate * message)?)
    }

    /// The layer as the paper's code computes it (`GraphAttentionLayer`,
    /// `correlation_trainer/models_abl_p2.py`): the logits are multiplied
    /// by the 0/1 edge matrix instead of masked, so a node attends to
    /// *every* node of its graph, a non-neighbour (itself included, unless
    /// it has a self-edge) with logit 0; and the code's pairwise product
    /// sums over a broadcast axis, which scales the logits by the node
    /// count. `x: [N, B, in]`, `ops: [N, B, op_dim]`, `edges: [N, N]` with
    /// `edges[j][i] = 1` iff `i` feeds `j` -> `[N, B, out]`.
    pub fn forward_all_nodes(&self, x: &Tensor, ops: &Tensor, edges: &Tensor) -> Result<Tensor> {
        let nodes = x.dim(0)?;
        self.attend(x, ops, self.scale * nodes as f64, |logits| {
            Ok(logits.broadcast_mul(edges)?)
        })
    }

    /// [`Self::forward_all_nodes`] on graphs whose only edges are self
    /// loops, with each row standing for `counts` identical nodes
    /// (`x: [U, B, in]`, `ops: [U, B, op_dim]`, `counts: [U, B, 1]`, 0 for
    /// padding; `nodes` the graphs' real node count). Every logit but a
    /// node's own is 0, so node `v` receives
    /// `(e^s_v p_v + sum_{u != v} p_u) / (e^s_v + nodes - 1)`: one sum per
    /// graph instead of an `[N, N]` softmax, the same function.
    pub fn forward_edgeless(
        &self,
        x: &Tensor,
        ops: &Tensor,
        counts: &Tensor,
        nodes: usize,
    ) -> Result<Tensor> {
        let p = self.w_p.forward(x)?;
        let query = mul_row(&p, &self.attention)?;
        let own = ((query * &p)?.sum_keepdim(D::Minus1)? * (self.scale * nodes as f64))?;
        let own = super::layers::leaky_relu(&own)?;
        // The softmax's shift: the largest logit of a row is its own or 0.
        // The result does not depend on it, so it needs no gradient.
        let shift = own.relu()?.detach();
        let self_weight = own.sub(&shift)?.exp()?;
        let other_weight = shift.neg()?.exp()?;
        let total = p.broadcast_mul(counts)?.sum_keepdim(0)?;
        let others = total.broadcast_sub(&p)?;
        let message = p
            .broadcast_mul(&self_weight)?
            .add(&others.broadcast_mul(&other_weight)?)?;
        let norm = self_weight.add(&(other_weight * nodes.saturating_sub(1) as f64)?)?;
        let message = message.broadcast_div(&norm)?;
        let gate = candle_nn::ops::sigmoid(&self.w_o.forward(ops)?)?;
        self.norm.forward(&(gate * message)?)
    }

    /// The same layer on interned rows ([`super::memo`]); see
    /// [`DgfLayer::forward_rows`]. Each row attends over its neighbour slots
    /// (itself and its predecessors; padding masked), as the `[N, N]` mask
    /// of [`Self::forward`] lets it.
    pub fn forward_rows(&self, x: &Tensor, ops: &Tensor, step: &Step) -> Result<Tensor> {
        let p = self.w_p.forward(x)?;
        let keys = step
            .slot_rows
            .iter()
            .map(|rows| p.index_select(rows, 0))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let query = mul_row(&keys[0], &self.attention)?;
        let scores = keys
            .iter()
            .map(|k| (&query * k)?.sum_keepdim(1))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let scores = (Tensor::cat(&scores, 1)? * self.scale)?;
        let scores = super::layers::leaky_relu(&scores)?.add(&step.attention_bias)?;
        let attn = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let mut message = keys[0].broadcast_mul(&attn.narrow(1, 0, 1)?)?;
        for (s, k) in keys.iter().enumerate().skip(1) {
            message = message.add(&k.broadcast_mul(&attn.narrow(1, s, 1)?)?)?;
        }
        let gate =
            candle_nn::ops::sigmoid(&self.w_o.forward(ops)?)?.index_select(&step.gate_rows, 0)?;
        self.norm.forward(&(gate * message)?)
    }
}

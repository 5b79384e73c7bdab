//! Analytic cost features computed from the macro networks, and the
//! supplementary encodings fed to the predictor head (paper Section 3.3).
//!
//! Per-node features (FLOPs, parameters, activation size of the op at that
//! node in the full network) let the GNN see *where* an op sits: in FBNet the
//! same block costs very different amounts in different stages, which the op
//! id alone cannot tell. Supplementary vectors are standardised per column
//! over the whole space (unsupervised: no latency is used).

use nasflat_shared::{
    ArchGraph, FbnetArch, FbnetBlock, FbnetMacro, FbnetVariant, NB201_EDGE_NODES, Nb201Arch,
    Nb201Op, SearchSpace, data::NumericTable,
};
use serde::{Deserialize, Serialize};

use crate::encoding::{Encoding, EncodingKind};
use crate::error::{PredictorError, Result};

/// Number of analytic features per graph node.
pub const NODE_FEATURES: usize = 3;

/// Analytic cost of one op instance summed over the network.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OpCost {
    /// Multiply-accumulates.
    pub flops: f64,
    /// Weights.
    pub params: f64,
    /// Activation elements written.
    pub activations: f64,
}

impl OpCost {
    fn log_vector(self) -> [f64; NODE_FEATURES] {
        [
            (self.flops / 1e6).ln_1p(),
            (self.params / 1e3).ln_1p(),
            (self.activations / 1e3).ln_1p(),
        ]
    }
}

/// Cost of every node of an NB201 graph (input and output nodes cost nothing).
/// A cell op runs in all 15 cells: 5 per stage at C = 16/32/64 and 32/16/8 px.
pub fn nb201_node_costs(arch: &Nb201Arch) -> Vec<OpCost> {
    let stages = [(16.0, 32.0), (32.0, 16.0), (64.0, 8.0)];
    let mut costs = vec![OpCost::default()];
    for (edge, _) in NB201_EDGE_NODES.iter().enumerate() {
        let mut cost = OpCost::default();
        for &(c, hw) in &stages {
            let pixels: f64 = hw * hw;
            let (flops, params, act) = match arch.ops[edge] {
                Nb201Op::None => (0.0, 0.0, 0.0),
                Nb201Op::SkipConnect => (0.0, 0.0, pixels * c),
                Nb201Op::NorConv1x1 => (pixels * c * c, c * c, pixels * c),
                Nb201Op::NorConv3x3 => (9.0 * pixels * c * c, 9.0 * c * c, pixels * c),
                Nb201Op::AvgPool3x3 => (9.0 * pixels * c, 0.0, pixels * c),
            };
            cost.flops += 5.0 * flops;
            cost.params += 5.0 * params;
            cost.activations += 5.0 * act;
        }
        costs.push(cost);
    }
    costs.push(OpCost::default());
    costs
}

/// Cost of every node of an FBNet graph on the CIFAR-100 macro network (the
/// variant of the latency data): inverted residual = 1x1 expand (grouped),
/// kxk depthwise at the layer stride, 1x1 project (grouped); `skip` is free
/// unless the shape changes, then a strided 1x1 projection.
pub fn fbnet_node_costs(arch: &FbnetArch) -> Vec<OpCost> {
    let net = FbnetMacro::new(FbnetVariant::Cifar100);
    let mut res = (net.input[1] / net.stem_stride) as f64;
    let mut costs = vec![OpCost::default()];
    for (layer, block) in net.layers.iter().zip(arch.blocks.iter()) {
        let (c_in, c_out, s) = (layer.c_in as f64, layer.c_out as f64, layer.stride as f64);
        let out_res = res / s;
        let (pin, pout) = (res * res, out_res * out_res);
        let cost = match block.shape() {
            Some(shape) => {
                let mid = c_in * shape.expansion as f64;
                let g = shape.groups as f64;
                let k2 = (shape.kernel * shape.kernel) as f64;
                OpCost {
                    flops: pin * c_in * mid / g + pout * mid * k2 + pout * mid * c_out / g,
                    params: c_in * mid / g + mid * k2 + mid * c_out / g,
                    activations: pin * mid + pout * mid + pout * c_out,
                }
            }
            None if *block == FbnetBlock::Skip && (c_in != c_out || s > 1.0) => OpCost {
                flops: pout * c_in * c_out,
                params: c_in * c_out,
                activations: pout * c_out,
            },
            None => OpCost {
                activations: pout * c_out,
                ..OpCost::default()
            },
        };
        costs.push(cost);
        res = out_res;
    }
    costs.push(OpCost::default());
    costs
}

/// Which supplementary encoding goes to the head (paper Section 3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Supplementary {
    /// Graph embedding only.
    None,
    /// Zero-cost proxies of the space's ZCP table (NB201: FLOPs/params/Zen
    /// on 3 datasets; FBNet: 13 proxies).
    Zcp,
    /// Analytic cost: total FLOPs/params, op counts and per-node log FLOPs.
    Cost,
    /// ZCP and cost together.
    All,
    /// The cached Arch2Vec encoding (standardised).
    Arch2vec,
    /// The cached CATE encoding (standardised).
    Cate,
    /// CATE ++ Arch2Vec ++ paper-normalised ZCP (standardised).
    Caz,
}

impl Supplementary {
    /// The supplementary encoding of the paper's final configuration (its
    /// Table 7, appendix A.2): ZCP on NB201, Arch2Vec on FBNet.
    pub fn paper_final(space: SearchSpace) -> Supplementary {
        match space {
            SearchSpace::Nb201 => Supplementary::Zcp,
            SearchSpace::Fbnet => Supplementary::Arch2vec,
        }
    }

    /// The encoding this option reads from [`ArchFeatures::encodings`], if any.
    pub fn encoding(self) -> Option<EncodingKind> {
        match self {
            Supplementary::Arch2vec => Some(EncodingKind::Arch2vec),
            Supplementary::Cate => Some(EncodingKind::Cate),
            Supplementary::Caz => Some(EncodingKind::Caz),
            _ => None,
        }
    }
}

impl std::str::FromStr for Supplementary {
    type Err = PredictorError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(Supplementary::None),
            "zcp" => Ok(Supplementary::Zcp),
            "cost" => Ok(Supplementary::Cost),
            "all" | "zcp+cost" => Ok(Supplementary::All),
            "arch2vec" => Ok(Supplementary::Arch2vec),
            "cate" => Ok(Supplementary::Cate),
            "caz" => Ok(Supplementary::Caz),
            other => Err(PredictorError::input(
                "supplementary encoding",
                "none, zcp, cost, all, arch2vec, cate or caz",
                format!("`{other}`"),
            )),
        }
    }
}

impl std::fmt::Display for Supplementary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Supplementary::None => "none",
            Supplementary::Zcp => "zcp",
            Supplementary::Cost => "cost",
            Supplementary::All => "all",
            Supplementary::Arch2vec => "arch2vec",
            Supplementary::Cate => "cate",
            Supplementary::Caz => "caz",
        })
    }
}

/// Everything per architecture the predictor and the baselines consume,
/// for every row of a space's latency table.
#[derive(Debug, Clone)]
pub struct ArchFeatures {
    /// Rows.
    pub len: usize,
    /// Nodes per graph.
    pub nodes: usize,
    /// Op id per node, row-major `[len, nodes]`.
    pub ops: Vec<u32>,
    /// Aggregation matrix `A^T` (node j reads node i), `[nodes, nodes]`;
    /// identical for all graphs of a space.
    pub aggregation: Vec<f32>,
    /// Standardised per-node cost features, `[len, nodes, NODE_FEATURES]`.
    pub node_features: Vec<f32>,
    /// Standardised ZCP columns, `[len, zcp_dim]`.
    pub zcp: Vec<f32>,
    /// Width of `zcp`.
    pub zcp_dim: usize,
    /// Standardised analytic cost vector, `[len, cost_dim]`.
    pub cost: Vec<f32>,
    /// Width of `cost`.
    pub cost_dim: usize,
    /// Total analytic FLOPs per arch (for the FLOPs baseline when no ZCP exists).
    pub flops: Vec<f64>,
    /// Total analytic parameters per arch.
    pub params: Vec<f64>,
    /// Raw additive latency features (see [`crate::additive`]), `[len, additive_dim]`.
    pub additive: Vec<f64>,
    /// Width of `additive`.
    pub additive_dim: usize,
    /// Standardised encodings attached for `--supplementary` (`[len, dim]`, dim).
    pub encodings: std::collections::BTreeMap<EncodingKind, (Vec<f32>, usize)>,
    /// The space the rows belong to.
    pub space: SearchSpace,
    /// Mean and standard deviation of each per-node cost feature over the
    /// space's table (what [`ArchFeatures::for_archs`] standardises with).
    node_stats: Vec<(f64, f64)>,
    /// The same for the analytic cost vector.
    cost_stats: Vec<(f64, f64)>,
}

/// One architecture's unstandardised features.
struct RawArch {
    ops: Vec<u32>,
    node: Vec<f64>,
    cost: Vec<f64>,
    flops: f64,
    params: f64,
    additive: Vec<f64>,
}

impl RawArch {
    fn of(arch: &nasflat_shared::Arch, vocab: usize) -> Self {
        let graph = arch.graph();
        let (costs, additive) = match arch {
            nasflat_shared::Arch::Nb201(a) => (
                nb201_node_costs(a),
                crate::additive::nb201_additive(a).to_vec(),
            ),
            nasflat_shared::Arch::Fbnet(a) => (
                fbnet_node_costs(a),
                crate::additive::fbnet_additive(a).to_vec(),
            ),
        };
        let flops: f64 = costs.iter().map(|c| c.flops).sum();
        let params: f64 = costs.iter().map(|c| c.params).sum();
        let mut counts = vec![0.0; vocab.saturating_sub(2)];
        for &o in &graph.ops {
            if o >= 2 {
                counts[o - 2] += 1.0;
            }
        }
        let mut cost = vec![(flops / 1e6).ln_1p(), (params / 1e3).ln_1p()];
        cost.extend(counts);
        for c in &costs[1..costs.len() - 1] {
            cost.push((c.flops / 1e6).ln_1p());
        }
        RawArch {
            ops: graph.ops.iter().map(|&o| o as u32).collect(),
            node: costs.iter().flat_map(|c| c.log_vector()).collect(),
            cost,
            flops,
            params,
            additive,
        }
    }
}

impl ArchFeatures {
    /// Builds all features of a space.
    pub fn build(space: SearchSpace, zcp_table: &NumericTable) -> Result<Self> {
        let len = zcp_table.rows();
        let archs = (0..len)
            .map(|row| nasflat_shared::Arch::from_index(space, row))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let nodes = ArchGraph::node_count(space);
        let mut aggregation = vec![0f32; nodes * nodes];
        if let Some(first) = archs.first() {
            let graph = first.graph();
            for i in 0..nodes {
                for j in 0..nodes {
                    aggregation[j * nodes + i] = f32::from(graph.adjacency[i][j]);
                }
            }
        }
        let raw = raw_features(space, &archs)?;
        let node_rows: Vec<Vec<f64>> = raw
            .iter()
            .flat_map(|r| r.node.chunks(NODE_FEATURES).map(<[f64]>::to_vec))
            .collect();
        let cost_rows: Vec<Vec<f64>> = raw.iter().map(|r| r.cost.clone()).collect();
        let node_stats = all_column_stats(&node_rows);
        let cost_stats = all_column_stats(&cost_rows);
        let zcp_dim = zcp_table.names().len();
        let zcp_rows: Vec<Vec<f64>> = (0..len)
            .map(|r| {
                (0..zcp_dim)
                    .map(|c| {
                        let v = zcp_table.get(c, r).unwrap_or(0.0);
                        v.signum() * v.abs().ln_1p()
                    })
                    .collect()
            })
            .collect();
        let zcp = standardise_rows(&zcp_rows);
        let mut features = ArchFeatures {
            len,
            nodes,
            ops: Vec::new(),
            aggregation,
            node_features: Vec::new(),
            zcp,
            zcp_dim,
            cost: Vec::new(),
            cost_dim: cost_stats.len(),
            flops: Vec::new(),
            params: Vec::new(),
            additive: Vec::new(),
            additive_dim: crate::additive::additive_dim(space),
            encodings: std::collections::BTreeMap::new(),
            space,
            node_stats,
            cost_stats,
        };
        features.fill(&raw);
        Ok(features)
    }

    /// The same features of architectures given by value (any architecture
    /// of the space, not only table rows), standardised with the space's
    /// statistics so that row `i` of the result is what the predictor would
    /// see for `archs[i]` if it were in the table. Table-only inputs (ZCP
    /// columns, cached encodings) are absent: width 0, no encodings, so a
    /// predictor configured with them must not be fed these (see
    /// [`ArchFeatures::table_only`]).
    pub fn for_archs(&self, archs: &[nasflat_shared::Arch]) -> Result<Self> {
        if let Some(a) = archs.iter().find(|a| a.space() != self.space) {
            return Err(PredictorError::input(
                "architectures",
                format!("{} architectures", self.space),
                format!("a {} architecture", a.space()),
            ));
        }
        let raw = raw_features(self.space, archs)?;
        let mut out = self.clone_shape();
        out.len = archs.len();
        out.fill(&raw);
        Ok(out)
    }

    /// Whether a supplementary input exists only for table rows (read from
    /// a table or a cached file), so [`ArchFeatures::for_archs`] lacks it.
    pub fn table_only(kind: Supplementary) -> bool {
        !matches!(kind, Supplementary::None | Supplementary::Cost)
    }

    /// Everything but the per-row vectors.
    fn clone_shape(&self) -> Self {
        ArchFeatures {
            len: 0,
            nodes: self.nodes,
            ops: Vec::new(),
            aggregation: self.aggregation.clone(),
            node_features: Vec::new(),
            zcp: Vec::new(),
            zcp_dim: 0,
            cost: Vec::new(),
            cost_dim: self.cost_dim,
            flops: Vec::new(),
            params: Vec::new(),
            additive: Vec::new(),
            additive_dim: self.additive_dim,
            encodings: std::collections::BTreeMap::new(),
            space: self.space,
            node_stats: self.node_stats.clone(),
            cost_stats: self.cost_stats.clone(),
        }
    }

    /// Appends the rows of `raw`, standardised with the stored statistics.
    fn fill(&mut self, raw: &[RawArch]) {
        for r in raw {
            self.ops.extend_from_slice(&r.ops);
            for node in r.node.chunks(NODE_FEATURES) {
                self.node_features
                    .extend(standardise_with(node, &self.node_stats));
            }
            self.cost
                .extend(standardise_with(&r.cost, &self.cost_stats));
            self.flops.push(r.flops);
            self.params.push(r.params);
            self.additive.extend_from_slice(&r.additive);
        }
    }

    /// Additive latency features of `row`.
    pub fn additive_row(&self, row: usize) -> &[f64] {
        &self.additive[row * self.additive_dim..(row + 1) * self.additive_dim]
    }

    /// Makes an encoding available as a supplementary input (standardised
    /// per column, like the other supplementary vectors).
    pub fn attach_encoding(&mut self, kind: EncodingKind, encoding: &Encoding) {
        self.encodings
            .insert(kind, (encoding.standardised(), encoding.dim()));
    }

    /// Whether the supplementary encoding's data is present (the learned
    /// encodings need their cached files).
    pub fn has_supplementary(&self, kind: Supplementary) -> bool {
        kind.encoding()
            .is_none_or(|e| self.encodings.contains_key(&e))
    }

    /// Width of a supplementary encoding.
    pub fn supplementary_dim(&self, kind: Supplementary) -> usize {
        match kind {
            Supplementary::None => 0,
            Supplementary::Zcp => self.zcp_dim,
            Supplementary::Cost => self.cost_dim,
            Supplementary::All => self.zcp_dim + self.cost_dim,
            other => other
                .encoding()
                .and_then(|e| self.encodings.get(&e))
                .map_or(0, |(_, d)| *d),
        }
    }

    /// Appends the supplementary encoding of `row` to `out`.
    pub fn push_supplementary(&self, kind: Supplementary, row: usize, out: &mut Vec<f32>) {
        let zcp = &self.zcp[row * self.zcp_dim..(row + 1) * self.zcp_dim];
        let cost = &self.cost[row * self.cost_dim..(row + 1) * self.cost_dim];
        match kind {
            Supplementary::None => {}
            Supplementary::Zcp => out.extend_from_slice(zcp),
            Supplementary::Cost => out.extend_from_slice(cost),
            Supplementary::All => {
                out.extend_from_slice(zcp);
                out.extend_from_slice(cost);
            }
            other => {
                if let Some((values, d)) = other.encoding().and_then(|e| self.encodings.get(&e)) {
                    out.extend_from_slice(&values[row * d..(row + 1) * d]);
                }
            }
        }
    }

    /// One-hot op encoding of `row` (the HELP/MultiPredict MLP input).
    pub fn push_one_hot(&self, vocab: usize, row: usize, out: &mut Vec<f32>) {
        for &o in &self.ops[row * self.nodes..(row + 1) * self.nodes] {
            for v in 0..vocab {
                out.push(if v == o as usize { 1.0 } else { 0.0 });
            }
        }
    }
}

fn column_stats(rows: &[Vec<f64>], col: usize) -> (f64, f64) {
    let n = rows.len().max(1) as f64;
    let mean = rows.iter().map(|r| r[col]).sum::<f64>() / n;
    let var = rows.iter().map(|r| (r[col] - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

fn all_column_stats(rows: &[Vec<f64>]) -> Vec<(f64, f64)> {
    let dim = rows.first().map_or(0, Vec::len);
    (0..dim).map(|c| column_stats(rows, c)).collect()
}

/// `(v - mean) / std` per column; 0 for a constant column.
fn standardise_with(values: &[f64], stats: &[(f64, f64)]) -> impl Iterator<Item = f32> {
    values.iter().zip(stats).map(
        |(&v, &(m, s))| {
            if s > 1e-12 { ((v - m) / s) as f32 } else { 0.0 }
        },
    )
}

/// Raw features of `archs`, each checked to have the space's node count.
fn raw_features(space: SearchSpace, archs: &[nasflat_shared::Arch]) -> Result<Vec<RawArch>> {
    let nodes = ArchGraph::node_count(space);
    let vocab = ArchGraph::op_vocab_size(space);
    archs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let raw = RawArch::of(a, vocab);
            if raw.ops.len() == nodes {
                Ok(raw)
            } else {
                Err(PredictorError::input(
                    "graph",
                    "the space's node count",
                    format!("architecture {i} with {} nodes", raw.ops.len()),
                ))
            }
        })
        .collect()
}

fn standardise_rows(rows: &[Vec<f64>]) -> Vec<f32> {
    let dim = rows.first().map_or(0, Vec::len);
    let stats: Vec<(f64, f64)> = (0..dim).map(|c| column_stats(rows, c)).collect();
    let mut out = Vec::with_capacity(rows.len() * dim);
    for r in rows {
        for (c, &(m, s)) in stats.iter().enumerate() {
            out.push(if s > 1e-12 {
                ((r[c] - m) / s) as f32
            } else {
                0.0
            });
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn nb201_conv3x3_costs_nine_times_conv1x1() {
        let arch = Nb201Arch::from_ids([3, 2, 0, 1, 4, 0]).unwrap();
        let c = nb201_node_costs(&arch);
        assert_eq!(c.len(), 8);
        assert!((c[1].flops / c[2].flops - 9.0).abs() < 1e-9);
        assert_eq!(c[3].flops, 0.0);
    }

    #[test]
    fn fbnet_expansion_costs_more() {
        let small = FbnetArch::from_ids(&[0; 22]).unwrap();
        let big = FbnetArch::from_ids(&[7; 22]).unwrap();
        let s: f64 = fbnet_node_costs(&small).iter().map(|c| c.flops).sum();
        let b: f64 = fbnet_node_costs(&big).iter().map(|c| c.flops).sum();
        assert!(b > 3.0 * s);
    }
}

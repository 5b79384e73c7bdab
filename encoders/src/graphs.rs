//! Every architecture of a space as an [`ArchGraph`], batched into tensors.
//!
//! NB201: all 15,625 cells by official index; FBNet: the 5,000 rows of the
//! data tables (HELP's list), in table order. Both learned encoders train on
//! exactly these graphs, and the cached embeddings have one row per entry.

use candle_core::{Device, Tensor};
use nasflat_shared::{ArchGraph, FbnetArch, Nb201Arch, SearchSpace};

use crate::error::Result;

/// The graphs of one space, in index order.
#[derive(Debug, Clone)]
pub struct SpaceGraphs {
    /// Which space.
    pub space: SearchSpace,
    /// Nodes per graph (NB201 8, FBNet 24).
    pub nodes: usize,
    /// Op vocabulary size, input and output included (NB201 7, FBNet 11).
    pub vocab: usize,
    /// One graph per architecture index.
    pub graphs: Vec<ArchGraph>,
}

impl SpaceGraphs {
    /// All architectures of `space`.
    pub fn load(space: SearchSpace) -> Result<Self> {
        let graphs: Vec<ArchGraph> = match space {
            SearchSpace::Nb201 => Nb201Arch::all().iter().map(ArchGraph::from).collect(),
            SearchSpace::Fbnet => FbnetArch::table().iter().map(ArchGraph::from).collect(),
        };
        Ok(Self::from_graphs(space, graphs))
    }

    /// A subset (tests and tiny runs): the graphs at `indices`.
    pub fn subset(&self, indices: &[usize]) -> Self {
        let graphs = indices
            .iter()
            .filter_map(|&i| self.graphs.get(i).cloned())
            .collect();
        Self::from_graphs(self.space, graphs)
    }

    fn from_graphs(space: SearchSpace, graphs: Vec<ArchGraph>) -> Self {
        SpaceGraphs {
            space,
            nodes: ArchGraph::node_count(space),
            vocab: ArchGraph::op_vocab_size(space),
            graphs,
        }
    }

    /// Number of architectures.
    pub fn len(&self) -> usize {
        self.graphs.len()
    }

    /// Whether there is no architecture.
    pub fn is_empty(&self) -> bool {
        self.graphs.is_empty()
    }

    /// Op ids `[batch, nodes]` (u32) of the graphs at `batch`.
    pub fn ops(&self, batch: &[usize]) -> Result<Tensor> {
        let data: Vec<u32> = batch
            .iter()
            .flat_map(|&i| self.graphs[i].ops.iter().map(|&o| o as u32))
            .collect();
        Ok(Tensor::from_vec(
            data,
            (batch.len(), self.nodes),
            &Device::Cpu,
        )?)
    }

    /// One-hot ops `[batch, nodes, vocab]` (f32).
    pub fn one_hot_ops(&self, batch: &[usize]) -> Result<Tensor> {
        let mut data = vec![0f32; batch.len() * self.nodes * self.vocab];
        for (b, &i) in batch.iter().enumerate() {
            for (n, &op) in self.graphs[i].ops.iter().enumerate() {
                data[(b * self.nodes + n) * self.vocab + op] = 1.0;
            }
        }
        Ok(Tensor::from_vec(
            data,
            (batch.len(), self.nodes, self.vocab),
            &Device::Cpu,
        )?)
    }

    /// Directed adjacency `[batch, nodes, nodes]` (f32, upper triangular).
    pub fn adjacency(&self, batch: &[usize]) -> Result<Tensor> {
        let data: Vec<f32> = batch
            .iter()
            .flat_map(|&i| {
                self.graphs[i]
                    .adjacency
                    .iter()
                    .flat_map(|row| row.iter().map(|&a| f32::from(a)))
            })
            .collect();
        Ok(Tensor::from_vec(
            data,
            (batch.len(), self.nodes, self.nodes),
            &Device::Cpu,
        )?)
    }

    /// Whether node `j` is a neighbour of node `i` in either direction or
    /// `i == j`: the attention pattern of CATE's adjacency-aware mask and
    /// the message pattern of the GIN.
    pub fn undirected_with_self(&self, index: usize) -> Vec<bool> {
        let a = &self.graphs[index].adjacency;
        let n = self.nodes;
        let mut out = vec![false; n * n];
        for i in 0..n {
            for j in 0..n {
                out[i * n + j] = i == j || a[i][j] != 0 || a[j][i] != 0;
            }
        }
        out
    }
}

//! The graph encoding the predictor consumes: a DAG whose nodes are operations.
//!
//! Both spaces become "operations as nodes" graphs (paper Section 3.1): an
//! adjacency matrix `A[i][j] = 1` iff node `i` feeds node `j`, and one op id
//! per node from a per-space vocabulary where `0 = input`, `1 = output` and
//! `2 + k` is the space's op/block `k`.
//!
//! **NB201** (8 nodes): input, the 6 edge ops in canonical edge order, output.
//! The op node of edge `e_ij` reads the input node when `i = 0`, else every
//! op node whose edge ends in cell node `i`; the output node reads every op
//! node of an edge ending in node 3. The adjacency is the same for all
//! architectures; `none` edges stay as nodes with their own op id so that the
//! graph size is fixed. Worked example for
//! `|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|`:
//!
//! ```text
//! node: 0 in  1 e01  2 e02  3 e12  4 e03  5 e13  6 e23  7 out
//! ops:  [0,   6,     4,     3,     4,     3,     3,     1]
//! edges: 0->1 0->2 0->4   1->3 1->5   2->6 3->6   4->7 5->7 6->7
//! ```
//!
//! ```
//! use nasflat_shared::{ArchGraph, Nb201Arch};
//! let arch: Nb201Arch = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|".parse()?;
//! let g = ArchGraph::from(&arch);
//! assert_eq!(g.ops, vec![0, 6, 4, 3, 4, 3, 3, 1]);
//! assert_eq!(g.adjacency[1][3], 1); // e01 feeds e12
//! assert_eq!(g.adjacency[6][7], 1); // e23 feeds the output
//! # Ok::<(), nasflat_shared::SpaceError>(())
//! ```
//!
//! **FBNet** (24 nodes): a chain input -> layer 0 -> ... -> layer 21 -> output,
//! op id `2 + block id`.

use serde::{Deserialize, Serialize};

use crate::fbnet::{FBNET_LAYERS, FbnetArch};
use crate::nb201::{NB201_EDGE_NODES, NB201_EDGES, Nb201Arch};
use crate::space::SearchSpace;

/// Op id of the input node in every space.
pub const INPUT_OP: usize = 0;
/// Op id of the output node in every space.
pub const OUTPUT_OP: usize = 1;

/// Adjacency matrix plus op id per node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchGraph {
    /// `adjacency[i][j] == 1` iff node `i` feeds node `j`; upper triangular.
    pub adjacency: Vec<Vec<u8>>,
    /// Op id per node (see the module docs for the vocabulary).
    pub ops: Vec<usize>,
}

impl ArchGraph {
    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the graph has no node (never true for a built graph).
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Size of the op vocabulary of a space (input and output included).
    pub fn op_vocab_size(space: SearchSpace) -> usize {
        match space {
            SearchSpace::Nb201 => 2 + 5,
            SearchSpace::Fbnet => 2 + 9,
        }
    }

    /// Number of nodes of every graph of a space.
    pub fn node_count(space: SearchSpace) -> usize {
        match space {
            SearchSpace::Nb201 => NB201_EDGES + 2,
            SearchSpace::Fbnet => FBNET_LAYERS + 2,
        }
    }
}

impl From<&Nb201Arch> for ArchGraph {
    fn from(arch: &Nb201Arch) -> Self {
        let n = NB201_EDGES + 2;
        let out = n - 1;
        let mut adjacency = vec![vec![0u8; n]; n];
        for (edge, &(from, to)) in NB201_EDGE_NODES.iter().enumerate() {
            let node = edge + 1;
            if from == 0 {
                adjacency[0][node] = 1;
            } else {
                for (producer, &(_, end)) in NB201_EDGE_NODES.iter().enumerate() {
                    if end == from {
                        adjacency[producer + 1][node] = 1;
                    }
                }
            }
            if to == 3 {
                adjacency[node][out] = 1;
            }
        }
        let mut ops = Vec::with_capacity(n);
        ops.push(INPUT_OP);
        ops.extend(arch.ops.iter().map(|op| 2 + usize::from(op.id())));
        ops.push(OUTPUT_OP);
        ArchGraph { adjacency, ops }
    }
}

impl From<&FbnetArch> for ArchGraph {
    fn from(arch: &FbnetArch) -> Self {
        let n = FBNET_LAYERS + 2;
        let mut adjacency = vec![vec![0u8; n]; n];
        for i in 0..n - 1 {
            adjacency[i][i + 1] = 1;
        }
        let mut ops = Vec::with_capacity(n);
        ops.push(INPUT_OP);
        ops.extend(arch.blocks.iter().map(|b| 2 + usize::from(b.id())));
        ops.push(OUTPUT_OP);
        ArchGraph { adjacency, ops }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nb201_adjacency_is_a_dag_reaching_output() {
        let arch = Nb201Arch::from_ids([1, 2, 3, 4, 0, 1]).unwrap();
        let g = ArchGraph::from(&arch);
        assert_eq!(g.len(), ArchGraph::node_count(SearchSpace::Nb201));
        let edges: usize = g.adjacency.iter().flatten().map(|&x| usize::from(x)).sum();
        assert_eq!(edges, 10);
        for i in 0..g.len() {
            for j in 0..=i {
                assert_eq!(g.adjacency[i][j], 0, "not upper triangular at {i},{j}");
            }
        }
        assert!(
            g.ops
                .iter()
                .all(|&o| o < ArchGraph::op_vocab_size(SearchSpace::Nb201))
        );
    }

    #[test]
    fn fbnet_is_a_chain() {
        let arch = FbnetArch::from_ids(&[8; 22]).unwrap();
        let g = ArchGraph::from(&arch);
        assert_eq!(g.len(), 24);
        assert_eq!(g.ops[1], 10);
        assert_eq!(g.adjacency[22][23], 1);
        assert_eq!(g.adjacency[0][2], 0);
    }
}

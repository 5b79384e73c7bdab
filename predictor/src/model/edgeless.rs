//! Graphs with no edges but self loops (the code's FBNet graphs), as sets.
//!
//! In such a graph the code's network ([`super::code_net`]) gives every
//! middle node with the same op the same state at every layer: a node's
//! state depends on its own op, its device and sums over the whole graph,
//! never on its position. So a graph is computed as its input node, one
//! row per distinct middle op with the number of layers holding it, and
//! its output node: an FBNet graph of 24 nodes becomes at most 11 rows.

use candle_core::{Device, Tensor};

use crate::error::{PredictorError, Result};

/// A batch of edgeless graphs, one row per distinct node state.
#[derive(Debug, Clone)]
pub struct NodeSet {
    /// Op id per row, row-major `[U, B]` u32: row 0 the input node, rows
    /// `1..U-1` the distinct middle ops (padded), row `U-1` the output.
    pub ops: Tensor,
    /// How many of the graph's nodes each row stands for, `[U, B, 1]`
    /// (0 for padding, so padding never enters a sum).
    pub counts: Tensor,
    /// Nodes per graph before grouping (the attention's scale and the
    /// readout's denominator are the real graph's).
    pub nodes: usize,
}

impl NodeSet {
    /// Groups the middle nodes of every graph by op; `ops` holds each
    /// node's op id, node-major `[N, B]` (a batch's `GraphBatch::ops`).
    pub fn group(ops: &Tensor) -> Result<Self> {
        let per_node: Vec<Vec<u32>> = ops.to_vec2()?;
        let nodes = per_node.len();
        if nodes < 2 {
            return Err(PredictorError::input(
                "graph",
                "an input and an output node",
                format!("{nodes} nodes"),
            ));
        }
        let graphs = per_node[0].len();
        let groups: Vec<Vec<(u32, usize)>> = (0..graphs)
            .map(|g| group_ops(per_node[1..nodes - 1].iter().map(|row| row[g])))
            .collect();
        let rows = 2 + groups.iter().map(Vec::len).max().unwrap_or(0);
        let mut ops = vec![0u32; rows * graphs];
        let mut counts = vec![0f32; rows * graphs];
        for (g, group) in groups.iter().enumerate() {
            let at = |row: usize| row * graphs + g;
            ops[at(0)] = per_node[0][g];
            counts[at(0)] = 1.0;
            ops[at(rows - 1)] = per_node[nodes - 1][g];
            counts[at(rows - 1)] = 1.0;
            // Padding repeats a real op with count 0: finite, and unseen.
            let pad = group.first().map_or(per_node[nodes - 1][g], |&(op, _)| op);
            for row in 1..rows - 1 {
                let (op, count) = group.get(row - 1).copied().unwrap_or((pad, 0));
                ops[at(row)] = op;
                counts[at(row)] = count as f32;
            }
        }
        let cpu = Device::Cpu;
        Ok(NodeSet {
            ops: Tensor::from_vec(ops, (rows, graphs), &cpu)?,
            counts: Tensor::from_vec(counts, (rows, graphs, 1), &cpu)?,
            nodes,
        })
    }
}

/// Distinct ops in ascending order with how often each occurs.
fn group_ops(ops: impl Iterator<Item = u32>) -> Vec<(u32, usize)> {
    let mut sorted: Vec<u32> = ops.collect();
    sorted.sort_unstable();
    let mut groups: Vec<(u32, usize)> = Vec::new();
    for op in sorted {
        match groups.last_mut() {
            Some((last, count)) if *last == op => *count += 1,
            _ => groups.push((op, 1)),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn groups_count_each_op_once() {
        assert_eq!(
            group_ops([3, 1, 3, 3, 0].into_iter()),
            vec![(0, 1), (1, 1), (3, 3)]
        );
        assert!(group_ops(std::iter::empty()).is_empty());
    }
}

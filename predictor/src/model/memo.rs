//! Memoised inference over many graphs of one space.
//!
//! Every graph of a space has the same adjacency, and the hardware row is
//! fixed during a prediction, so after `l` message-passing steps a node's
//! state depends only on its position and on the inputs of the nodes within
//! `l` hops upstream. Whole-space prediction therefore recomputes the same
//! node states again and again: NB201's first input edges have 5 possible
//! states, not 15,625. A [`Level`] interns the states of one step (two nodes
//! share a row iff their positions and the rows of everything they read
//! are equal); a [`Step`] holds the gather indices that compute the next
//! level's unique rows from the previous one's. The arithmetic per unique
//! row is that of [`super::gnn`], so results equal the batched forward up
//! to float summation order; only the number of rows shrinks (NB201 whole
//! space: 125,000 node states per layer before, far fewer after).

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use crate::error::Result;

/// Marks a (graph, node) whose state a level does not compute.
const ABSENT: u32 = u32::MAX;

/// Bias that removes a padded neighbour from a softmax (`exp` of it is 0).
const MASKED: f32 = -1e9;

/// The unique node states of one step over a batch of graphs.
#[derive(Debug, Clone)]
pub struct Level {
    /// Unique-row id per (graph, node), graph-major `[graphs * nodes]`;
    /// [`ABSENT`] where this level is not computed.
    ids: Vec<u32>,
    /// One `graph * nodes + node` holding each unique row.
    reps: Vec<usize>,
    /// Nodes per graph.
    nodes: usize,
}

impl Level {
    /// Interns per-node input keys (e.g. position, op id and cost-feature
    /// bits): nodes with equal keys share a row. `key(flat)` is called for
    /// every `graph * nodes + node` and must include the node position if
    /// the inputs do.
    pub fn from_keys<K, F>(graphs: usize, nodes: usize, mut key: F) -> Self
    where
        K: std::hash::Hash + Eq,
        F: FnMut(usize) -> K,
    {
        let mut seen: HashMap<K, u32> = HashMap::new();
        let mut ids = Vec::with_capacity(graphs * nodes);
        let mut reps = Vec::new();
        for flat in 0..graphs * nodes {
            let next = reps.len() as u32;
            let id = *seen.entry(key(flat)).or_insert(next);
            if id == next {
                reps.push(flat);
            }
            ids.push(id);
        }
        Level { ids, reps, nodes }
    }

    /// One `graph * nodes + node` holding each unique row, by row.
    pub fn reps(&self) -> &[usize] {
        &self.reps
    }

    /// Number of unique rows.
    pub fn len(&self) -> usize {
        self.reps.len()
    }

    /// True when no row is computed.
    pub fn is_empty(&self) -> bool {
        self.reps.is_empty()
    }

    /// Row of `(graph, node)`, if this level computes it.
    pub fn id(&self, graph: usize, node: usize) -> Option<usize> {
        let id = *self.ids.get(graph * self.nodes + node)?;
        (id != ABSENT).then_some(id as usize)
    }

    /// For each unique row of `self`, the row of `other` at the same
    /// (graph, node) (so a level's rows can pick up another level's values).
    pub fn rows_in(&self, other: &Level) -> Result<Tensor> {
        let mut idx = Vec::with_capacity(self.len());
        for &flat in &self.reps {
            idx.push(present(other.ids[flat], "rows_in")?);
        }
        index_tensor(idx)
    }
}

/// Gather indices for one message-passing step `x (level a) -> level c`,
/// gated by values of level `g`. Neighbour slot 0 is the node itself,
/// slots 1.. its predecessors, padded (with the node itself) to the largest
/// in-degree among the computed positions.
#[derive(Debug, Clone)]
pub struct Step {
    /// The level this step produces.
    pub level: Level,
    /// Row of `a` of each new row's own node, `[U]`.
    pub self_rows: Tensor,
    /// Rows of `a` of each neighbour slot, one `[U]` index per slot (slot 0
    /// is `self_rows`). Gathering slot by slot keeps every intermediate at
    /// `[U, d]`: a padded `[U, slots, d]` gather of the whole NB201 space
    /// passes glibc's 32 MB mmap ceiling and page-faults on every use.
    pub slot_rows: Vec<Tensor>,
    /// 1 for a real predecessor, 0 for the node itself and padding, `[U, slots]`
    /// (the sum a DGF layer aggregates).
    pub predecessor_weight: Tensor,
    /// 0 for the node itself and real predecessors, -1e9 for padding,
    /// `[U, slots]` (the attention mask of a GAT layer).
    pub attention_bias: Tensor,
    /// Row of `g` of each new row's node, `[U]`.
    pub gate_rows: Tensor,
    /// Neighbour slots per row.
    pub slots: usize,
}

impl Step {
    /// Interns `(node, a(node), a(predecessors), g(node))` for every graph
    /// and every node in `compute` (a position mask), so equal inputs share
    /// a row, and builds the gathers. `a` and `g` must compute every node
    /// in `compute` and all their predecessors.
    pub fn new(a: &Level, g: &Level, preds: &[Vec<usize>], compute: &[bool]) -> Result<Self> {
        let nodes = a.nodes;
        let graphs = a.ids.len() / nodes.max(1);
        let slots = 1
            + (0..nodes)
                .filter(|&v| compute[v])
                .map(|v| preds[v].len())
                .max()
                .unwrap_or(0);
        let mut seen: HashMap<Vec<u32>, u32> = HashMap::new();
        let mut ids = vec![ABSENT; graphs * nodes];
        let mut reps = Vec::new();
        let mut key = Vec::with_capacity(slots + 2);
        let mut self_rows = Vec::new();
        let mut neighbour_rows: Vec<Vec<u32>> = vec![Vec::new(); slots];
        let mut weight = Vec::new();
        let mut bias = Vec::new();
        let mut gate_rows = Vec::new();
        for graph in 0..graphs {
            let base = graph * nodes;
            for v in (0..nodes).filter(|&v| compute[v]) {
                let own = present(a.ids[base + v], "node state")?;
                key.clear();
                key.push(v as u32);
                key.push(own);
                for &p in &preds[v] {
                    key.push(present(a.ids[base + p], "predecessor state")?);
                }
                let gate = present(g.ids[base + v], "gate state")?;
                key.push(gate);
                let next = reps.len() as u32;
                let id = match seen.get(key.as_slice()) {
                    Some(&id) => id,
                    None => {
                        seen.insert(key.clone(), next);
                        reps.push(base + v);
                        self_rows.push(own);
                        gate_rows.push(gate);
                        neighbour_rows[0].push(own);
                        weight.push(0f32);
                        bias.push(0f32);
                        for (s, slot) in neighbour_rows.iter_mut().enumerate().skip(1) {
                            match preds[v].get(s - 1) {
                                Some(&p) => {
                                    slot.push(a.ids[base + p]);
                                    weight.push(1.0);
                                    bias.push(0.0);
                                }
                                None => {
                                    slot.push(own);
                                    weight.push(0.0);
                                    bias.push(MASKED);
                                }
                            }
                        }
                        next
                    }
                };
                ids[base + v] = id;
            }
        }
        let rows = reps.len();
        let cpu = Device::Cpu;
        Ok(Step {
            level: Level { ids, reps, nodes },
            self_rows: index_tensor(self_rows)?,
            slot_rows: neighbour_rows
                .into_iter()
                .map(index_tensor)
                .collect::<Result<_>>()?,
            predecessor_weight: Tensor::from_vec(weight, (rows, slots), &cpu)?,
            attention_bias: Tensor::from_vec(bias, (rows, slots), &cpu)?,
            gate_rows: index_tensor(gate_rows)?,
            slots,
        })
    }
}

/// Positions whose states each of `layers` steps must compute so that the
/// last step yields every position in `readout`: working backwards, a step
/// needs its successor's positions and their predecessors. Index 0 = first
/// step.
pub fn needed_positions(preds: &[Vec<usize>], readout: &[usize], layers: usize) -> Vec<Vec<bool>> {
    let nodes = preds.len();
    let mut need = vec![false; nodes];
    for &v in readout.iter().filter(|&&v| v < nodes) {
        need[v] = true;
    }
    let mut out = Vec::with_capacity(layers);
    for _ in 0..layers {
        out.push(need.clone());
        let mut wider = need.clone();
        for v in (0..nodes).filter(|&v| need[v]) {
            for &p in &preds[v] {
                wider[p] = true;
            }
        }
        need = wider;
    }
    out.reverse();
    out
}

fn present(id: u32, what: &str) -> Result<u32> {
    if id == ABSENT {
        return Err(crate::error::PredictorError::internal(
            "memoised inference",
            format!("{what} was not computed by the previous level"),
        ));
    }
    Ok(id)
}

fn index_tensor(idx: Vec<u32>) -> Result<Tensor> {
    let n = idx.len();
    Ok(Tensor::from_vec(idx, n, &Device::Cpu)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A chain 0 -> 1 -> 2 (FBNet-like), two ops per node.
    fn chain() -> Vec<Vec<usize>> {
        vec![vec![], vec![0], vec![1]]
    }

    #[test]
    fn equal_inputs_share_rows_and_receptive_fields_grow() {
        // 4 graphs; op of node v in graph g = bit v of g (node 2 always 0).
        let ops = |flat: usize| {
            let (g, v) = (flat / 3, flat % 3);
            (v, if v < 2 { (g >> v) & 1 } else { 0 })
        };
        let l0 = Level::from_keys(4, 3, ops);
        // node 0: 2 states, node 1: 2, node 2: 1.
        assert_eq!(l0.len(), 5);
        let all = vec![true; 3];
        let s1 = Step::new(&l0, &l0, &chain(), &all).unwrap();
        // node 0: 2; node 1: (own, node 0) 4; node 2: (own=0, node 1) 2.
        assert_eq!(s1.level.len(), 8);
        let s2 = Step::new(&s1.level, &l0, &chain(), &all).unwrap();
        // node 2 now sees node 0 too: 4 states.
        assert_eq!(s2.level.len(), 2 + 4 + 4);
        // Graphs 0 and 1 differ only at node 0: one step later node 2 cannot
        // tell them apart, two steps later it can.
        assert_eq!(s1.level.id(0, 2), s1.level.id(1, 2));
        assert_ne!(s2.level.id(0, 2), s2.level.id(1, 2));
        assert!(s2.level.id(1, 2).is_some());
    }

    #[test]
    fn padding_is_masked_and_self_is_slot_zero() {
        let preds = vec![vec![], vec![0], vec![0, 1]];
        let l0 = Level::from_keys(1, 3, |flat| flat);
        let step = Step::new(&l0, &l0, &preds, &[true; 3]).unwrap();
        assert_eq!(step.slots, 3);
        let w = step.predecessor_weight.to_vec2::<f32>().unwrap();
        let b = step.attention_bias.to_vec2::<f32>().unwrap();
        assert_eq!(
            w,
            vec![vec![0., 0., 0.], vec![0., 1., 0.], vec![0., 1., 1.]]
        );
        assert_eq!(b[0], vec![0., MASKED, MASKED]);
        assert_eq!(b[1], vec![0., 0., MASKED]);
        assert_eq!(b[2], vec![0., 0., 0.]);
        let n: Vec<Vec<u32>> = step
            .slot_rows
            .iter()
            .map(|t| t.to_vec1::<u32>().unwrap())
            .collect();
        assert_eq!(n, vec![vec![0, 1, 2], vec![0, 0, 0], vec![0, 1, 1]]);
    }

    #[test]
    fn pruned_positions_are_absent_and_reading_them_is_an_error() {
        let preds = chain();
        let need = needed_positions(&preds, &[2], 2);
        assert_eq!(
            need,
            vec![vec![false, true, true], vec![false, false, true]]
        );
        let l0 = Level::from_keys(2, 3, |flat| flat);
        let s1 = Step::new(&l0, &l0, &preds, &need[0]).unwrap();
        assert_eq!(s1.level.id(0, 0), None);
        assert!(s1.level.id(0, 1).is_some());
        // Computing node 1 again from s1 needs node 0, which s1 skipped.
        assert!(Step::new(&s1.level, &l0, &preds, &[false, true, false]).is_err());
    }

    #[test]
    fn a_readout_of_several_nodes_needs_the_union_of_their_cones() {
        // The mean readout reads nodes 1 and 2 of the chain: the last step
        // computes both, the first also node 1's predecessor.
        let need = needed_positions(&chain(), &[1, 2], 2);
        assert_eq!(need, vec![vec![true, true, true], vec![false, true, true]]);
        let need = needed_positions(&chain(), &[1], 1);
        assert_eq!(need, vec![vec![false, true, false]]);
    }
}

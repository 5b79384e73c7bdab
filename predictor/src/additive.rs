//! Additive latency features: what a device's latency is, to first order, a
//! *linear* function of.
//!
//! On a device that runs a network's ops one after another, latency is close
//! to the sum of per-op costs, and each op's cost grows with its arithmetic
//! and memory work. So a linear model in milliseconds on a handful of such
//! totals is the physically right prior, and with k = 20 samples it can be
//! estimated well where a model with hundreds of weights cannot:
//!
//! - **NB201**: every cell repeats the same six-edge DAG and all edges of a
//!   cell see the same tensor shape, so an op costs the same on any edge. The
//!   features are, per op type (skip, conv1x1, conv3x3, avg-pool), how many
//!   edges use it and how many of those lie on a live input-to-output path
//!   (frameworks may prune dead edges, so both counts matter).
//! - **FBNet**: a block's cost depends on its layer's shape, so counts are not
//!   enough; the features are the network totals of expand-conv MACs,
//!   depthwise MACs, project MACs, weights, activation traffic and the number
//!   of convolutions (kernel launches).
//!
//! Fitting these with leave-one-out ridge beats the paper's predictor on
//! several tasks by itself (docs/experiments/table7.md); the served predictor blends it
//! with the GNN and the source-device regression.

use nasflat_shared::{
    FbnetArch, FbnetBlock, FbnetMacro, FbnetVariant, NB201_EDGE_NODES, Nb201Arch, Nb201Op,
    SearchSpace,
};

/// Width of the additive feature vector of a space.
pub fn additive_dim(space: SearchSpace) -> usize {
    match space {
        SearchSpace::Nb201 => 8,
        SearchSpace::Fbnet => 6,
    }
}

/// Edges whose op is not `none` and that lie on a path from the cell input
/// (node 0) to its output (node 3).
pub fn nb201_live_edges(arch: &Nb201Arch) -> [bool; 6] {
    let present = |e: usize| arch.ops[e] != Nb201Op::None;
    let mut forward = [true, false, false, false];
    for (e, &(from, to)) in NB201_EDGE_NODES.iter().enumerate() {
        // Edges are sorted by destination, so `forward[from]` is final here.
        if forward[from] && present(e) {
            forward[to] = true;
        }
    }
    let mut backward = [false, false, false, true];
    for (e, &(from, to)) in NB201_EDGE_NODES.iter().enumerate().rev() {
        if backward[to] && present(e) {
            backward[from] = true;
        }
    }
    let mut live = [false; 6];
    for (e, &(from, to)) in NB201_EDGE_NODES.iter().enumerate() {
        live[e] = present(e) && forward[from] && backward[to];
    }
    live
}

/// NB201: `[count(skip, conv1x1, conv3x3, pool), live count(same four)]`.
pub fn nb201_additive(arch: &Nb201Arch) -> [f64; 8] {
    let live = nb201_live_edges(arch);
    let mut f = [0.0; 8];
    for (e, op) in arch.ops.iter().enumerate() {
        let slot = match op {
            Nb201Op::None => continue,
            Nb201Op::SkipConnect => 0,
            Nb201Op::NorConv1x1 => 1,
            Nb201Op::NorConv3x3 => 2,
            Nb201Op::AvgPool3x3 => 3,
        };
        f[slot] += 1.0;
        if live[e] {
            f[4 + slot] += 1.0;
        }
    }
    f
}

/// FBNet (CIFAR-100 macro, the latency tables' variant): network totals of
/// `[expand MACs, depthwise MACs, project MACs, weights, activations, convs]`.
/// MACs in millions, weights and activations in thousands, so the columns
/// have comparable magnitudes before standardisation.
pub fn fbnet_additive(arch: &FbnetArch) -> [f64; 6] {
    let net = FbnetMacro::new(FbnetVariant::Cifar100);
    let mut res = (net.input[1] / net.stem_stride) as f64;
    let mut f = [0.0; 6];
    for (layer, block) in net.layers.iter().zip(arch.blocks.iter()) {
        let (c_in, c_out, s) = (layer.c_in as f64, layer.c_out as f64, layer.stride as f64);
        let out_res = res / s;
        let (pin, pout) = (res * res, out_res * out_res);
        match block.shape() {
            Some(shape) => {
                let mid = c_in * shape.expansion as f64;
                let g = shape.groups as f64;
                let k2 = (shape.kernel * shape.kernel) as f64;
                f[0] += pin * c_in * mid / g / 1e6;
                f[1] += pout * mid * k2 / 1e6;
                f[2] += pout * mid * c_out / g / 1e6;
                f[3] += (c_in * mid / g + mid * k2 + mid * c_out / g) / 1e3;
                f[4] += (pin * mid + pout * mid + pout * c_out) / 1e3;
                f[5] += 3.0;
            }
            None if *block == FbnetBlock::Skip && (c_in != c_out || s > 1.0) => {
                f[2] += pout * c_in * c_out / 1e6;
                f[3] += c_in * c_out / 1e3;
                f[4] += pout * c_out / 1e3;
                f[5] += 1.0;
            }
            None => {}
        }
        res = out_res;
    }
    f
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dead_edges_are_not_live() {
        // 0->1 conv3x3, 0->2 none, 1->2 none, 0->3 skip, 1->3 none, 2->3 conv1x1:
        // node 2 has no input, so its conv1x1 into the output is dead.
        let arch = Nb201Arch::from_ids([3, 0, 0, 1, 0, 2]).unwrap();
        assert_eq!(
            nb201_live_edges(&arch),
            [false, false, false, true, false, false]
        );
        // counts: skip 1, conv1x1 1, conv3x3 1; live: skip only.
        assert_eq!(
            nb201_additive(&arch),
            [1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0]
        );
    }

    #[test]
    fn fully_connected_cell_is_all_live() {
        let arch = Nb201Arch::from_ids([3, 3, 3, 3, 3, 3]).unwrap();
        assert_eq!(nb201_live_edges(&arch), [true; 6]);
        assert_eq!(nb201_additive(&arch)[2], 6.0);
        assert_eq!(nb201_additive(&arch)[6], 6.0);
    }

    #[test]
    fn fbnet_all_skip_costs_only_the_shape_changes() {
        let skip = FbnetArch::from_ids(&[8; 22]).unwrap();
        let f = fbnet_additive(&skip);
        // Stage widths change 6 times (16->24->32->64->112->184->352), and
        // layer 0 keeps 16 channels at stride 1: six 1x1 projections.
        assert_eq!(f[5], 6.0);
        assert_eq!(f[0], 0.0);
        let big = fbnet_additive(&FbnetArch::from_ids(&[7; 22]).unwrap());
        assert_eq!(big[5], 66.0);
        assert!(big[0] > 0.0 && big[1] > 0.0 && big[2] > f[2]);
    }
}

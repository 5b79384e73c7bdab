//! Parameters and FLOPs of any FBNet architecture, counted analytically from
//! the macro network, without building its graph.
//!
//! Why here and not in `nasflat-onnx`: the predictor must score architectures
//! outside the 5,000-row table (the evolutionary search over all 9^22), and
//! its FLOPs-anchored features need the table's FLOPs for any of them; the
//! predictor may not link `nasflat-onnx` (ARCHITECTURE.md, dependency rule),
//! and that crate's counter walks an ONNX graph (it checks the *builder*), so
//! it cannot move down. This module is the closed form of the same counts:
//! `fbnet/zcp.csv`'s conventions (nasflat's `flopth`, CIFAR-100 variant,
//! batch 1): conv = multiply-accumulates (no biases), BatchNorm = 2 per
//! element, ReLU = 1 per element except the one feeding a depthwise conv
//! (flopth keeps one count per module and the reference block reuses its
//! ReLU), pooling = input elements, linear = in x out; params are conv and
//! linear weights, the classifier bias and BatchNorm scale and shift. Tests
//! hold it equal to the table on all 5,000 rows (`fbnet_cost_tests` in
//! shared) and to the graph walker on architectures outside the table
//! (`nasflat-onnx`'s `fbnet_tests`).

use crate::fbnet::{BlockShape, FbnetArch, FbnetBlock, FbnetLayer, FbnetMacro, FbnetVariant};

/// Parameter and FLOP counts of one network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetCost {
    /// Trainable parameters.
    pub params: u64,
    /// FLOPs in `fbnet/zcp.csv`'s convention.
    pub flops: u64,
}

impl NetCost {
    fn add(&mut self, other: NetCost) {
        self.params += other.params;
        self.flops += other.flops;
    }
}

/// Counts of `arch` on the CIFAR-100 macro network (the latency data's
/// variant) at batch 1, as `fbnet/zcp.csv` states them.
pub fn fbnet_cost(arch: &FbnetArch) -> NetCost {
    let net = FbnetMacro::new(FbnetVariant::Cifar100);
    let mut side = net.input[1] as u64;
    let mut total = NetCost::default();
    // Stem: conv3x3 (pad 1) - BN - ReLU.
    side = conv_side(side, 3, net.stem_stride as u64, 1);
    total.add(conv_bn_relu(3, net.stem_channels as u64, 3, 1, side, true));
    for (layer, block) in net.layers.iter().zip(arch.blocks.iter()) {
        let (cost, out) = match block.shape() {
            Some(shape) => inverted_residual(*layer, shape, side),
            None => skip(*layer, *block, side),
        };
        total.add(cost);
        side = out;
    }
    let c = net.layers.last().map_or(net.stem_channels, |l| l.c_out) as u64;
    let header = net.header_channels as u64;
    total.add(conv_bn_relu(c, header, 1, 1, side, true));
    let classes = net.num_classes as u64;
    total.add(NetCost {
        // Global pool (input elements) and the linear layer (in x out).
        flops: header * side * side + header * classes,
        params: header * classes + classes,
    });
    total
}

/// Output side of a square window.
fn conv_side(side: u64, kernel: u64, stride: u64, pad: u64) -> u64 {
    (side + 2 * pad).saturating_sub(kernel) / stride.max(1) + 1
}

/// A bias-free conv (`c_in / groups` inputs per output channel) on an output
/// of `side` x `side`, its BatchNorm and, when `relu`, its counted ReLU.
fn conv_bn_relu(c_in: u64, c_out: u64, kernel: u64, groups: u64, side: u64, relu: bool) -> NetCost {
    let out = c_out * side * side;
    let weights = c_out * (c_in / groups) * kernel * kernel;
    NetCost {
        params: weights + 2 * c_out,
        flops: out * (c_in / groups) * kernel * kernel + 2 * out + if relu { out } else { 0 },
    }
}

/// Expand 1x1 (groups) - BN - ReLU (uncounted: it feeds the depthwise conv),
/// depthwise kxk at the layer's stride - BN - ReLU, project 1x1 (groups) -
/// BN; the residual add and the channel shuffle cost nothing.
fn inverted_residual(layer: FbnetLayer, shape: BlockShape, side: u64) -> (NetCost, u64) {
    let (c_in, c_out) = (layer.c_in as u64, layer.c_out as u64);
    let (k, g) = (shape.kernel as u64, shape.groups as u64);
    let mid = c_in * shape.expansion as u64;
    let out = conv_side(side, k, layer.stride as u64, (k - 1) / 2);
    let mut cost = conv_bn_relu(c_in, mid, 1, g, side, false);
    cost.add(conv_bn_relu(mid, mid, k, mid, out, true));
    cost.add(conv_bn_relu(mid, c_out, 1, g, out, false));
    (cost, out)
}

/// `skip`: free when the layer keeps its shape, else a strided 1x1 conv - BN - ReLU.
fn skip(layer: FbnetLayer, block: FbnetBlock, side: u64) -> (NetCost, u64) {
    debug_assert_eq!(block, FbnetBlock::Skip);
    if layer.c_in == layer.c_out && layer.stride == 1 {
        return (NetCost::default(), side);
    }
    let out = conv_side(side, 1, layer.stride as u64, 0);
    let cost = conv_bn_relu(layer.c_in as u64, layer.c_out as u64, 1, 1, out, true);
    (cost, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand count `nasflat-onnx` checks its graph walker against.
    #[test]
    fn index_zero_matches_the_hand_count() {
        let arch = FbnetArch::from_index(0).unwrap();
        let cost = fbnet_cost(&arch);
        assert_eq!(cost.params, 1_790_500);
        assert_eq!(cost.flops, 70_098_816);
    }

    #[test]
    fn bigger_blocks_cost_more() {
        let small = fbnet_cost(&FbnetArch::from_ids(&[0; 22]).unwrap());
        let big = fbnet_cost(&FbnetArch::from_ids(&[7; 22]).unwrap());
        let skips = fbnet_cost(&FbnetArch::from_ids(&[8; 22]).unwrap());
        assert!(big.flops > 3 * small.flops && big.params > 3 * small.params);
        assert!(skips.flops < small.flops && skips.params < small.params);
    }
}

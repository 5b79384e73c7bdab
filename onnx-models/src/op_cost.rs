//! What a node costs, independent of how it is counted ([`OpCost`]), and the
//! profilers' counting rules ([`FlopsConvention`]). A leaf module: the shape
//! walker (`shapes`) produces these values and the cost model (`cost`) sums
//! them, so neither has to import the other's internals.

/// Which profiler's counting rules [`ModelCost::flops`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlopsConvention {
    /// tensorwatch `ModelStats` (NASLib): reproduces `nb201/zcp.csv`.
    TensorWatch,
    /// `flopth` with one count per module: reproduces `fbnet/zcp.csv`.
    Flopth,
    /// Multiply-accumulates of convs and linear layers only.
    Macs,
}

/// Cost-relevant facts of one node, independent of any convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCost {
    /// `Conv`: multiply-accumulates and bias additions (output elements).
    Conv { macs: u64, bias: u64 },
    /// `Gemm`: multiply-accumulates and bias additions.
    Gemm { macs: u64, bias: u64 },
    /// `BatchNormalization` over this many elements.
    BatchNorm { elements: u64 },
    /// `Relu` over this many elements; `feeds_depthwise` when its output
    /// reaches a depthwise conv (through layout ops only).
    Relu {
        elements: u64,
        feeds_depthwise: bool,
    },
    /// `AveragePool`: input elements, and output elements x window size.
    AvgPool {
        input_elements: u64,
        window_reads: u64,
    },
    /// `GlobalAveragePool` over `[N, C, H, W]`.
    GlobalAvgPool {
        batch_channels: u64,
        height: u64,
        width: u64,
    },
    /// `Add` / `Mul` producing this many elements.
    Elementwise { elements: u64 },
    /// `Reshape`, `Transpose`, `Flatten`: data movement only.
    Layout,
}

impl OpCost {
    /// FLOPs of this node under a convention.
    pub fn flops(&self, convention: FlopsConvention) -> u64 {
        use FlopsConvention::{Flopth, Macs, TensorWatch};
        match (*self, convention) {
            (OpCost::Conv { macs, .. } | OpCost::Gemm { macs, .. }, Macs) => macs,
            (_, Macs) => 0,
            (OpCost::Conv { macs, bias }, _) => macs + bias,
            (OpCost::Gemm { macs, .. }, _) => macs,
            (OpCost::BatchNorm { elements }, _) => 2 * elements,
            (
                OpCost::Relu {
                    feeds_depthwise: true,
                    ..
                },
                Flopth,
            ) => 0,
            (OpCost::Relu { elements, .. }, _) => elements,
            (OpCost::AvgPool { window_reads, .. }, TensorWatch) => window_reads,
            (OpCost::AvgPool { input_elements, .. }, Flopth) => input_elements,
            (
                OpCost::GlobalAvgPool {
                    batch_channels,
                    height,
                    width,
                },
                TensorWatch,
            ) => batch_channels * (height + 1) * (width + 1),
            (
                OpCost::GlobalAvgPool {
                    batch_channels,
                    height,
                    width,
                },
                Flopth,
            ) => batch_channels * height * width,
            (OpCost::Elementwise { .. } | OpCost::Layout, _) => 0,
        }
    }
}

/// Number of elements of a tensor of this shape.
pub(crate) fn numel(shape: &[usize]) -> u64 {
    shape.iter().map(|&d| d as u64).product()
}

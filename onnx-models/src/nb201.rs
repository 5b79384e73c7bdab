//! The NAS-Bench-201 CIFAR network ("TinyNetwork", `nb201/macro.json`) as
//! ONNX: stem conv + BN, three stages of five identical cells at 16/32/64
//! channels joined by residual reduction blocks, then BN-ReLU-pool-linear.
//!
//! The graph mirrors the reference PyTorch modules op for op (including cell
//! branches whose output nothing reads: PyTorch computes them too), so the
//! FLOPs and parameters counted from it reproduce the NB201 tables exactly
//! (see [`crate::cost`]).

use std::fmt;
use std::str::FromStr;

use nasflat_shared::{NB201_EDGE_NODES, Nb201Arch, Nb201Op};
use tract_onnx::pb::ModelProto;

use crate::error::{OnnxError, Result};
use crate::layers::ConvSpec;
use crate::proto::{GraphBuilder, WeightInit};

/// Channels of the stem and of the three stages.
pub const NB201_STAGE_CHANNELS: [usize; 3] = [16, 32, 64];
/// Cells per stage.
pub const NB201_CELLS_PER_STAGE: usize = 5;

/// Dataset variant: fixes the number of classes and the default resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Nb201Dataset {
    /// 32x32 input, 10 classes (the variant of the latency tables).
    Cifar10,
    /// 32x32 input, 100 classes.
    Cifar100,
    /// 16x16 input, 120 classes.
    Imagenet16_120,
}

impl Nb201Dataset {
    /// All variants, in the column order of `nb201/zcp.csv`.
    pub const ALL: [Nb201Dataset; 3] = [
        Nb201Dataset::Cifar10,
        Nb201Dataset::Cifar100,
        Nb201Dataset::Imagenet16_120,
    ];

    /// Name as in the data tables' column prefixes.
    pub fn name(self) -> &'static str {
        match self {
            Nb201Dataset::Cifar10 => "cifar10",
            Nb201Dataset::Cifar100 => "cifar100",
            Nb201Dataset::Imagenet16_120 => "imagenet16_120",
        }
    }

    /// Classifier outputs.
    pub fn num_classes(self) -> usize {
        match self {
            Nb201Dataset::Cifar10 => 10,
            Nb201Dataset::Cifar100 => 100,
            Nb201Dataset::Imagenet16_120 => 120,
        }
    }

    /// Input height and width the benchmark trained and measured at.
    pub fn resolution(self) -> usize {
        match self {
            Nb201Dataset::Cifar10 | Nb201Dataset::Cifar100 => 32,
            Nb201Dataset::Imagenet16_120 => 16,
        }
    }
}

impl fmt::Display for Nb201Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Nb201Dataset {
    type Err = OnnxError;

    /// Accepts the table names plus the NB201 API's `ImageNet16-120` spelling.
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "cifar10" => Ok(Nb201Dataset::Cifar10),
            "cifar100" => Ok(Nb201Dataset::Cifar100),
            "imagenet16_120" | "imagenet16" => Ok(Nb201Dataset::Imagenet16_120),
            _ => Err(OnnxError::UnknownName {
                what: "NB201 dataset",
                name: s.to_string(),
                expected: "cifar10, cifar100, imagenet16_120",
            }),
        }
    }
}

/// Build options of an NB201 model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nb201Config {
    /// Dataset variant (classes and default resolution).
    pub dataset: Nb201Dataset,
    /// Batch size of the static input shape.
    pub batch: usize,
    /// Input height and width; `None` = the dataset's own (32 or 16).
    pub resolution: Option<usize>,
    /// Initializer values.
    pub weights: WeightInit,
}

impl Default for Nb201Config {
    fn default() -> Self {
        Nb201Config {
            dataset: Nb201Dataset::Cifar10,
            batch: 1,
            resolution: None,
            weights: WeightInit::default(),
        }
    }
}

impl Nb201Config {
    /// The input resolution actually used.
    pub fn resolution(&self) -> usize {
        self.resolution.unwrap_or(self.dataset.resolution())
    }

    /// Rejects shapes the network cannot take: the two stride-2 reduction
    /// blocks add a conv path (which rounds odd sizes up) to a pooled
    /// shortcut (which rounds down), so the side must be a multiple of 4.
    pub fn validate(&self) -> Result<()> {
        if self.batch == 0 {
            return Err(OnnxError::InvalidConfig {
                what: "batch size",
                value: 0,
                reason: "must be at least 1".into(),
            });
        }
        let r = self.resolution();
        if r == 0 || !r.is_multiple_of(4) {
            return Err(OnnxError::InvalidConfig {
                what: "NB201 resolution",
                value: r,
                reason: "must be a positive multiple of 4 (two stride-2 reduction blocks)".into(),
            });
        }
        Ok(())
    }
}

/// Builds the ONNX model of one NB201 architecture.
///
/// Input `input` is `[batch, 3, r, r]`, output `logits` is
/// `[batch, num_classes]`.
pub fn nb201_model(arch: &Nb201Arch, config: &Nb201Config) -> Result<ModelProto> {
    config.validate()?;
    let r = config.resolution();
    let classes = config.dataset.num_classes();
    let mut b = GraphBuilder::new(config.weights);
    let input = b.fresh_name("input");

    let mut c = NB201_STAGE_CHANNELS[0];
    let x = b.conv(&input, "stem.conv", ConvSpec::new(3, c, 3));
    let mut x = b.batch_norm(&x, "stem.bn", c);
    for (stage, &channels) in NB201_STAGE_CHANNELS.iter().enumerate() {
        if stage > 0 {
            x = reduction_block(&mut b, &x, &format!("stage{stage}.reduce"), c, channels);
            c = channels;
        }
        for cell in 0..NB201_CELLS_PER_STAGE {
            x = cell_graph(&mut b, &x, arch, c, &format!("stage{stage}.cell{cell}"));
        }
    }
    let x = b.batch_norm(&x, "head.bn", c);
    let x = b.relu(&x, "head.relu");
    let logits = b.classifier(&x, c, classes);

    let doc = format!(
        "NAS-Bench-201 network {arch} ({}, input {}x3x{r}x{r}, {classes} classes)",
        config.dataset, config.batch
    );
    let mut metadata = vec![
        ("space", "nb201".to_string()),
        ("arch", arch.to_string()),
        ("index", arch.index().to_string()),
        ("dataset", config.dataset.to_string()),
    ];
    if let WeightInit::Random { seed } = config.weights {
        metadata.push(("seed", seed.to_string()));
    }
    Ok(b.into_model(
        "nb201",
        &doc,
        (&input, &[config.batch, 3, r, r]),
        (&logits, &[config.batch, classes]),
        &metadata,
    ))
}

/// One cell: node 0 is the input, node j sums `op_ij(node_i)` over `i < j`,
/// node 3 is the output. `none` edges contribute nothing; a node with only
/// `none` inputs is all zeros.
fn cell_graph(b: &mut GraphBuilder, x: &str, arch: &Nb201Arch, c: usize, prefix: &str) -> String {
    let mut nodes: Vec<String> = vec![x.to_string()];
    for to in 1..=3 {
        let mut terms: Vec<String> = Vec::new();
        for (edge, &(from, dest)) in NB201_EDGE_NODES.iter().enumerate() {
            if dest != to {
                continue;
            }
            let source = nodes[from].clone();
            let hint = format!("{prefix}.e{from}{to}");
            match arch.ops[edge] {
                Nb201Op::None => {}
                Nb201Op::SkipConnect => terms.push(source),
                Nb201Op::NorConv1x1 => terms.push(relu_conv_bn(b, &source, &hint, c, c, 1, 1)),
                Nb201Op::NorConv3x3 => terms.push(relu_conv_bn(b, &source, &hint, c, c, 3, 1)),
                Nb201Op::AvgPool3x3 => {
                    terms.push(b.avg_pool(&source, &format!("{hint}.pool"), 3, 1, 1, false))
                }
            }
        }
        let hint = format!("{prefix}.node{to}");
        let value = match terms.split_first() {
            None => b.zeros_like(&nodes[0], &format!("{hint}.zeros")),
            Some((first, rest)) => {
                let mut sum = first.clone();
                for term in rest {
                    sum = b.add(&sum, term, &hint);
                }
                sum
            }
        };
        nodes.push(value);
    }
    nodes.swap_remove(3)
}

/// `ReLU -> Conv(no bias) -> BN`, NB201's `ReLUConvBN`.
fn relu_conv_bn(
    b: &mut GraphBuilder,
    x: &str,
    hint: &str,
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
) -> String {
    let x = b.relu(x, &format!("{hint}.relu"));
    let x = b.conv(
        &x,
        &format!("{hint}.conv"),
        ConvSpec::new(c_in, c_out, kernel).stride(stride),
    );
    b.batch_norm(&x, &format!("{hint}.bn"), c_out)
}

/// NB201's `ResNetBasicblock` with stride 2: `a = ReLU-Conv3x3(s2)-BN`,
/// `b = ReLU-Conv3x3-BN`, shortcut `AvgPool2x2(s2) -> Conv1x1` (no BN),
/// output `b(a(x)) + shortcut(x)`.
fn reduction_block(
    b: &mut GraphBuilder,
    x: &str,
    prefix: &str,
    c_in: usize,
    c_out: usize,
) -> String {
    let a = relu_conv_bn(b, x, &format!("{prefix}.a"), c_in, c_out, 3, 2);
    let main = relu_conv_bn(b, &a, &format!("{prefix}.b"), c_out, c_out, 3, 1);
    let pooled = b.avg_pool(x, &format!("{prefix}.shortcut.pool"), 2, 2, 0, true);
    let shortcut = b.conv(
        &pooled,
        &format!("{prefix}.shortcut.conv"),
        ConvSpec::new(c_in, c_out, 1),
    );
    b.add(&main, &shortcut, prefix)
}

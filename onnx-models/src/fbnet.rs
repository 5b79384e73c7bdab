//! The FBNet macro network of HW-NAS-Bench / HELP (`fbnet/macro.json`) as
//! ONNX: stem conv-BN-ReLU, 22 searchable layers of inverted-residual blocks
//! (or skips), 1x1 header conv-BN-ReLU, global pool, linear classifier.
//!
//! Block structure follows the reference `ConvBlock` of HW-NAS-Bench's
//! `FBNet_Infer` (also used by nasflat to compute its FBNet proxies), so
//! costs counted on the graph reproduce `fbnet/zcp.csv` (see [`crate::cost`]).

use nasflat_shared::{BlockShape, FbnetArch, FbnetLayer, FbnetMacro, FbnetVariant};
use tract_onnx::pb::ModelProto;

use crate::error::{OnnxError, Result};
use crate::layers::ConvSpec;
use crate::proto::{GraphBuilder, WeightInit};

/// Build options of an FBNet model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FbnetConfig {
    /// Macro variant: CIFAR-100 (the latency data's) or ImageNet.
    pub variant: FbnetVariant,
    /// Batch size of the static input shape.
    pub batch: usize,
    /// Input height and width; `None` = the variant's own (32 or 224).
    pub resolution: Option<usize>,
    /// Initializer values.
    pub weights: WeightInit,
}

impl Default for FbnetConfig {
    fn default() -> Self {
        FbnetConfig {
            variant: FbnetVariant::Cifar100,
            batch: 1,
            resolution: None,
            weights: WeightInit::default(),
        }
    }
}

impl FbnetConfig {
    /// The input resolution actually used.
    pub fn resolution(&self) -> usize {
        self.resolution
            .unwrap_or(FbnetMacro::new(self.variant).input[1])
    }

    /// Rejects empty shapes. Any positive side works: every strided path
    /// rounds the same way (`ceil(h / 2)`) and residuals never cross a stride.
    pub fn validate(&self) -> Result<()> {
        if self.batch == 0 {
            return Err(OnnxError::InvalidConfig {
                what: "batch size",
                value: 0,
                reason: "must be at least 1".into(),
            });
        }
        if self.resolution() == 0 {
            return Err(OnnxError::InvalidConfig {
                what: "FBNet resolution",
                value: 0,
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// Builds the ONNX model of one FBNet architecture.
///
/// Input `input` is `[batch, 3, r, r]`, output `logits` is
/// `[batch, num_classes]`.
pub fn fbnet_model(arch: &FbnetArch, config: &FbnetConfig) -> Result<ModelProto> {
    config.validate()?;
    let net = FbnetMacro::new(config.variant);
    let r = config.resolution();
    let mut b = GraphBuilder::new(config.weights);
    let input = b.fresh_name("input");

    let stem = ConvSpec::new(3, net.stem_channels, 3).stride(net.stem_stride);
    let x = b.conv(&input, "stem.conv", stem);
    let x = b.batch_norm(&x, "stem.bn", net.stem_channels);
    let mut x = b.relu(&x, "stem.relu");
    let mut h = conv_out(r, 3, net.stem_stride, 1);

    for (i, (layer, block)) in net.layers.iter().zip(arch.blocks).enumerate() {
        let prefix = format!("layer{i:02}.{}", block.name());
        (x, h) = match block.shape() {
            Some(shape) => inverted_residual(&mut b, &x, &prefix, *layer, shape, [config.batch, h]),
            None => skip(&mut b, &x, &prefix, *layer, h),
        };
    }

    let c = net.layers.last().map_or(net.stem_channels, |l| l.c_out);
    let x = b.conv(&x, "header.conv", ConvSpec::new(c, net.header_channels, 1));
    let x = b.batch_norm(&x, "header.bn", net.header_channels);
    let x = b.relu(&x, "header.relu");
    let logits = b.classifier(&x, net.header_channels, net.num_classes);

    let variant = match config.variant {
        FbnetVariant::Cifar100 => "cifar100",
        FbnetVariant::Imagenet => "imagenet",
    };
    let doc = format!(
        "FBNet network {arch} ({variant}, input {}x3x{r}x{r}, {} classes)",
        config.batch, net.num_classes
    );
    let mut metadata = vec![
        ("space", "fbnet".to_string()),
        ("arch", arch.to_string()),
        ("variant", variant.to_string()),
    ];
    if let Some(index) = arch.index() {
        metadata.push(("index", index.to_string()));
    }
    if let WeightInit::Random { seed } = config.weights {
        metadata.push(("seed", seed.to_string()));
    }
    Ok(b.into_model(
        "fbnet",
        &doc,
        (&input, &[config.batch, 3, r, r]),
        (&logits, &[config.batch, net.num_classes]),
        &metadata,
    ))
}

/// Output side of a square conv or pool.
fn conv_out(h: usize, kernel: usize, stride: usize, pad: usize) -> usize {
    (h + 2 * pad).saturating_sub(kernel) / stride.max(1) + 1
}

/// `k{K}_e{E}[_g{G}]`: Conv1x1(groups G)-BN-ReLU, channel shuffle if G > 1,
/// depthwise ConvKxK(stride s)-BN-ReLU, Conv1x1(groups G)-BN, plus the input
/// when the block keeps shape. `batch_h` is `[batch, input side]`.
fn inverted_residual(
    b: &mut GraphBuilder,
    x: &str,
    prefix: &str,
    layer: FbnetLayer,
    shape: BlockShape,
    [batch, h]: [usize; 2],
) -> (String, usize) {
    let BlockShape {
        kernel,
        expansion,
        groups,
    } = shape;
    let mid = layer.c_in * expansion;
    let y = b.conv(
        x,
        &format!("{prefix}.expand.conv"),
        ConvSpec::new(layer.c_in, mid, 1).groups(groups),
    );
    let y = b.batch_norm(&y, &format!("{prefix}.expand.bn"), mid);
    let mut y = b.relu(&y, &format!("{prefix}.expand.relu"));
    if groups > 1 {
        y = b.channel_shuffle(&y, &format!("{prefix}.shuffle"), [batch, mid, h, h], groups);
    }
    // The reference pads ceil((K - s) / 2), equal to (K - 1) / 2 for odd K, s <= 2.
    let pad = (kernel - 1) / 2;
    let y = b.conv(
        &y,
        &format!("{prefix}.depthwise.conv"),
        ConvSpec::new(mid, mid, kernel)
            .stride(layer.stride)
            .pad(pad)
            .groups(mid),
    );
    let y = b.batch_norm(&y, &format!("{prefix}.depthwise.bn"), mid);
    let y = b.relu(&y, &format!("{prefix}.depthwise.relu"));
    let y = b.conv(
        &y,
        &format!("{prefix}.project.conv"),
        ConvSpec::new(mid, layer.c_out, 1).groups(groups),
    );
    let mut y = b.batch_norm(&y, &format!("{prefix}.project.bn"), layer.c_out);
    if layer.c_in == layer.c_out && layer.stride == 1 {
        y = b.add(&y, x, &format!("{prefix}.residual"));
    }
    (y, conv_out(h, kernel, layer.stride, pad))
}

/// `skip`: identity when the layer keeps shape, else Conv1x1(stride s)-BN-ReLU.
fn skip(
    b: &mut GraphBuilder,
    x: &str,
    prefix: &str,
    layer: FbnetLayer,
    h: usize,
) -> (String, usize) {
    if layer.c_in == layer.c_out && layer.stride == 1 {
        return (x.to_string(), h);
    }
    let y = b.conv(
        x,
        &format!("{prefix}.conv"),
        ConvSpec::new(layer.c_in, layer.c_out, 1).stride(layer.stride),
    );
    let y = b.batch_norm(&y, &format!("{prefix}.bn"), layer.c_out);
    let y = b.relu(&y, &format!("{prefix}.relu"));
    (y, conv_out(h, 1, layer.stride, 0))
}

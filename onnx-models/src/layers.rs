//! CNN layers as ONNX nodes plus their initializers, in the forms PyTorch's
//! `nn.Conv2d`, `nn.BatchNorm2d` (eval mode), `nn.AvgPool2d` and `nn.Linear`
//! export to, so the graphs match the reference networks op for op.

use crate::proto::{Fill, GraphBuilder, attr_float, attr_int, attr_ints, to_i64};

/// BatchNorm epsilon of PyTorch's `nn.BatchNorm2d`.
const BN_EPSILON: f32 = 1e-5;

/// Spread of the BatchNorm statistics around their identity values: enough
/// that runtimes cannot fold BN away as a no-op, small enough to keep
/// activations in range over 17 NB201 stages.
const BN_SPREAD: f32 = 0.1;

/// A 2-D convolution.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvSpec {
    pub(crate) c_in: usize,
    pub(crate) c_out: usize,
    pub(crate) kernel: usize,
    pub(crate) stride: usize,
    pub(crate) pad: usize,
    pub(crate) groups: usize,
    pub(crate) bias: bool,
}

impl ConvSpec {
    /// Bias-free `kernel`x`kernel` conv, stride 1, "same" padding, no groups:
    /// the form every conv of both search spaces starts from.
    pub(crate) fn new(c_in: usize, c_out: usize, kernel: usize) -> Self {
        ConvSpec {
            c_in,
            c_out,
            kernel,
            stride: 1,
            pad: kernel.saturating_sub(1) / 2,
            groups: 1,
            bias: false,
        }
    }

    pub(crate) fn stride(self, stride: usize) -> Self {
        ConvSpec { stride, ..self }
    }

    pub(crate) fn pad(self, pad: usize) -> Self {
        ConvSpec { pad, ..self }
    }

    pub(crate) fn groups(self, groups: usize) -> Self {
        ConvSpec { groups, ..self }
    }
}

impl GraphBuilder {
    /// `Conv` with a He-uniform weight `[c_out, c_in/groups, k, k]`.
    pub(crate) fn conv(&mut self, x: &str, hint: &str, spec: ConvSpec) -> String {
        let groups = spec.groups.max(1);
        let fan_in = (spec.c_in / groups * spec.kernel * spec.kernel).max(1);
        let bound = (6.0 / fan_in as f32).sqrt();
        let weight = self.float_initializer(
            &format!("{hint}.weight"),
            &[spec.c_out, spec.c_in / groups, spec.kernel, spec.kernel],
            Fill::Uniform { bound },
        );
        let mut inputs = vec![x.to_string(), weight];
        if spec.bias {
            let bias = self.float_initializer(
                &format!("{hint}.bias"),
                &[spec.c_out],
                Fill::Uniform {
                    bound: 1.0 / (fan_in as f32).sqrt(),
                },
            );
            inputs.push(bias);
        }
        let k = to_i64(spec.kernel);
        let s = to_i64(spec.stride);
        let p = to_i64(spec.pad);
        let attrs = vec![
            attr_ints("kernel_shape", &[k, k]),
            attr_ints("strides", &[s, s]),
            attr_ints("pads", &[p, p, p, p]),
            attr_ints("dilations", &[1, 1]),
            attr_int("group", to_i64(groups)),
        ];
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        self.node("Conv", hint, &refs, attrs)
    }

    /// Inference-form `BatchNormalization` over `channels`: scale, bias,
    /// running mean and running variance initializers.
    pub(crate) fn batch_norm(&mut self, x: &str, hint: &str, channels: usize) -> String {
        let around = |center| Fill::Around {
            center,
            spread: BN_SPREAD,
        };
        let scale = self.float_initializer(&format!("{hint}.weight"), &[channels], around(1.0));
        let bias = self.float_initializer(&format!("{hint}.bias"), &[channels], around(0.0));
        let mean =
            self.float_initializer(&format!("{hint}.running_mean"), &[channels], around(0.0));
        let var = self.float_initializer(&format!("{hint}.running_var"), &[channels], around(1.0));
        self.node(
            "BatchNormalization",
            hint,
            &[x, &scale, &bias, &mean, &var],
            vec![
                attr_float("epsilon", BN_EPSILON),
                attr_float("momentum", 0.9),
            ],
        )
    }

    pub(crate) fn relu(&mut self, x: &str, hint: &str) -> String {
        self.node("Relu", hint, &[x], Vec::new())
    }

    pub(crate) fn add(&mut self, a: &str, b: &str, hint: &str) -> String {
        self.node("Add", hint, &[a, b], Vec::new())
    }

    /// A tensor of zeros shaped like `x` (`x * 0`): the value of an NB201 node
    /// whose incoming edges are all `none`. A node keeps the graph valid and
    /// the shapes right where PyTorch would produce `x.mul(0.)`.
    pub(crate) fn zeros_like(&mut self, x: &str, hint: &str) -> String {
        let zero = self.zero_scalar();
        self.node("Mul", hint, &[x, &zero], Vec::new())
    }

    /// `AveragePool` with a square window and symmetric padding.
    pub(crate) fn avg_pool(
        &mut self,
        x: &str,
        hint: &str,
        kernel: usize,
        stride: usize,
        pad: usize,
        count_include_pad: bool,
    ) -> String {
        let (k, s, p) = (to_i64(kernel), to_i64(stride), to_i64(pad));
        self.node(
            "AveragePool",
            hint,
            &[x],
            vec![
                attr_ints("kernel_shape", &[k, k]),
                attr_ints("strides", &[s, s]),
                attr_ints("pads", &[p, p, p, p]),
                attr_int("count_include_pad", i64::from(count_include_pad)),
            ],
        )
    }

    /// Channel shuffle of ShuffleNet (`view(N,g,C/g,H,W).permute(0,2,1,3,4)
    /// .view(N,C,H,W)`) as Reshape-Transpose-Reshape, how PyTorch exports it.
    pub(crate) fn channel_shuffle(
        &mut self,
        x: &str,
        hint: &str,
        shape: [usize; 4],
        groups: usize,
    ) -> String {
        let [n, c, h, w] = shape.map(to_i64);
        let g = to_i64(groups);
        let split = self.int64_initializer(&format!("{hint}.split_shape"), &[n, g, c / g, h, w]);
        let merged = self.int64_initializer(&format!("{hint}.merged_shape"), &[n, c, h, w]);
        let split_out = self.node(
            "Reshape",
            &format!("{hint}.split"),
            &[x, &split],
            Vec::new(),
        );
        let transposed = self.node(
            "Transpose",
            &format!("{hint}.transpose"),
            &[&split_out],
            vec![attr_ints("perm", &[0, 2, 1, 3, 4])],
        );
        self.node("Reshape", hint, &[&transposed, &merged], Vec::new())
    }

    /// Global average pool, flatten, linear classifier with bias (PyTorch
    /// `AdaptiveAvgPool2d(1)` + `view` + `nn.Linear`).
    pub(crate) fn classifier(&mut self, x: &str, channels: usize, classes: usize) -> String {
        let pooled = self.node("GlobalAveragePool", "global_pool", &[x], Vec::new());
        let flat = self.node("Flatten", "flatten", &[&pooled], vec![attr_int("axis", 1)]);
        let bound = 1.0 / (channels.max(1) as f32).sqrt();
        let weight = self.float_initializer(
            "classifier.weight",
            &[classes, channels],
            Fill::Uniform { bound },
        );
        let bias = self.float_initializer("classifier.bias", &[classes], Fill::Uniform { bound });
        self.node(
            "Gemm",
            "logits",
            &[&flat, &weight, &bias],
            vec![attr_int("transB", 1)],
        )
    }
}

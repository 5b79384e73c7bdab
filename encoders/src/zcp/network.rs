//! The NAS-Bench-201 CIFAR network (`data/nb201/macro.json`) in candle, for
//! scoring at random initialisation: stem conv + BN, three stages of five
//! cells at 16/32/64 channels joined by residual reduction blocks, then
//! BN-ReLU-global-pool-linear. Same layout as `nasflat-onnx`'s builder.
//!
//! Only conv and linear weights are parameters (the proxies are defined on
//! them); batch norm always uses the batch statistics with unit scale and
//! zero shift, which is what a freshly initialised PyTorch model in train
//! mode computes.

use candle_core::{D, DType, Device, Tensor, Var};
use nasflat_shared::{NB201_EDGE_NODES, Nb201Arch, Nb201Op};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::error::Result;
use crate::params::uniform_tensor;

use super::kernels;

/// Channels of the three stages.
pub const STAGE_CHANNELS: [usize; 3] = [16, 32, 64];
/// Cells per stage.
pub const CELLS_PER_STAGE: usize = 5;

/// Shape of every conv / linear weight in forward order; the last is the
/// classifier `[classes, 64]`.
pub fn weight_shapes(arch: &Nb201Arch, classes: usize) -> Vec<Vec<usize>> {
    let mut shapes = vec![vec![STAGE_CHANNELS[0], 3, 3, 3]];
    let mut c = STAGE_CHANNELS[0];
    for (stage, &channels) in STAGE_CHANNELS.iter().enumerate() {
        if stage > 0 {
            shapes.push(vec![channels, c, 3, 3]);
            shapes.push(vec![channels, channels, 3, 3]);
            shapes.push(vec![channels, c, 1, 1]);
            c = channels;
        }
        for _ in 0..CELLS_PER_STAGE {
            for op in arch.ops {
                match op {
                    Nb201Op::NorConv1x1 => shapes.push(vec![c, c, 1, 1]),
                    Nb201Op::NorConv3x3 => shapes.push(vec![c, c, 3, 3]),
                    _ => {}
                }
            }
        }
    }
    shapes.push(vec![classes, c]);
    shapes
}

/// Weights of one network: conv/linear weights in forward order plus the
/// classifier bias.
#[derive(Debug, Clone)]
pub struct Nb201Weights {
    /// Conv kernels `[out, in, k, k]` then the classifier `[classes, 64]`.
    pub weights: Vec<Tensor>,
    /// Classifier bias `[classes]`.
    pub bias: Tensor,
}

impl Nb201Weights {
    /// PyTorch's default init (kaiming-uniform with `a = sqrt(5)`, i.e.
    /// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`, for weights and bias), drawn
    /// from `seed`, as trainable variables.
    pub fn random(arch: &Nb201Arch, classes: usize, seed: u64) -> Result<(Self, Vec<Var>)> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut vars = Vec::new();
        for shape in weight_shapes(arch, classes) {
            let fan_in: usize = shape[1..].iter().product();
            let t = uniform_tensor(&mut rng, &shape, 1.0 / (fan_in as f64).sqrt())?;
            vars.push(Var::from_tensor(&t)?);
        }
        let bias = Var::from_tensor(&uniform_tensor(&mut rng, &[classes], 1.0 / 8.0)?)?;
        let weights = vars.iter().map(|v| v.as_tensor().clone()).collect();
        vars.push(bias.clone());
        Ok((
            Nb201Weights {
                weights,
                bias: bias.as_tensor().clone(),
            },
            vars,
        ))
    }

    /// The same network with every tensor replaced by `f(tensor)`, as fresh
    /// variables (e.g. `|w|` in f64 for synflow, `w + eps g` for GraSP).
    pub fn map(
        &self,
        mut f: impl FnMut(usize, &Tensor) -> Result<Tensor>,
    ) -> Result<(Self, Vec<Var>)> {
        let mut vars = Vec::with_capacity(self.weights.len() + 1);
        for (i, w) in self.weights.iter().enumerate() {
            vars.push(Var::from_tensor(&f(i, w)?)?);
        }
        let bias = Var::from_tensor(&f(self.weights.len(), &self.bias)?)?;
        let weights = vars.iter().map(|v| v.as_tensor().clone()).collect();
        vars.push(bias.clone());
        Ok((
            Nb201Weights {
                weights,
                bias: bias.as_tensor().clone(),
            },
            vars,
        ))
    }
}

/// What a forward pass records besides the logits.
#[derive(Debug, Default)]
pub struct Trace {
    /// Batch-norm on (train-mode statistics) or removed (synflow).
    pub no_batch_norm: bool,
    /// NASWOT kernel `sum over ReLUs of c c^T + (1-c)(1-c)^T` of the binary
    /// codes `c = [x > 0]` of every ReLU input, when `Some`.
    pub nwot_kernel: Option<Tensor>,
    /// When `Some`, every conv/linear output is multiplied by a ones
    /// variable of shape `[batch, channels, 1, 1]` (`[batch, classes]`); its
    /// gradient is the per-sample, per-channel `sum(act * dL/dact)` Fisher needs.
    pub fisher_gates: Option<Vec<Var>>,
}

/// The network of one architecture.
#[derive(Debug, Clone)]
pub struct Nb201Net {
    arch: Nb201Arch,
}

impl Nb201Net {
    /// The network of `arch`.
    pub fn new(arch: Nb201Arch) -> Self {
        Nb201Net { arch }
    }

    /// Logits `[batch, classes]` of `x [batch, 3, r, r]`.
    pub fn forward(&self, w: &Nb201Weights, x: &Tensor, trace: &mut Trace) -> Result<Tensor> {
        let mut next = w.weights.iter();
        let mut take = || -> Result<Tensor> {
            next.next().cloned().ok_or_else(|| {
                candle_core::Error::Msg("NB201 net: fewer weights than layers".into()).into()
            })
        };
        let x = conv(x, &take()?, 1, 1, trace)?;
        let mut x = batch_norm(&x, trace)?;
        for stage in 0..STAGE_CHANNELS.len() {
            if stage > 0 {
                let a = relu_conv_bn(&x, &take()?, 2, trace)?;
                let main = relu_conv_bn(&a, &take()?, 1, trace)?;
                let pooled = x.avg_pool2d(2)?;
                let shortcut = conv(&pooled, &take()?, 1, 0, trace)?;
                x = (main + shortcut)?;
            }
            for _ in 0..CELLS_PER_STAGE {
                x = self.cell(&x, &mut take, trace)?;
            }
        }
        let x = batch_norm(&x, trace)?;
        let x = relu(&x, trace)?;
        let pooled = x.mean(D::Minus1)?.mean(D::Minus1)?;
        let classifier = take()?;
        let logits = pooled.matmul(&classifier.t()?)?.broadcast_add(&w.bias)?;
        gate(&logits, trace)
    }

    /// Node `j` = sum over `i < j` of `op_ij(node_i)`; the cell's output is node 3.
    fn cell(
        &self,
        x: &Tensor,
        take: &mut impl FnMut() -> Result<Tensor>,
        trace: &mut Trace,
    ) -> Result<Tensor> {
        let mut nodes = vec![x.clone()];
        for to in 1..=3 {
            let mut sum: Option<Tensor> = None;
            for (edge, &(from, dest)) in NB201_EDGE_NODES.iter().enumerate() {
                if dest != to {
                    continue;
                }
                let source = &nodes[from];
                let term = match self.arch.ops[edge] {
                    Nb201Op::None => None,
                    Nb201Op::SkipConnect => Some(source.clone()),
                    Nb201Op::NorConv1x1 | Nb201Op::NorConv3x3 => {
                        Some(relu_conv_bn(source, &take()?, 1, trace)?)
                    }
                    Nb201Op::AvgPool3x3 => Some(avg_pool_3x3(source)?),
                };
                if let Some(t) = term {
                    sum = Some(match sum {
                        None => t,
                        Some(s) => (s + t)?,
                    });
                }
            }
            nodes.push(match sum {
                Some(s) => s,
                None => x.zeros_like()?,
            });
        }
        Ok(nodes.swap_remove(3))
    }
}

/// Conv without bias, then the Fisher gate.
fn conv(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
    trace: &mut Trace,
) -> Result<Tensor> {
    let y = unfold_conv(x, w, stride, padding)?;
    gate(&y, trace)
}

/// Convolution as a window gather + one matmul. Same values as
/// `Tensor::conv2d`, but its backward pass is a matmul and one scatter
/// ([`kernels`]): candle 0.11 differentiates `conv2d` through a naive CPU
/// `conv_transpose2d`. Stride 2 (two reduction convs per net) is a
/// stride-1 conv subsampled.
fn unfold_conv(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    let (b, c, h, wd) = x.dims4()?;
    let (o, _, k, _) = w.dims4()?;
    let (oh, ow) = (h + 2 * padding + 1 - k, wd + 2 * padding + 1 - k);
    let cols = if k == 1 && padding == 0 {
        x.reshape((b, c, h * wd))?
    } else {
        kernels::im2col(x, k, padding)?
    };
    let y = w
        .reshape((o, c * k * k))?
        .broadcast_matmul(&cols)?
        .reshape((b, o, oh, ow))?;
    if stride == 1 {
        return Ok(y);
    }
    if stride != 2 || !oh.is_multiple_of(2) || !ow.is_multiple_of(2) {
        return Err(candle_core::Error::Msg(format!(
            "unfold_conv: stride {stride} on {oh}x{ow} not supported"
        ))
        .into());
    }
    Ok(y.reshape((b, o, oh / 2, 2, ow / 2, 2))?
        .narrow(3, 0, 1)?
        .narrow(5, 0, 1)?
        .reshape((b, o, oh / 2, ow / 2))?)
}

/// NB201's `ReLUConvBN`: ReLU -> conv (pad k/2) -> BN.
fn relu_conv_bn(x: &Tensor, w: &Tensor, stride: usize, trace: &mut Trace) -> Result<Tensor> {
    let k = w.dim(2)?;
    let y = conv(&relu(x, trace)?, w, stride, k / 2, trace)?;
    batch_norm(&y, trace)
}

/// Multiplies by a ones variable when Fisher gates are recorded.
fn gate(y: &Tensor, trace: &mut Trace) -> Result<Tensor> {
    let Some(gates) = trace.fisher_gates.as_mut() else {
        return Ok(y.clone());
    };
    let mut shape = y.dims().to_vec();
    for d in shape.iter_mut().skip(2) {
        *d = 1;
    }
    let g = Var::ones(shape, y.dtype(), y.device())?;
    let out = y.broadcast_mul(g.as_tensor())?;
    gates.push(g);
    Ok(out)
}

/// ReLU, adding the input's activation pattern to the NASWOT kernel.
fn relu(x: &Tensor, trace: &mut Trace) -> Result<Tensor> {
    if let Some(k) = trace.nwot_kernel.as_mut() {
        let b = x.dim(0)?;
        let codes = x.detach().gt(0.0)?.to_dtype(DType::F64)?.reshape((b, ()))?;
        let anti = codes.affine(-1.0, 1.0)?;
        let kc = codes.matmul(&codes.t()?)?;
        let ka = anti.matmul(&anti.t()?)?;
        *k = ((&*k + kc)? + ka)?;
    }
    Ok(x.relu()?)
}

/// Batch norm with batch statistics, unit scale, zero shift (skipped when
/// the trace says so).
fn batch_norm(x: &Tensor, trace: &Trace) -> Result<Tensor> {
    if trace.no_batch_norm {
        return Ok(x.clone());
    }
    Ok(kernels::batch_norm(x, 1e-5)?)
}

/// 3x3 average pool, stride 1, padding 1, `count_include_pad = False`:
/// the 3x3 box sum of the zero-padded input divided by the number of
/// in-image cells under each window.
fn avg_pool_3x3(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let counts: Vec<f64> = (0..h * w)
        .map(|k| {
            let (i, j) = (k / w, k % w);
            let rows = 1 + usize::from(i > 0) + usize::from(i + 1 < h);
            let cols = 1 + usize::from(j > 0) + usize::from(j + 1 < w);
            (rows * cols) as f64
        })
        .collect();
    let counts = Tensor::from_vec(counts, (1, 1, h, w), &Device::Cpu)?.to_dtype(x.dtype())?;
    Ok(kernels::box_sum_3x3(x)?.broadcast_div(&counts)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avg_pool_matches_hand_values() {
        let x = Tensor::from_vec(
            (0..9).map(|v| v as f32).collect::<Vec<_>>(),
            (1, 1, 3, 3),
            &Device::Cpu,
        )
        .unwrap();
        let y = avg_pool_3x3(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        // corner (0,0): mean of 0,1,3,4 = 2; centre: mean of 0..8 = 4
        assert!((y[0] - 2.0).abs() < 1e-6);
        assert!((y[4] - 4.0).abs() < 1e-6);
        // edge (0,1): mean of 0,1,2,3,4,5 = 2.5
        assert!((y[1] - 2.5).abs() < 1e-6);
    }

    #[test]
    fn unfold_conv_matches_candle_conv2d() {
        let mut rng = StdRng::seed_from_u64(1);
        let x = uniform_tensor(&mut rng, &[2, 3, 8, 8], 1.0).unwrap();
        for (k, stride) in [(3, 1), (3, 2), (1, 1)] {
            let w = uniform_tensor(&mut rng, &[4, 3, k, k], 1.0).unwrap();
            let ours = unfold_conv(&x, &w, stride, k / 2).unwrap();
            let theirs = x.conv2d(&w, k / 2, stride, 1, 1).unwrap();
            assert_eq!(ours.dims(), theirs.dims());
            let diff = (ours - theirs)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-5, "k {k} stride {stride}: {diff}");
        }
    }

    #[test]
    fn logits_have_batch_by_classes_shape() {
        let arch = Nb201Arch::from_ids([3, 2, 1, 4, 0, 3]).unwrap();
        let (w, vars) = Nb201Weights::random(&arch, 10, 0).unwrap();
        // 1 stem + 2 x 3 reduction + 15 cells x 3 convs + classifier, + bias var
        assert_eq!(w.weights.len(), 1 + 6 + 45 + 1);
        assert_eq!(vars.len(), w.weights.len() + 1);
        let x = Tensor::ones((2, 3, 8, 8), DType::F32, &Device::Cpu).unwrap();
        let y = Nb201Net::new(arch)
            .forward(&w, &x, &mut Trace::default())
            .unwrap();
        assert_eq!(y.dims(), &[2, 10]);
    }
}

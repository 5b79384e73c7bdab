//! Element-wise functions as single candle ops with their own backward pass.
//!
//! Written from candle's primitives, LeakyReLU is five ops forward (relu,
//! neg, relu, scale, sub), and candle's backward adds for every one of them
//! a zeroed gradient buffer, an addition into it and the op's own
//! derivative: most of a training step on the small per-level tensors of
//! the memoised pass is that bookkeeping, not arithmetic. As one op it is a
//! single pass each way (docs/experiments/paper_recipe.md, "Pretraining
//! time").
//!
//! The row-wise ops (`x + b`, `x * g` with `b`, `g` one value per column:
//! biases, layer-norm scale and shift, the attention vector) replace
//! `broadcast_add` / `broadcast_mul`, whose backward sums the gradient over
//! the broadcast rows with candle's generic reduction (two integer divisions
//! per element; the largest single cost of a training step in a profile).
//! Here that sum is one pass down the rows.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};

/// The slope of the negative part (the paper's code uses PyTorch's default).
pub const LEAKY_SLOPE: f64 = 0.01;

/// `max(x, 0) + 0.01 min(x, 0)`, differentiable.
pub fn leaky_relu(x: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(LeakyRelu)
}

struct LeakyRelu;

/// `dL/dx = dL/dy * (1 if x > 0 else 0.01)`, from the forward's input.
struct LeakyReluGrad;

/// The contiguous values of `storage` under `layout` as `f32` or `f64`.
enum Values<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

fn values<'a>(
    op: &str,
    storage: &'a CpuStorage,
    layout: &Layout,
) -> candle_core::Result<Values<'a>> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        return Err(candle_core::Error::Msg(format!(
            "{op}: input must be contiguous"
        )));
    };
    match storage {
        CpuStorage::F32(v) => Ok(Values::F32(&v[start..end])),
        CpuStorage::F64(v) => Ok(Values::F64(&v[start..end])),
        other => Err(candle_core::Error::Msg(format!(
            "{op}: f32 or f64 only, got {:?}",
            other.dtype()
        ))),
    }
}

/// `f(v)` for the forward pass, `f(grad)` where the input is <= 0 for the
/// backward: `v` itself if `x > 0`, else `slope * v`.
fn leaky<T: Float + PartialOrd>(v: T, x: T, slope: T) -> T {
    if x > T::default() { v } else { slope * v }
}

impl CustomOp1 for LeakyRelu {
    fn name(&self) -> &'static str {
        "leaky-relu"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = match values(self.name(), storage, layout)? {
            Values::F32(x) => {
                let slope = LEAKY_SLOPE as f32;
                CpuStorage::F32(x.iter().map(|&v| leaky(v, v, slope)).collect())
            }
            Values::F64(x) => {
                CpuStorage::F64(x.iter().map(|&v| leaky(v, v, LEAKY_SLOPE)).collect())
            }
        };
        Ok((out, layout.shape().clone()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        grad.contiguous()?
            .apply_op2_no_bwd(&arg.contiguous()?, &LeakyReluGrad)
            .map(Some)
    }
}

impl CustomOp2 for LeakyReluGrad {
    fn name(&self) -> &'static str {
        "leaky-relu-grad"
    }

    fn cpu_fwd(
        &self,
        grad: &CpuStorage,
        grad_layout: &Layout,
        arg: &CpuStorage,
        arg_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        fn map<T: Float + PartialOrd>(g: &[T], x: &[T], slope: T) -> Vec<T> {
            g.iter().zip(x).map(|(&g, &x)| leaky(g, x, slope)).collect()
        }
        let out = binary(
            self.name(),
            (grad, grad_layout),
            (arg, arg_layout),
            |g, x| map(g, x, LEAKY_SLOPE as f32),
            |g, x| map(g, x, LEAKY_SLOPE),
        )?;
        Ok((out, grad_layout.shape().clone()))
    }
}

/// `x + b` with `b` of shape `[d]` added to every row of `x` (`[..., d]`).
pub fn add_row(x: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    check_row(x, b, "add_row")?;
    x.contiguous()?.apply_op2(&b.contiguous()?, RowOp::Add)
}

/// `x * g` with `g` of shape `[d]` multiplying every row of `x` (`[..., d]`).
pub fn mul_row(x: &Tensor, g: &Tensor) -> candle_core::Result<Tensor> {
    check_row(x, g, "mul_row")?;
    x.contiguous()?.apply_op2(&g.contiguous()?, RowOp::Mul)
}

fn check_row(x: &Tensor, row: &Tensor, op: &str) -> candle_core::Result<()> {
    let d = x.dims().last().copied().unwrap_or(0);
    if row.dims() != [d] {
        return Err(candle_core::Error::Msg(format!(
            "{op}: row of shape {:?} for input {:?}",
            row.dims(),
            x.dims()
        )));
    }
    Ok(())
}

/// `x + r` or `x * r`, `r` one value per column.
enum RowOp {
    Add,
    Mul,
}
/// Column sums of a `[rows, d]` matrix (of `a * b` when given two).
struct ColSum;
struct ColSumProd;

/// The float types the kernels run on (`f32`, `f64`).
trait Float: Copy + std::ops::Add<Output = Self> + std::ops::Mul<Output = Self> + Default {}
impl Float for f32 {}
impl Float for f64 {}

fn row_map<T: Float>(x: &[T], row: &[T], f: impl Fn(T, T) -> T) -> Vec<T> {
    let mut out = x.to_vec();
    for chunk in out.chunks_exact_mut(row.len().max(1)) {
        for (o, &b) in chunk.iter_mut().zip(row) {
            *o = f(*o, b);
        }
    }
    out
}

fn col_sum<T: Float>(x: &[T], y: Option<&[T]>, d: usize) -> Vec<T> {
    let mut out = vec![T::default(); d];
    let d = d.max(1);
    match y {
        None => {
            for r in x.chunks_exact(d) {
                for (o, &v) in out.iter_mut().zip(r) {
                    *o = *o + v;
                }
            }
        }
        Some(y) => {
            for (r, s) in x.chunks_exact(d).zip(y.chunks_exact(d)) {
                for ((o, &a), &b) in out.iter_mut().zip(r).zip(s) {
                    *o = *o + a * b;
                }
            }
        }
    }
    out
}

/// Applies `f32` / `f64` versions of a two-input kernel.
fn binary(
    op: &str,
    (a, la): (&CpuStorage, &Layout),
    (b, lb): (&CpuStorage, &Layout),
    f32_fn: impl Fn(&[f32], &[f32]) -> Vec<f32>,
    f64_fn: impl Fn(&[f64], &[f64]) -> Vec<f64>,
) -> candle_core::Result<CpuStorage> {
    match (values(op, a, la)?, values(op, b, lb)?) {
        (Values::F32(a), Values::F32(b)) => Ok(CpuStorage::F32(f32_fn(a, b))),
        (Values::F64(a), Values::F64(b)) => Ok(CpuStorage::F64(f64_fn(a, b))),
        _ => Err(candle_core::Error::Msg(format!(
            "{op}: inputs differ in type"
        ))),
    }
}

fn last_dim(layout: &Layout) -> usize {
    layout.shape().dims().last().copied().unwrap_or(1)
}

impl CustomOp2 for RowOp {
    fn name(&self) -> &'static str {
        match self {
            RowOp::Add => "add-row",
            RowOp::Mul => "mul-row",
        }
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        r: &CpuStorage,
        lr: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, r) = ((x, lx), (r, lr));
        // One closure per op and type, so the inner loop has no branch.
        let out = match self {
            RowOp::Add => binary(
                self.name(),
                x,
                r,
                |x, r| row_map(x, r, |u, v| u + v),
                |x, r| row_map(x, r, |u, v| u + v),
            )?,
            RowOp::Mul => binary(
                self.name(),
                x,
                r,
                |x, r| row_map(x, r, |u, v| u * v),
                |x, r| row_map(x, r, |u, v| u * v),
            )?,
        };
        Ok((out, lx.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        r: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        match self {
            RowOp::Add => {
                let grad_r = grad.apply_op1_no_bwd(&ColSum)?;
                Ok((Some(grad), Some(grad_r)))
            }
            RowOp::Mul => {
                let grad_x = grad.apply_op2_no_bwd(&r.contiguous()?, &RowOp::Mul)?;
                let grad_r = grad.apply_op2_no_bwd(&x.contiguous()?, &ColSumProd)?;
                Ok((Some(grad_x), Some(grad_r)))
            }
        }
    }
}

impl CustomOp1 for ColSum {
    fn name(&self) -> &'static str {
        "col-sum"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = last_dim(layout);
        let out = match values(self.name(), storage, layout)? {
            Values::F32(x) => CpuStorage::F32(col_sum(x, None, d)),
            Values::F64(x) => CpuStorage::F64(col_sum(x, None, d)),
        };
        Ok((out, Shape::from(d)))
    }
}

impl CustomOp2 for ColSumProd {
    fn name(&self) -> &'static str {
        "col-sum-prod"
    }

    fn cpu_fwd(
        &self,
        a: &CpuStorage,
        la: &Layout,
        b: &CpuStorage,
        lb: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = last_dim(la);
        let out = binary(
            self.name(),
            (a, la),
            (b, lb),
            |a, b| col_sum(a, Some(b), d),
            |a, b| col_sum(a, Some(b), d),
        )?;
        Ok((out, Shape::from(d)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use candle_core::{Device, Var};

    /// The composite the op replaces.
    fn composite(x: &Tensor) -> Tensor {
        (x.relu().unwrap() - (x.neg().unwrap().relu().unwrap() * LEAKY_SLOPE).unwrap()).unwrap()
    }

    #[test]
    fn matches_the_composite_forward_and_backward() {
        let data = [-2.0f32, -0.5, 0.0, 0.25, 3.0, -1e-3];
        let x = Var::from_slice(&data, (2, 3), &Device::Cpu).unwrap();
        let weights = Tensor::new(&[[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]], &Device::Cpu).unwrap();
        let fused = leaky_relu(x.as_tensor()).unwrap();
        let reference = composite(x.as_tensor());
        let diff = (&fused - &reference)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-7);
        let grad_of_x = |y: Tensor| {
            let grads = (y * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g = grads.get(x.as_tensor()).unwrap().flatten_all().unwrap();
            g.to_vec1::<f32>().unwrap()
        };
        let (a, b) = (grad_of_x(fused), grad_of_x(reference));
        // At exactly 0 the op takes the slope, as PyTorch's leaky_relu does;
        // the composite's two relu derivatives (candle: 1 at 0) give 1.01.
        assert_eq!(a, vec![0.01, 0.02, 0.03, 4.0, 5.0, 0.06]);
        assert!(
            a[2] == 0.03 && (b[2] - 3.03).abs() < 1e-6,
            "{} {}",
            a[2],
            b[2]
        );
        assert_eq!([&a[..2], &a[3..]], [&b[..2], &b[3..]]);
    }

    /// Value and gradients of `sum(w * op(x, r))` for the fused op and for
    /// candle's broadcast, which must agree.
    #[test]
    fn row_ops_match_the_broadcasts_forward_and_backward() {
        type Op = fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>;
        let cases: [(Op, Op); 2] = [
            (add_row, |x, r| x.broadcast_add(r)),
            (mul_row, |x, r| x.broadcast_mul(r)),
        ];
        let dev = Device::Cpu;
        let xs: Vec<f32> = (0..24).map(|i| (i as f32 * 0.37).sin()).collect();
        let x = Var::from_slice(&xs, (2, 4, 3), &dev).unwrap();
        let r = Var::from_slice(&[0.5f32, -1.5, 2.0], 3, &dev).unwrap();
        let w = Tensor::from_slice(
            &xs.iter().map(|v| v * v + 0.1).collect::<Vec<_>>(),
            (2, 4, 3),
            &dev,
        )
        .unwrap();
        for (fused, reference) in cases {
            let run = |op: Op| {
                let y = op(x.as_tensor(), r.as_tensor()).unwrap();
                let loss = (y.clone() * &w).unwrap().sum_all().unwrap();
                let g = loss.backward().unwrap();
                let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                (
                    flat(&y),
                    flat(g.get(x.as_tensor()).unwrap()),
                    flat(g.get(r.as_tensor()).unwrap()),
                )
            };
            let (a, b) = (run(fused), run(reference));
            for (u, v) in [(&a.0, &b.0), (&a.1, &b.1), (&a.2, &b.2)] {
                assert_eq!(u.len(), v.len());
                assert!(
                    u.iter().zip(v).all(|(p, q)| (p - q).abs() < 1e-5),
                    "{u:?} vs {v:?}"
                );
            }
        }
        let wrong = Tensor::zeros(4, candle_core::DType::F32, &dev).unwrap();
        assert!(add_row(x.as_tensor(), &wrong).is_err());
    }

    #[test]
    fn works_on_strided_input_and_f64() {
        let x = Tensor::new(&[[-1.0f64, 2.0], [3.0, -4.0]], &Device::Cpu).unwrap();
        let y = leaky_relu(&x.t().unwrap())
            .unwrap()
            .to_vec2::<f64>()
            .unwrap();
        assert_eq!(y, vec![vec![-0.01, 3.0], vec![2.0, -0.04]]);
    }
}

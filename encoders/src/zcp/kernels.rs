//! The proxy network's sliding-window ops and batch norm as candle custom
//! ops with hand-written backward passes.
//!
//! Why: built from candle primitives (zero padding, nine narrowed windows,
//! a concatenation), a 3x3 convolution's backward pass allocates a
//! zero-padded full-size gradient per window and adds them up; batch
//! norm's broadcasts are differentiated by reductions over strided axes.
//! That bookkeeping, not the matmuls, was most of a proxy run. Here a
//! window gather ([`im2col`]) and its adjoint scatter ([`Col2Im`]) are one
//! loop each, the 3x3 box sum of the average pool is its own adjoint, and
//! [`batch_norm`] is two passes forward and two back.
//!
//! The window ops are linear, so each backward pass is the adjoint op
//! applied to the incoming gradient. All run on contiguous CPU f32 / f64
//! tensors (the wrappers make their input contiguous first).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

/// Element types the ops run on.
trait Scalar: Copy + Default + std::ops::AddAssign {
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
}
impl Scalar for f32 {
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}
impl Scalar for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(v: f64) -> Self {
        v
    }
}

/// An op on the flat contiguous data of a tensor (all linear except
/// [`BatchNorm`]).
trait Stencil {
    /// Output shape for an input of `dims`.
    fn out_shape(&self, dims: &[usize]) -> candle_core::Result<Vec<usize>>;
    /// Applies the map: `src` has the input's dims, the result `out_shape`.
    fn apply<T: Scalar>(&self, src: &[T], dims: &[usize], out: &mut [T]);
}

/// Runs `op` on a CPU storage of f32 or f64.
fn run<S: Stencil>(
    op: &S,
    name: &str,
    storage: &CpuStorage,
    layout: &Layout,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let dims = layout.shape().dims();
    let out_dims = op.out_shape(dims)?;
    let len: usize = out_dims.iter().product();
    let Some((start, end)) = layout.contiguous_offsets() else {
        return Err(candle_core::Error::Msg(format!(
            "{name}: input must be contiguous"
        )));
    };
    let storage = match storage {
        CpuStorage::F32(v) => {
            let mut out = vec![0f32; len];
            op.apply(&v[start..end], dims, &mut out);
            CpuStorage::F32(out)
        }
        CpuStorage::F64(v) => {
            let mut out = vec![0f64; len];
            op.apply(&v[start..end], dims, &mut out);
            CpuStorage::F64(out)
        }
        other => {
            return Err(candle_core::Error::Msg(format!(
                "{name}: f32 or f64 only, got {:?}",
                other.dtype()
            )));
        }
    };
    Ok((storage, Shape::from(out_dims)))
}

/// Implements candle's `CustomOp1` for a [`Stencil`] type under `name`:
/// the forward pass is [`run`], the backward pass the type's own
/// `backward` method.
macro_rules! custom_op {
    ($ty:ty, $name:literal) => {
        impl CustomOp1 for $ty {
            fn name(&self) -> &'static str {
                $name
            }

            fn cpu_fwd(
                &self,
                storage: &CpuStorage,
                layout: &Layout,
            ) -> candle_core::Result<(CpuStorage, Shape)> {
                run(self, $name, storage, layout)
            }

            fn bwd(
                &self,
                arg: &Tensor,
                res: &Tensor,
                grad: &Tensor,
            ) -> candle_core::Result<Option<Tensor>> {
                self.backward(arg, res, grad)
            }
        }
    };
}

/// `op` applied to `x` made contiguous (what [`run`] requires), with the
/// op's backward pass recorded.
fn apply_contiguous<C: CustomOp1 + Send + Sync + 'static>(
    x: &Tensor,
    op: C,
) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(op)
}

fn dims4(name: &str, dims: &[usize]) -> candle_core::Result<[usize; 4]> {
    match dims {
        &[a, b, c, d] => Ok([a, b, c, d]),
        _ => Err(candle_core::Error::Msg(format!(
            "{name}: want a 4-d input, got {dims:?}"
        ))),
    }
}

/// Visits every (window position, input position) pair of a `k x k`,
/// stride-1, zero-padded window over an `h x w` plane, one contiguous run
/// at a time: calls `f(col_offset, plane_offset, len)` where `col_offset`
/// indexes the `[k*k, oh*ow]` column block of one channel.
fn for_each_run(k: usize, pad: usize, h: usize, w: usize, mut f: impl FnMut(usize, usize, usize)) {
    let (oh, ow) = (h + 2 * pad + 1 - k, w + 2 * pad + 1 - k);
    for dy in 0..k {
        for dx in 0..k {
            let row = (dy * k + dx) * oh * ow;
            // x = j + dx - pad must lie in 0..w
            let j0 = pad.saturating_sub(dx);
            let j1 = (w + pad).saturating_sub(dx).min(ow);
            if j0 >= j1 {
                continue;
            }
            for i in 0..oh {
                let Some(y) = (i + dy).checked_sub(pad).filter(|&y| y < h) else {
                    continue;
                };
                f(row + i * ow + j0, y * w + j0 + dx - pad, j1 - j0);
            }
        }
    }
}

/// `x [b, c, h, w]` -> columns `[b, c*k*k, oh*ow]` of a stride-1 `k x k`
/// window with `pad` zeros on every side; row `c*k*k + dy*k + dx`, matching
/// a `[o, c, k, k]` weight reshaped to `[o, c*k*k]`.
#[derive(Debug, Clone, Copy)]
struct Im2Col {
    k: usize,
    pad: usize,
}

impl Stencil for Im2Col {
    fn out_shape(&self, dims: &[usize]) -> candle_core::Result<Vec<usize>> {
        let [b, c, h, w] = dims4("im2col", dims)?;
        if h + 2 * self.pad < self.k || w + 2 * self.pad < self.k {
            return Err(candle_core::Error::Msg(format!(
                "im2col: {h}x{w} plane smaller than a {0}x{0} window",
                self.k
            )));
        }
        let (oh, ow) = (h + 2 * self.pad + 1 - self.k, w + 2 * self.pad + 1 - self.k);
        Ok(vec![b, c * self.k * self.k, oh * ow])
    }

    fn apply<T: Scalar>(&self, src: &[T], dims: &[usize], out: &mut [T]) {
        let (h, w) = (dims[2], dims[3]);
        let block = out.len() / (dims[0] * dims[1]).max(1);
        for (plane, cols) in src.chunks_exact(h * w).zip(out.chunks_exact_mut(block)) {
            for_each_run(self.k, self.pad, h, w, |o, i, n| {
                cols[o..o + n].copy_from_slice(&plane[i..i + n])
            });
        }
    }
}

custom_op!(Im2Col, "nb201-im2col");

impl Im2Col {
    /// The input's gradient (candle's `bwd`).
    fn backward(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let (_, _, h, w) = arg.dims4()?;
        let back = Col2Im {
            k: self.k,
            pad: self.pad,
            h,
            w,
        };
        Ok(Some(apply_contiguous(grad, back)?))
    }
}

/// The adjoint of [`Im2Col`]: columns `[b, c*k*k, oh*ow]` -> `[b, c, h, w]`,
/// every column entry added back to the input cell it was copied from.
#[derive(Debug, Clone, Copy)]
struct Col2Im {
    k: usize,
    pad: usize,
    h: usize,
    w: usize,
}

impl Stencil for Col2Im {
    fn out_shape(&self, dims: &[usize]) -> candle_core::Result<Vec<usize>> {
        let kk = self.k * self.k;
        match dims {
            &[b, rows, _] if rows % kk == 0 => Ok(vec![b, rows / kk, self.h, self.w]),
            _ => Err(candle_core::Error::Msg(format!(
                "col2im: want [b, c*{kk}, positions], got {dims:?}"
            ))),
        }
    }

    fn apply<T: Scalar>(&self, src: &[T], dims: &[usize], out: &mut [T]) {
        let planes = dims[0] * dims[1] / (self.k * self.k);
        let block = src.len() / planes.max(1);
        let (h, w) = (self.h, self.w);
        for (cols, plane) in src.chunks_exact(block).zip(out.chunks_exact_mut(h * w)) {
            for_each_run(self.k, self.pad, h, w, |o, i, n| {
                for (p, c) in plane[i..i + n].iter_mut().zip(&cols[o..o + n]) {
                    *p += *c;
                }
            });
        }
    }
}

custom_op!(Col2Im, "nb201-col2im");

impl Col2Im {
    /// The input's gradient (candle's `bwd`).
    fn backward(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let back = Im2Col {
            k: self.k,
            pad: self.pad,
        };
        Ok(Some(apply_contiguous(grad, back)?))
    }
}

/// Sum over the 3x3 neighbourhood (zero padding 1, stride 1) of every cell
/// of `[b, c, h, w]`. Its kernel is symmetric, so it is its own adjoint.
#[derive(Debug, Clone, Copy)]
struct BoxSum3;

impl Stencil for BoxSum3 {
    fn out_shape(&self, dims: &[usize]) -> candle_core::Result<Vec<usize>> {
        dims4("box-sum", dims).map(|d| d.to_vec())
    }

    fn apply<T: Scalar>(&self, src: &[T], dims: &[usize], out: &mut [T]) {
        // Separable: sums of three along each row, then of three rows.
        let (h, w) = (dims[2], dims[3]);
        let mut rows = vec![T::default(); h * w];
        for (plane, dst) in src.chunks_exact(h * w).zip(out.chunks_exact_mut(h * w)) {
            for (x, r) in plane.chunks_exact(w).zip(rows.chunks_exact_mut(w)) {
                for j in 0..w {
                    let mut s = x[j];
                    if j > 0 {
                        s += x[j - 1];
                    }
                    if j + 1 < w {
                        s += x[j + 1];
                    }
                    r[j] = s;
                }
            }
            for i in 0..h {
                let d = &mut dst[i * w..(i + 1) * w];
                d.copy_from_slice(&rows[i * w..(i + 1) * w]);
                for n in [i.wrapping_sub(1), i + 1] {
                    if n < h {
                        for (d, r) in d.iter_mut().zip(&rows[n * w..(n + 1) * w]) {
                            *d += *r;
                        }
                    }
                }
            }
        }
    }
}

custom_op!(BoxSum3, "nb201-box-sum-3x3");

impl BoxSum3 {
    /// The input's gradient (candle's `bwd`).
    fn backward(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(apply_contiguous(grad, BoxSum3)?))
    }
}

/// Batch norm of `[b, c, h, w]` with batch statistics (biased variance),
/// unit scale and zero shift: `y = (x - mean_c) / sqrt(var_c + eps)`.
/// Statistics are accumulated in f64.
#[derive(Debug, Clone, Copy)]
struct BatchNorm {
    eps: f64,
}

/// Per-channel `(mean, 1 / sqrt(var + eps))` of `[b, c, plane]` data.
fn channel_stats<T: Scalar>(
    x: &[T],
    b: usize,
    c: usize,
    plane: usize,
    eps: f64,
) -> Vec<(f64, f64)> {
    let n = (b * plane) as f64;
    (0..c)
        .map(|ci| {
            let cells = || (0..b).flat_map(move |bi| x[(bi * c + ci) * plane..][..plane].iter());
            let mean = cells().map(|v| v.to_f64()).sum::<f64>() / n;
            let var = cells().map(|v| (v.to_f64() - mean).powi(2)).sum::<f64>() / n;
            (mean, 1.0 / (var + eps).sqrt())
        })
        .collect()
}

impl Stencil for BatchNorm {
    fn out_shape(&self, dims: &[usize]) -> candle_core::Result<Vec<usize>> {
        dims4("batch-norm", dims).map(|d| d.to_vec())
    }

    fn apply<T: Scalar>(&self, src: &[T], dims: &[usize], out: &mut [T]) {
        let (b, c, plane) = (dims[0], dims[1], dims[2] * dims[3]);
        let stats = channel_stats(src, b, c, plane, self.eps);
        for (k, (x, y)) in src
            .chunks_exact(plane)
            .zip(out.chunks_exact_mut(plane))
            .enumerate()
        {
            let (mean, inv) = stats[k % c];
            for (x, y) in x.iter().zip(y.iter_mut()) {
                *y = T::from_f64((x.to_f64() - mean) * inv);
            }
        }
    }
}

custom_op!(BatchNorm, "nb201-batch-norm");

impl BatchNorm {
    /// `dx = inv * (dy - mean_c(dy) - y * mean_c(dy * y))`.
    fn backward(
        &self,
        arg: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let (b, c, h, w) = arg.dims4()?;
        let plane = h * w;
        let flat = |t: &Tensor| {
            t.flatten_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_vec1::<f64>()
        };
        let (x, y, dy) = (flat(arg)?, flat(res)?, flat(grad)?);
        let stats = channel_stats(&x, b, c, plane, self.eps);
        let n = (b * plane) as f64;
        let mut sums = vec![(0.0, 0.0); c];
        for (k, (y, dy)) in y
            .chunks_exact(plane)
            .zip(dy.chunks_exact(plane))
            .enumerate()
        {
            let s = &mut sums[k % c];
            for (y, dy) in y.iter().zip(dy) {
                s.0 += dy;
                s.1 += dy * y;
            }
        }
        let mut dx = vec![0.0; x.len()];
        for (k, ((dx, y), dy)) in dx
            .chunks_exact_mut(plane)
            .zip(y.chunks_exact(plane))
            .zip(dy.chunks_exact(plane))
            .enumerate()
        {
            let ci = k % c;
            let (mean_dy, mean_dyy) = (sums[ci].0 / n, sums[ci].1 / n);
            let inv = stats[ci].1;
            for ((dx, y), dy) in dx.iter_mut().zip(y).zip(dy) {
                *dx = inv * (dy - mean_dy - y * mean_dyy);
            }
        }
        Ok(Some(
            Tensor::from_vec(dx, (b, c, h, w), arg.device())?.to_dtype(arg.dtype())?,
        ))
    }
}

/// Batch norm of `x [b, c, h, w]` with batch statistics, unit scale, zero
/// shift (see [`BatchNorm`]).
pub(super) fn batch_norm(x: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    apply_contiguous(x, BatchNorm { eps })
}

/// Columns `[b, c*k*k, oh*ow]` of a stride-1 `k x k` window over `x`
/// padded by `pad` zeros (see [`Im2Col`]).
pub(super) fn im2col(x: &Tensor, k: usize, pad: usize) -> candle_core::Result<Tensor> {
    apply_contiguous(x, Im2Col { k, pad })
}

/// 3x3 neighbourhood sums of `x [b, c, h, w]`, zero padded.
pub(super) fn box_sum_3x3(x: &Tensor) -> candle_core::Result<Tensor> {
    apply_contiguous(x, BoxSum3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    fn ramp(dims: &[usize], dtype: DType) -> Tensor {
        let n: usize = dims.iter().product();
        let v: Vec<f64> = (0..n)
            .map(|i| ((i * 37 % 101) as f64 - 50.0) / 17.0)
            .collect();
        Tensor::from_vec(v, dims, &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    }

    /// Gradients of `sum(y * weight)`.
    fn weighted_grads(y: &Tensor, weight: &Tensor) -> candle_core::backprop::GradStore {
        (y * weight).unwrap().sum_all().unwrap().backward().unwrap()
    }

    /// The reference the custom op replaces: pad, nine narrows, concat.
    fn im2col_reference(x: &Tensor, k: usize, pad: usize) -> Tensor {
        let (b, c, h, w) = x.dims4().unwrap();
        let (oh, ow) = (h + 2 * pad + 1 - k, w + 2 * pad + 1 - k);
        let p = x
            .pad_with_zeros(2, pad, pad)
            .unwrap()
            .pad_with_zeros(3, pad, pad)
            .unwrap();
        let mut windows = Vec::new();
        for dy in 0..k {
            for dx in 0..k {
                windows.push(
                    p.narrow(2, dy, oh)
                        .unwrap()
                        .narrow(3, dx, ow)
                        .unwrap()
                        .reshape((b, c, 1, oh * ow))
                        .unwrap(),
                );
            }
        }
        Tensor::cat(&windows, 2)
            .unwrap()
            .reshape((b, c * k * k, oh * ow))
            .unwrap()
    }

    #[test]
    fn im2col_and_its_gradient_match_the_primitive_version() {
        for dtype in [DType::F32, DType::F64] {
            for (k, pad, h, w) in [(3, 1, 5, 4), (1, 0, 3, 3), (3, 0, 4, 6)] {
                let x = Var::from_tensor(&ramp(&[2, 3, h, w], dtype)).unwrap();
                let ours = im2col(x.as_tensor(), k, pad).unwrap();
                let theirs = im2col_reference(x.as_tensor(), k, pad);
                assert_eq!(ours.dims(), theirs.dims());
                assert!(max_diff(&ours, &theirs) == 0.0, "values k{k} p{pad}");
                // weight the columns so every entry's gradient differs
                let weight = ramp(ours.dims(), dtype);
                let g_ours = weighted_grads(&ours, &weight);
                let g_theirs = weighted_grads(&theirs, &weight);
                let (a, b) = (
                    g_ours.get(x.as_tensor()).unwrap(),
                    g_theirs.get(x.as_tensor()).unwrap(),
                );
                assert!(
                    max_diff(a, b) < 1e-5,
                    "gradient k{k} p{pad}: {}",
                    max_diff(a, b)
                );
            }
        }
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), y> == <x, col2im(y)> for random-ish x, y
        let x = ramp(&[1, 2, 4, 5], DType::F64);
        let cols = im2col(&x, 3, 1).unwrap();
        let y = ramp(cols.dims(), DType::F64).affine(0.5, 0.1).unwrap();
        let back = y
            .apply_op1(Col2Im {
                k: 3,
                pad: 1,
                h: 4,
                w: 5,
            })
            .unwrap();
        let dot = |a: &Tensor, b: &Tensor| {
            (a * b)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let (lhs, rhs) = (dot(&cols, &y), dot(&x, &back));
        assert!((lhs - rhs).abs() < 1e-9, "{lhs} vs {rhs}");
    }

    #[test]
    fn box_sum_and_its_gradient_match_shifted_windows() {
        let x = Var::from_tensor(&ramp(&[2, 2, 4, 3], DType::F32)).unwrap();
        let ours = box_sum_3x3(x.as_tensor()).unwrap();
        let p = x
            .as_tensor()
            .pad_with_zeros(2, 1, 1)
            .unwrap()
            .pad_with_zeros(3, 1, 1)
            .unwrap();
        let mut theirs = x.as_tensor().zeros_like().unwrap();
        for dy in 0..3 {
            for dx in 0..3 {
                theirs = (theirs + p.narrow(2, dy, 4).unwrap().narrow(3, dx, 3).unwrap()).unwrap();
            }
        }
        assert!(max_diff(&ours, &theirs) < 1e-5);
        let weight = ramp(ours.dims(), DType::F32);
        let a = weighted_grads(&ours, &weight);
        let b = weighted_grads(&theirs, &weight);
        let d = max_diff(a.get(x.as_tensor()).unwrap(), b.get(x.as_tensor()).unwrap());
        assert!(d < 1e-5, "gradient {d}");
    }

    /// The candle-primitive batch norm the op replaces.
    fn batch_norm_reference(x: &Tensor) -> Tensor {
        let mean = x
            .mean_keepdim(0)
            .unwrap()
            .mean_keepdim(2)
            .unwrap()
            .mean_keepdim(3)
            .unwrap();
        let centred = x.broadcast_sub(&mean).unwrap();
        let var = centred
            .sqr()
            .unwrap()
            .mean_keepdim(0)
            .unwrap()
            .mean_keepdim(2)
            .unwrap()
            .mean_keepdim(3)
            .unwrap();
        centred
            .broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap())
            .unwrap()
    }

    #[test]
    fn batch_norm_and_its_gradient_match_the_primitive_version() {
        for dtype in [DType::F32, DType::F64] {
            let x = Var::from_tensor(&ramp(&[3, 2, 4, 5], dtype)).unwrap();
            let ours = batch_norm(x.as_tensor(), 1e-5).unwrap();
            let theirs = batch_norm_reference(x.as_tensor());
            assert!(
                max_diff(&ours, &theirs) < 1e-5,
                "values {}",
                max_diff(&ours, &theirs)
            );
            // a non-uniform upstream gradient, so both terms of dx matter
            let weight = ramp(ours.dims(), dtype).sqr().unwrap();
            let a = weighted_grads(&ours, &weight);
            let b = weighted_grads(&theirs, &weight);
            let d = max_diff(a.get(x.as_tensor()).unwrap(), b.get(x.as_tensor()).unwrap());
            assert!(d < 1e-4, "gradient {d}");
        }
    }

    #[test]
    fn rejects_other_dtypes_and_ranks() {
        let ints = Tensor::zeros((1, 1, 3, 3), DType::U32, &Device::Cpu).unwrap();
        assert!(
            im2col(&ints, 3, 1)
                .unwrap_err()
                .to_string()
                .contains("f32 or f64")
        );
        let flat = Tensor::zeros((3, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(box_sum_3x3(&flat).unwrap_err().to_string().contains("4-d"));
    }
}

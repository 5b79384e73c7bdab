//! Ridge regression with the penalty chosen by exact leave-one-out error.
//!
//! With k = 20 samples and up to ~20 source devices the system is tiny, so a
//! dense Cholesky solve per candidate penalty costs microseconds.

/// A fitted ridge model on centred, scaled features.
#[derive(Debug, Clone)]
pub struct Ridge {
    mean_x: Vec<f64>,
    scale_x: Vec<f64>,
    mean_y: f64,
    weights: Vec<f64>,
    /// Penalty chosen by leave-one-out.
    pub lambda: f64,
    /// Leave-one-out prediction of each training sample at that penalty
    /// (what stacking weighs models by: honest out-of-sample errors).
    pub loo_predictions: Vec<f64>,
}

impl Ridge {
    /// Fits `y ~ x` (rows of `x` are samples), picking lambda from a log grid
    /// by the closed-form leave-one-out residual `e_i / (1 - H_ii)`.
    pub fn fit_loo(x: &[Vec<f64>], y: &[f64]) -> Option<Ridge> {
        Ridge::fit_loo_anchored(x, y, 0)
    }

    /// Like [`Ridge::fit_loo`], but the first `free` columns are not
    /// penalised: the fit shrinks towards the least-squares model on those
    /// columns alone instead of towards a constant (an "anchor" such as
    /// total FLOPs, which a device's latency follows to first order).
    pub fn fit_loo_anchored(x: &[Vec<f64>], y: &[f64], free: usize) -> Option<Ridge> {
        let n = x.len();
        let d = x.first().map_or(0, Vec::len);
        if n < 2 || d == 0 || y.len() != n {
            return None;
        }
        let mean_x: Vec<f64> = (0..d)
            .map(|c| x.iter().map(|r| r[c]).sum::<f64>() / n as f64)
            .collect();
        let scale_x: Vec<f64> = (0..d)
            .map(|c| {
                let v = x.iter().map(|r| (r[c] - mean_x[c]).powi(2)).sum::<f64>() / n as f64;
                if v > 1e-18 { v.sqrt() } else { 1.0 }
            })
            .collect();
        let z: Vec<Vec<f64>> = x
            .iter()
            .map(|r| (0..d).map(|c| (r[c] - mean_x[c]) / scale_x[c]).collect())
            .collect();
        let mean_y = y.iter().sum::<f64>() / n as f64;
        let yc: Vec<f64> = y.iter().map(|v| v - mean_y).collect();
        let mut gram = vec![vec![0.0; d]; d];
        let mut xty = vec![0.0; d];
        for (r, &t) in z.iter().zip(&yc) {
            for i in 0..d {
                xty[i] += r[i] * t;
                for j in 0..d {
                    gram[i][j] += r[i] * r[j];
                }
            }
        }
        let mut best: Option<(f64, f64, Vec<f64>, Vec<f64>)> = None;
        for step in -8..=8 {
            let lambda = 10f64.powf(f64::from(step) * 0.5);
            let mut a = gram.clone();
            for (i, row) in a.iter_mut().enumerate().skip(free) {
                row[i] += lambda;
            }
            let Some(chol) = cholesky(&a) else { continue };
            let w = chol_solve(&chol, &xty);
            let mut loo = 0.0;
            let mut loo_pred = Vec::with_capacity(n);
            for (r, &t) in z.iter().zip(&yc) {
                let pred: f64 = r.iter().zip(&w).map(|(a, b)| a * b).sum();
                // H_ii = 1/n (intercept) + z_i^T (Z^T Z + lambda I)^-1 z_i
                let h = 1.0 / n as f64
                    + r.iter()
                        .zip(chol_solve(&chol, r))
                        .map(|(a, b)| a * b)
                        .sum::<f64>();
                let e = (t - pred) / (1.0 - h).max(1e-6);
                loo += e * e;
                loo_pred.push(mean_y + t - e);
            }
            if best.as_ref().is_none_or(|(l, _, _, _)| loo < *l) {
                best = Some((loo, lambda, w, loo_pred));
            }
        }
        best.map(|(_, lambda, weights, loo_predictions)| Ridge {
            mean_x,
            scale_x,
            mean_y,
            weights,
            lambda,
            loo_predictions,
        })
    }

    /// Prediction for one feature row.
    pub fn predict(&self, x: &[f64]) -> f64 {
        self.mean_y
            + x.iter()
                .zip(&self.mean_x)
                .zip(&self.scale_x)
                .zip(&self.weights)
                .map(|(((v, m), s), w)| (v - m) / s * w)
                .sum::<f64>()
    }
}

/// Lower-triangular Cholesky factor of a symmetric positive-definite matrix.
fn cholesky(a: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let n = a.len();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let v = a[i][i] - s;
                if v <= 0.0 {
                    return None;
                }
                l[i][j] = v.sqrt();
            } else {
                l[i][j] = (a[i][j] - s) / l[j][j];
            }
        }
    }
    Some(l)
}

/// Solves `L L^T x = b`.
fn chol_solve(l: &[Vec<f64>], b: &[f64]) -> Vec<f64> {
    let n = l.len();
    let mut y = vec![0.0; n];
    for i in 0..n {
        let s: f64 = (0..i).map(|k| l[i][k] * y[k]).sum();
        y[i] = (b[i] - s) / l[i][i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|k| l[k][i] * x[k]).sum();
        x[i] = (y[i] - s) / l[i][i];
    }
    x
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_linear_map() {
        let x: Vec<Vec<f64>> = (0..20)
            .map(|i| vec![f64::from(i), f64::from((i * 7) % 5)])
            .collect();
        let y: Vec<f64> = x.iter().map(|r| 2.0 * r[0] - 3.0 * r[1] + 1.0).collect();
        let m = Ridge::fit_loo(&x, &y).unwrap();
        assert!(
            (m.predict(&[4.0, 2.0]) - 3.0).abs() < 0.1,
            "{}",
            m.predict(&[4.0, 2.0])
        );
    }

    #[test]
    fn loo_predictions_match_refitting_without_the_sample() {
        check_loo(0);
    }

    #[test]
    fn anchored_loo_predictions_match_refitting_without_the_sample() {
        check_loo(1);
    }

    #[test]
    fn anchored_fit_does_not_shrink_the_anchor() {
        // y follows the anchor column exactly; the other column is noise.
        // Whatever penalty LOO picks, the anchored fit keeps the anchor's
        // full slope (a plain ridge would shrink it towards 0).
        let x: Vec<Vec<f64>> = (0..20)
            .map(|i| vec![f64::from(i), f64::from((i * 7) % 5)])
            .collect();
        let y: Vec<f64> = x.iter().map(|r| 2.0 * r[0] + 1.0).collect();
        let m = Ridge::fit_loo_anchored(&x, &y, 1).unwrap();
        let far = m.predict(&[100.0, 2.0]);
        assert!((far - 201.0).abs() < 1e-3 * 201.0, "{far}");
        let slope_z = m.weights[0];
        let exact = 2.0 * m.scale_x[0];
        assert!(
            (slope_z - exact).abs() < 1e-6 * exact,
            "{slope_z} vs {exact}"
        );
    }

    fn check_loo(free: usize) {
        let x: Vec<Vec<f64>> = (0..12)
            .map(|i| vec![f64::from(i), f64::from((i * 5) % 7)])
            .collect();
        let y: Vec<f64> = x
            .iter()
            .enumerate()
            .map(|(i, r)| r[0] - 0.5 * r[1] + if i % 2 == 0 { 0.3 } else { -0.2 })
            .collect();
        let m = Ridge::fit_loo_anchored(&x, &y, free).unwrap();
        // Refit without sample 3 at the same penalty: a closed-form LOO
        // residual must equal the refit's error (intercept unpenalised,
        // standardisation from the full set, as in the fit).
        let i = 3;
        let z = |r: &Vec<f64>| -> Vec<f64> {
            (0..2)
                .map(|c| (r[c] - m.mean_x[c]) / m.scale_x[c])
                .collect()
        };
        let rows: Vec<usize> = (0..12).filter(|&j| j != i).collect();
        // Solve the 3x3 system [1 z] with penalty on the z part only.
        let mut a = [[0.0f64; 3]; 3];
        let mut b = [0.0f64; 3];
        for &j in &rows {
            let zj = z(&x[j]);
            let v = [1.0, zj[0], zj[1]];
            for p in 0..3 {
                b[p] += v[p] * y[j];
                for q in 0..3 {
                    a[p][q] += v[p] * v[q];
                }
            }
        }
        for (p, row) in a.iter_mut().enumerate().skip(1 + free) {
            row[p] += m.lambda;
        }
        let a: Vec<Vec<f64>> = a.iter().map(|r| r.to_vec()).collect();
        let w = chol_solve(&cholesky(&a).unwrap(), &b);
        let zi = z(&x[i]);
        let refit = w[0] + w[1] * zi[0] + w[2] * zi[1];
        assert!(
            (refit - m.loo_predictions[i]).abs() < 1e-6,
            "closed form {} vs refit {refit}",
            m.loo_predictions[i]
        );
    }
}

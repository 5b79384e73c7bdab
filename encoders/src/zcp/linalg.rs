//! The small dense linear algebra the proxies need on `batch x batch`
//! matrices: correlation matrices, symmetric eigenvalues, log-determinants.

/// Pearson correlation matrix of the rows of `rows` (numpy's `corrcoef`).
/// `None` when a row is constant (numpy would give NaN).
pub fn corrcoef(rows: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let centred: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| {
            let m = r.iter().sum::<f64>() / r.len().max(1) as f64;
            r.iter().map(|v| v - m).collect()
        })
        .collect();
    let norms: Vec<f64> = centred
        .iter()
        .map(|r| r.iter().map(|v| v * v).sum::<f64>().sqrt())
        .collect();
    if norms.iter().any(|&n| n <= 0.0 || !n.is_finite()) {
        return None;
    }
    let n = rows.len();
    let mut c = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in i..n {
            let dot: f64 = centred[i].iter().zip(&centred[j]).map(|(a, b)| a * b).sum();
            let v = (dot / (norms[i] * norms[j])).clamp(-1.0, 1.0);
            c[i][j] = v;
            c[j][i] = v;
        }
    }
    Some(c)
}

/// Eigenvalues of a symmetric matrix by cyclic Jacobi rotations.
pub fn symmetric_eigenvalues(matrix: &[Vec<f64>]) -> Vec<f64> {
    let n = matrix.len();
    let mut a: Vec<Vec<f64>> = matrix.to_vec();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum();
        if off < 1e-22 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if a[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for row in a.iter_mut() {
                    let (akp, akq) = (row[p], row[q]);
                    row[p] = c * akp - s * akq;
                    row[q] = s * akp + c * akq;
                }
                let (row_p, row_q) = (a[p].clone(), a[q].clone());
                for (k, (apk, aqk)) in row_p.iter().zip(&row_q).enumerate() {
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
            }
        }
    }
    (0..n).map(|i| a[i][i]).collect()
}

/// `log |det(matrix)|` by LU with partial pivoting (numpy's `slogdet`'s
/// log-absolute part); `-inf` for a singular matrix.
pub fn log_abs_det(matrix: &[Vec<f64>]) -> f64 {
    let n = matrix.len();
    let mut a: Vec<Vec<f64>> = matrix.to_vec();
    let mut total = 0.0;
    for col in 0..n {
        let pivot = (col..n).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()));
        let Some(pivot) = pivot else {
            return f64::NEG_INFINITY;
        };
        if a[pivot][col] == 0.0 {
            return f64::NEG_INFINITY;
        }
        a.swap(col, pivot);
        let d = a[col][col];
        total += d.abs().ln();
        let pivot_row = a[col].clone();
        for row in a.iter_mut().skip(col + 1) {
            let f = row[col] / d;
            if f != 0.0 {
                for (x, p) in row.iter_mut().zip(&pivot_row).skip(col) {
                    *x -= f * p;
                }
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigenvalues_and_logdet_of_a_known_matrix() {
        // [[2,1],[1,2]] has eigenvalues 1 and 3, determinant 3.
        let m = vec![vec![2.0, 1.0], vec![1.0, 2.0]];
        let mut e = symmetric_eigenvalues(&m);
        e.sort_by(f64::total_cmp);
        assert!(
            (e[0] - 1.0).abs() < 1e-10 && (e[1] - 3.0).abs() < 1e-10,
            "{e:?}"
        );
        assert!((log_abs_det(&m) - 3f64.ln()).abs() < 1e-12);
        assert_eq!(
            log_abs_det(&[vec![1.0, 2.0], vec![2.0, 4.0]]),
            f64::NEG_INFINITY
        );
    }

    #[test]
    fn corrcoef_of_opposite_rows() {
        let c = corrcoef(&[vec![1.0, 2.0, 3.0], vec![3.0, 2.0, 1.0]]).unwrap();
        assert!((c[0][1] + 1.0).abs() < 1e-12);
        assert!(corrcoef(&[vec![1.0, 1.0], vec![1.0, 2.0]]).is_none());
    }
}

//! Rank correlations and the within-10% accuracy share.
//!
//! Spearman rho is the paper's metric (Section 6.2). Kendall tau-b uses
//! Knight's O(n log n) algorithm (exact, tie-corrected), so it is cheap on all
//! 15,625 NB201 architectures.

use std::cmp::Ordering;

pub use nasflat_shared::stats::{average_ranks, pearson, spearman};

/// Kendall tau-b, exact, O(n log n) (Knight 1966).
pub fn kendall_tau_b(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len());
    if n < 2 {
        return 0.0;
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| match x[a].total_cmp(&x[b]) {
        Ordering::Equal => y[a].total_cmp(&y[b]),
        other => other,
    });
    let pairs = |t: u64| t * t.saturating_sub(1) / 2;
    let n0 = pairs(n as u64);
    // Ties in x, and joint ties in (x, y).
    let (mut n1, mut n3) = (0u64, 0u64);
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && x[order[j]] == x[order[i]] {
            j += 1;
        }
        n1 += pairs((j - i) as u64);
        let mut k = i;
        while k < j {
            let mut l = k + 1;
            while l < j && y[order[l]] == y[order[k]] {
                l += 1;
            }
            n3 += pairs((l - k) as u64);
            k = l;
        }
        i = j;
    }
    let mut ys: Vec<f64> = order.iter().map(|&k| y[k]).collect();
    let swaps = merge_count(&mut ys);
    let mut n2 = 0u64;
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && ys[j] == ys[i] {
            j += 1;
        }
        n2 += pairs((j - i) as u64);
        i = j;
    }
    let numerator = n0 as f64 - n1 as f64 - n2 as f64 + n3 as f64 - 2.0 * swaps as f64;
    let denominator = ((n0 - n1) as f64 * (n0 - n2) as f64).sqrt();
    if denominator <= 0.0 {
        0.0
    } else {
        numerator / denominator
    }
}

/// Sorts `v` ascending and returns the number of strict inversions.
fn merge_count(v: &mut [f64]) -> u64 {
    let n = v.len();
    if n < 2 {
        return 0;
    }
    let mid = n / 2;
    let mut swaps = merge_count(&mut v[..mid]) + merge_count(&mut v[mid..]);
    let mut merged = Vec::with_capacity(n);
    let (mut i, mut j) = (0, mid);
    while i < mid && j < n {
        if v[j] < v[i] {
            swaps += (mid - i) as u64;
            merged.push(v[j]);
            j += 1;
        } else {
            merged.push(v[i]);
            i += 1;
        }
    }
    merged.extend_from_slice(&v[i..mid]);
    merged.extend_from_slice(&v[j..n]);
    v.copy_from_slice(&merged);
    swaps
}

/// Share of predictions within +-10% of the true latency.
pub fn within_fraction(predicted: &[f64], truth: &[f64], tolerance: f64) -> f64 {
    let n = predicted.len().min(truth.len());
    if n == 0 {
        return 0.0;
    }
    let hits = predicted
        .iter()
        .zip(truth)
        .filter(|(p, t)| ((*p - *t) / t.abs().max(f64::MIN_POSITIVE)).abs() <= tolerance)
        .count();
    hits as f64 / n as f64
}

/// Mean absolute percentage error of `predicted` against `truth`, as a
/// share (0.05 = 5 %): what a latency budget feels, beside the rank metrics.
pub fn mape(predicted: &[f64], truth: &[f64]) -> f64 {
    let n = predicted.len().min(truth.len());
    if n == 0 {
        return f64::NAN;
    }
    predicted
        .iter()
        .zip(truth)
        .map(|(p, t)| ((p - t) / t.abs().max(f64::MIN_POSITIVE)).abs())
        .sum::<f64>()
        / n as f64
}

/// Mean squared value of `residuals` and its standard error (the sample
/// standard deviation of the squares over the square root of their
/// count): how a leave-one-out error and its noise are scored when a
/// weight is chosen by the one-standard-error rule.
pub fn mse_and_se(residuals: &[f64]) -> (f64, f64) {
    let n = residuals.len().max(1) as f64;
    let sq: Vec<f64> = residuals.iter().map(|x| x * x).collect();
    let mean = sq.iter().sum::<f64>() / n;
    let var = sq.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, (var / n).sqrt())
}

/// Mean and (population) standard deviation.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn brute_tau_b(x: &[f64], y: &[f64]) -> f64 {
        let (mut c, mut d, mut tx, mut ty) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        for i in 0..x.len() {
            for j in i + 1..x.len() {
                let a = (x[i] - x[j]).signum() * if x[i] == x[j] { 0.0 } else { 1.0 };
                let b = (y[i] - y[j]).signum() * if y[i] == y[j] { 0.0 } else { 1.0 };
                if a == 0.0 && b == 0.0 {
                    continue;
                }
                if a == 0.0 {
                    tx += 1.0;
                } else if b == 0.0 {
                    ty += 1.0;
                } else if a * b > 0.0 {
                    c += 1.0;
                } else {
                    d += 1.0;
                }
            }
        }
        (c - d) / ((c + d + tx) * (c + d + ty)).sqrt()
    }

    #[test]
    fn ranks_with_ties() {
        assert_eq!(
            average_ranks(&[10.0, 20.0, 10.0, 30.0]),
            vec![1.5, 3.0, 1.5, 4.0]
        );
    }

    #[test]
    fn spearman_hand_computed() {
        // Perfect and reversed orders.
        assert!((spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // x = [1,2,3,4,5], y = [2,1,4,3,5]: d^2 = 1+1+1+1+0 = 4, rho = 1 - 6*4/(5*24) = 0.8.
        let rho = spearman(&[1.0, 2.0, 3.0, 4.0, 5.0], &[2.0, 1.0, 4.0, 3.0, 5.0]);
        assert!((rho - 0.8).abs() < 1e-12, "{rho}");
        // Ties: x ranks [1.5,1.5,3], y ranks [1,2,3]; Pearson of those = sqrt(3)/2.
        let rho = spearman(&[1.0, 1.0, 2.0], &[1.0, 2.0, 3.0]);
        assert!((rho - 3f64.sqrt() / 2.0).abs() < 1e-12, "{rho}");
        // Constant side.
        assert_eq!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), 0.0);
    }

    #[test]
    fn kendall_hand_computed_and_ties() {
        // One discordant pair out of 10: (9 - 1) / 10 = 0.8.
        let t = kendall_tau_b(&[1.0, 2.0, 3.0, 4.0, 5.0], &[2.0, 1.0, 3.0, 4.0, 5.0]);
        assert!((t - 0.8).abs() < 1e-12, "{t}");
        // x = [1,1,2], y = [1,2,3]: C = 2, D = 0, tx = 1: 2 / sqrt(2 * 3).
        let t = kendall_tau_b(&[1.0, 1.0, 2.0], &[1.0, 2.0, 3.0]);
        assert!((t - 2.0 / 6f64.sqrt()).abs() < 1e-12, "{t}");
        let x = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0];
        let y = [2.0, 7.0, 1.0, 8.0, 2.0, 8.0, 1.0, 8.0, 2.0, 8.0, 4.0];
        assert!((kendall_tau_b(&x, &y) - brute_tau_b(&x, &y)).abs() < 1e-12);
    }

    #[test]
    fn within_ten_percent() {
        let w = within_fraction(&[1.05, 2.5, 0.91, 4.0], &[1.0, 2.0, 1.0, 4.0], 0.1);
        assert!((w - 0.75).abs() < 1e-12);
    }
}

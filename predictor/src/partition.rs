//! Device-set partitioning (paper Section 6.1, Algorithm 1): split a space's
//! devices into m source and n target devices with low source-target
//! correlation, instead of hand-picking an easy split.
//!
//! Steps: Spearman correlation of latencies between every pair of devices;
//! a complete graph whose edge weights are the *negative* correlations;
//! Kernighan-Lin bisection of it (minimum cut of `-rho`, i.e. each half
//! gathers devices with little mutual correlation, as the paper's code does
//! with networkx); then iterative trimming: while a side is too large, drop
//! from it the device with the largest summed correlation to the other side.

use std::collections::HashMap;

use nasflat_shared::data::NumericTable;
use rand::Rng;
use rand::seq::SliceRandom;

use crate::correlation::{average_ranks, mean_std, pearson};
use crate::error::{PredictorError, Result};
use crate::keywords::keywords;

/// Passes of Kernighan-Lin at most (networkx's default `max_iter`).
pub const KL_MAX_PASSES: usize = 10;

/// Spearman rho between the latency columns `devices` of `table`, each pair
/// over the architectures both devices measured (NB201's EAGLE devices miss
/// some cells). Ranks are cached per (column, shared-rows pattern): the
/// tables have only a handful of distinct missing-value patterns.
pub fn device_correlations(table: &NumericTable, devices: &[usize]) -> Vec<Vec<f64>> {
    let n = devices.len();
    let masks: Vec<Vec<bool>> = devices
        .iter()
        .map(|&d| {
            table
                .column_at(d)
                .iter()
                .map(|v| v.is_some_and(|x| x > 0.0))
                .collect()
        })
        .collect();
    let mut patterns: Vec<Vec<bool>> = Vec::new();
    let mut ranks: HashMap<(usize, usize), Vec<f64>> = HashMap::new();
    let mut rank_of = |col: usize, pattern: usize, patterns: &[Vec<bool>]| -> Vec<f64> {
        ranks
            .entry((col, pattern))
            .or_insert_with(|| {
                let values: Vec<f64> = table
                    .column_at(devices[col])
                    .iter()
                    .zip(&patterns[pattern])
                    .filter(|(_, keep)| **keep)
                    .map(|(v, _)| v.unwrap_or(0.0))
                    .collect();
                average_ranks(&values)
            })
            .clone()
    };
    let mut rho = vec![vec![0.0; n]; n];
    for i in 0..n {
        rho[i][i] = 1.0;
        for j in i + 1..n {
            let shared: Vec<bool> = masks[i]
                .iter()
                .zip(&masks[j])
                .map(|(a, b)| *a && *b)
                .collect();
            let pattern = match patterns.iter().position(|p| *p == shared) {
                Some(p) => p,
                None => {
                    patterns.push(shared);
                    patterns.len() - 1
                }
            };
            let r = pearson(
                &rank_of(i, pattern, &patterns),
                &rank_of(j, pattern, &patterns),
            );
            rho[i][j] = r;
            rho[j][i] = r;
        }
    }
    rho
}

/// Sum of `weights[a][b]` over the pairs that cross the cut.
pub fn cut_weight(weights: &[Vec<f64>], a: &[usize], b: &[usize]) -> f64 {
    a.iter()
        .map(|&i| b.iter().map(|&j| weights[i][j]).sum::<f64>())
        .sum()
}

/// Kernighan-Lin bisection (Kernighan & Lin, 1970) of a complete graph with
/// symmetric `weights` (diagonal ignored) into sides of `size_a` and
/// `n - size_a` nodes, minimising the cut weight. The seeded random initial
/// split is improved by passes of tentative pair swaps; each pass keeps the
/// best prefix of swaps if it lowers the cut, until a pass gains nothing.
/// Returns both sides sorted.
pub fn kernighan_lin(
    weights: &[Vec<f64>],
    size_a: usize,
    max_passes: usize,
    rng: &mut impl Rng,
) -> Result<(Vec<usize>, Vec<usize>)> {
    let n = weights.len();
    if size_a > n || weights.iter().any(|r| r.len() != n) {
        return Err(PredictorError::input(
            "kernighan-lin",
            format!("a side of at most {n} nodes of a square matrix"),
            format!("a side of {size_a}"),
        ));
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    let mut side_a = vec![false; n];
    for &v in &order[..size_a] {
        side_a[v] = true;
    }
    let w = |i: usize, j: usize| if i == j { 0.0 } else { weights[i][j] };
    for _ in 0..max_passes {
        // D(v) = external - internal cost: the cut reduction of moving v alone.
        let mut d: Vec<f64> = (0..n)
            .map(|v| {
                (0..n)
                    .map(|u| {
                        if side_a[u] == side_a[v] {
                            -w(v, u)
                        } else {
                            w(v, u)
                        }
                    })
                    .sum()
            })
            .collect();
        let mut locked = vec![false; n];
        let mut swaps: Vec<(usize, usize)> = Vec::new();
        let mut gains: Vec<f64> = Vec::new();
        let pairs = size_a.min(n - size_a);
        for _ in 0..pairs {
            let mut best: Option<(usize, usize, f64)> = None;
            for a in (0..n).filter(|&v| side_a[v] && !locked[v]) {
                for b in (0..n).filter(|&v| !side_a[v] && !locked[v]) {
                    let g = d[a] + d[b] - 2.0 * w(a, b);
                    if best.is_none_or(|(_, _, bg)| g > bg) {
                        best = Some((a, b, g));
                    }
                }
            }
            let Some((a, b, g)) = best else { break };
            locked[a] = true;
            locked[b] = true;
            swaps.push((a, b));
            gains.push(g);
            for x in (0..n).filter(|&v| !locked[v]) {
                if side_a[x] {
                    d[x] += 2.0 * w(x, a) - 2.0 * w(x, b);
                } else {
                    d[x] += 2.0 * w(x, b) - 2.0 * w(x, a);
                }
            }
        }
        let mut best_prefix = (0, 0.0);
        let mut total = 0.0;
        for (i, g) in gains.iter().enumerate() {
            total += g;
            if total > best_prefix.1 + 1e-12 {
                best_prefix = (i + 1, total);
            }
        }
        if best_prefix.0 == 0 {
            break;
        }
        for &(a, b) in &swaps[..best_prefix.0] {
            side_a[a] = false;
            side_a[b] = true;
        }
    }
    let a: Vec<usize> = (0..n).filter(|&v| side_a[v]).collect();
    let b: Vec<usize> = (0..n).filter(|&v| !side_a[v]).collect();
    Ok((a, b))
}

/// Algorithm 1's trimming: while `train` has more than `m` (or `test` more
/// than `n`) devices, remove from it the device whose summed correlation to
/// the other side is largest.
pub fn trim(
    rho: &[Vec<f64>],
    mut train: Vec<usize>,
    mut test: Vec<usize>,
    m: usize,
    n: usize,
) -> (Vec<usize>, Vec<usize>) {
    let most_correlated = |side: &[usize], other: &[usize]| -> Option<usize> {
        (0..side.len()).max_by(|&x, &y| {
            let s = |i: usize| other.iter().map(|&o| rho[side[i]][o]).sum::<f64>();
            s(x).total_cmp(&s(y)).then(y.cmp(&x))
        })
    };
    while train.len() > m || test.len() > n {
        if train.len() > m
            && let Some(i) = most_correlated(&train, &test)
        {
            train.remove(i);
        }
        if test.len() > n
            && let Some(i) = most_correlated(&test, &train)
        {
            test.remove(i);
        }
    }
    (train, test)
}

/// Mean correlation over all (train, test) pairs.
pub fn mean_cross(rho: &[Vec<f64>], train: &[usize], test: &[usize]) -> f64 {
    let pairs = (train.len() * test.len()).max(1) as f64;
    cut_weight(rho, train, test) / pairs
}

/// A source/target split of a correlation matrix's devices.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// Source (training) device positions.
    pub train: Vec<usize>,
    /// Target (test) device positions.
    pub test: Vec<usize>,
    /// Mean train-test correlation.
    pub mean_cross: f64,
}

fn check_sizes(devices: usize, m: usize, n: usize) -> Result<()> {
    if m == 0 || n == 0 || m + n > devices {
        return Err(PredictorError::input(
            "task sizes",
            format!("at least one train and one test device, at most {devices} devices in all"),
            format!("--train {m} --test {n}"),
        ));
    }
    Ok(())
}

/// Edge weights of the graph that Kernighan-Lin cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EdgeWeight {
    /// `-rho`, Algorithm 1 and the paper's code: the minimum cut puts
    /// mutually *uncorrelated* devices together, so the halves are mixed and
    /// the trimming does the separating.
    #[default]
    NegativeCorrelation,
    /// `rho`: the minimum cut directly minimises the summed source-target
    /// correlation (correlated devices end up on the same side).
    Correlation,
}

keywords!(EdgeWeight, "edge weight" {
    NegativeCorrelation => "negative" | "paper",
    Correlation => "positive" | "correlation",
});

/// Algorithm 1: Kernighan-Lin bisection, then trimming to `m` sources and
/// `n` targets. The bisection is balanced (or as unbalanced as `m`, `n`
/// require); when either half could be the source side, the orientation
/// with the lower mean train-test correlation is kept.
pub fn generate(
    rho: &[Vec<f64>],
    m: usize,
    n: usize,
    weight: EdgeWeight,
    rng: &mut impl Rng,
) -> Result<Split> {
    let devices = rho.len();
    check_sizes(devices, m, n)?;
    let sign = match weight {
        EdgeWeight::NegativeCorrelation => -1.0,
        EdgeWeight::Correlation => 1.0,
    };
    let weights: Vec<Vec<f64>> = rho
        .iter()
        .map(|r| r.iter().map(|v| sign * v).collect())
        .collect();
    let size_a = (devices / 2).max(m).min(devices - n);
    let (a, b) = kernighan_lin(&weights, size_a, KL_MAX_PASSES, rng)?;
    let mut best: Option<Split> = None;
    for (train, test) in [(a.clone(), b.clone()), (b, a)] {
        if train.len() < m || test.len() < n {
            continue;
        }
        let (train, test) = trim(rho, train, test, m, n);
        let mean_cross = mean_cross(rho, &train, &test);
        if best.as_ref().is_none_or(|s| mean_cross < s.mean_cross) {
            best = Some(Split {
                train,
                test,
                mean_cross,
            });
        }
    }
    best.ok_or_else(|| {
        PredictorError::input("task sizes", "sizes some orientation fits", "none fits")
    })
}

/// Mean and std of the mean train-test correlation over `count` uniformly
/// random splits of the same sizes.
pub fn random_baseline(
    rho: &[Vec<f64>],
    m: usize,
    n: usize,
    count: usize,
    rng: &mut impl Rng,
) -> Result<(f64, f64)> {
    check_sizes(rho.len(), m, n)?;
    let mut order: Vec<usize> = (0..rho.len()).collect();
    let values: Vec<f64> = (0..count)
        .map(|_| {
            order.shuffle(rng);
            mean_cross(rho, &order[..m], &order[m..m + n])
        })
        .collect();
    Ok(mean_std(&values))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// Two 3-node cliques joined by weak edges, plus one cross edge of
    /// weight 2: the best bisection is {0,1,2} | {3,4,5}, cut 2 + 8 * 0.1.
    fn two_cliques() -> Vec<Vec<f64>> {
        let mut w = vec![vec![0.1; 6]; 6];
        for group in [[0, 1, 2], [3, 4, 5]] {
            for &i in &group {
                for &j in &group {
                    w[i][j] = 5.0;
                }
            }
        }
        w[2][3] = 2.0;
        w[3][2] = 2.0;
        w
    }

    #[test]
    fn kernighan_lin_finds_the_known_best_bisection_from_any_start() {
        let w = two_cliques();
        for seed in 0..20 {
            let (a, b) =
                kernighan_lin(&w, 3, KL_MAX_PASSES, &mut StdRng::seed_from_u64(seed)).unwrap();
            let mut sides = [a.clone(), b.clone()];
            sides.sort();
            assert_eq!(sides, [vec![0, 1, 2], vec![3, 4, 5]], "seed {seed}");
            assert!((cut_weight(&w, &a, &b) - 2.8).abs() < 1e-9);
        }
    }

    #[test]
    fn kernighan_lin_is_deterministic_and_keeps_sizes() {
        let mut rng = StdRng::seed_from_u64(3);
        let w: Vec<Vec<f64>> = (0..11)
            .map(|i| {
                (0..11)
                    .map(|j| ((i * 7 + j * 7 + i * j) % 5) as f64)
                    .collect()
            })
            .collect();
        let x = kernighan_lin(&w, 4, KL_MAX_PASSES, &mut rng).unwrap();
        let y = kernighan_lin(&w, 4, KL_MAX_PASSES, &mut StdRng::seed_from_u64(3)).unwrap();
        assert_eq!(x, y);
        assert_eq!((x.0.len(), x.1.len()), (4, 7));
        assert!(kernighan_lin(&w, 12, 1, &mut rng).is_err());
    }

    #[test]
    fn trimming_drops_the_most_cross_correlated_until_sizes_fit() {
        // 0 and 3 are strongly correlated across the split; they go first.
        let mut rho = vec![vec![0.1; 6]; 6];
        rho[0][3] = 0.9;
        rho[3][0] = 0.9;
        let (train, test) = trim(&rho, vec![0, 1, 2], vec![3, 4, 5], 2, 2);
        assert_eq!(train, vec![1, 2]);
        assert_eq!(test, vec![4, 5]);
        let (train, test) = trim(&rho, vec![0, 1, 2], vec![3, 4, 5], 1, 3);
        assert_eq!((train.len(), test.len()), (1, 3));
        assert!(!train.contains(&0));
    }

    #[test]
    fn generate_keeps_sizes_and_positive_weights_separate_groups() {
        // Devices 0-3 correlate with each other (0.9), as do 4-7; across
        // groups 0.1.
        let rho: Vec<Vec<f64>> = (0..8)
            .map(|i| {
                (0..8)
                    .map(|j| {
                        if i == j {
                            1.0
                        } else if i / 4 == j / 4 {
                            0.9
                        } else {
                            0.1
                        }
                    })
                    .collect()
            })
            .collect();
        for weight in [EdgeWeight::NegativeCorrelation, EdgeWeight::Correlation] {
            let s1 = generate(&rho, 3, 2, weight, &mut StdRng::seed_from_u64(1)).unwrap();
            let s2 = generate(&rho, 3, 2, weight, &mut StdRng::seed_from_u64(1)).unwrap();
            assert_eq!(s1, s2);
            assert_eq!((s1.train.len(), s1.test.len()), (3, 2));
            let mut all: Vec<usize> = s1.train.iter().chain(&s1.test).copied().collect();
            all.sort_unstable();
            all.dedup();
            assert_eq!(all.len(), 5);
        }
        let split = generate(
            &rho,
            3,
            2,
            EdgeWeight::Correlation,
            &mut StdRng::seed_from_u64(1),
        )
        .unwrap();
        assert!((split.mean_cross - 0.1).abs() < 1e-12, "{split:?}");
        let (random, _) = random_baseline(&rho, 3, 2, 200, &mut StdRng::seed_from_u64(1)).unwrap();
        assert!(
            split.mean_cross < random,
            "{} vs {random}",
            split.mean_cross
        );
        let mut rng = StdRng::seed_from_u64(1);
        assert!(generate(&rho, 6, 3, EdgeWeight::default(), &mut rng).is_err());
        assert!(generate(&rho, 0, 3, EdgeWeight::default(), &mut rng).is_err());
    }

    #[test]
    fn correlations_use_rows_both_devices_measured() {
        let table =
            NumericTable::parse("t", "index,a,b,c\n0,1,2,\n1,2,4,3\n2,3,6,2\n3,4,1,1\n").unwrap();
        let rho = device_correlations(&table, &[0, 1, 2]);
        // ranks a = 1 2 3 4, b = 2 3 4 1: rho = -1 / 5.
        assert!((rho[0][1] + 0.2).abs() < 1e-12, "{}", rho[0][1]);
        // a vs c over rows 1..3: a rises, c falls.
        assert!((rho[0][2] + 1.0).abs() < 1e-12, "{}", rho[0][2]);
        assert_eq!(rho[1][0], rho[0][1]);
    }
}

//! Picking k architectures from an encoding (paper Section 4.2): greedy
//! cosine dissimilarity and KMeans centroids, both restricted to candidate
//! rows (those the target device has measurements for).

use rand::Rng;

use crate::encoding::Encoding;
use crate::error::{PredictorError, Result};

/// Lloyd iterations at most; KMeans on 15,625 x 32 converges in far fewer.
const MAX_LLOYD_ITERATIONS: usize = 100;

fn check(rows: &[usize], k: usize, enc: &Encoding) -> Result<()> {
    if k > rows.len() {
        return Err(PredictorError::input(
            "sampler",
            format!("at most {} architectures", rows.len()),
            k.to_string(),
        ));
    }
    if let Some(r) = rows.iter().find(|&&r| r >= enc.rows()) {
        return Err(PredictorError::input(
            "sampler",
            format!("rows of encoding `{}` (< {})", enc.name, enc.rows()),
            format!("row {r}"),
        ));
    }
    Ok(())
}

/// Greedy cosine dissimilarity: start from a seeded random candidate, then
/// repeatedly add the candidate with the lowest mean cosine similarity to
/// those already chosen (ties: lowest position in `rows`). Zero vectors have
/// similarity 0 to everything (sklearn's convention).
pub fn cosine(enc: &Encoding, rows: &[usize], k: usize, rng: &mut impl Rng) -> Result<Vec<usize>> {
    check(rows, k, enc)?;
    if k == 0 {
        return Ok(Vec::new());
    }
    let dim = enc.dim();
    let mut unit = Vec::with_capacity(rows.len() * dim);
    for &r in rows {
        let v = enc.row(r);
        let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        unit.extend(v.iter().map(|x| {
            if norm > 0.0 {
                f64::from(*x) / norm
            } else {
                0.0
            }
        }));
    }
    let mut chosen = vec![false; rows.len()];
    let mut similarity_sum = vec![0.0f64; rows.len()];
    let mut picked = Vec::with_capacity(k);
    let mut next = rng.random_range(0..rows.len());
    loop {
        chosen[next] = true;
        picked.push(rows[next]);
        if picked.len() == k {
            return Ok(picked);
        }
        let c = &unit[next * dim..(next + 1) * dim];
        for (i, s) in similarity_sum.iter_mut().enumerate() {
            let u = &unit[i * dim..(i + 1) * dim];
            *s += u.iter().zip(c).map(|(a, b)| a * b).sum::<f64>();
        }
        next = (0..rows.len())
            .filter(|&i| !chosen[i])
            .min_by(|&a, &b| similarity_sum[a].total_cmp(&similarity_sum[b]))
            .ok_or_else(|| PredictorError::internal("sampler", "ran out of candidates"))?;
    }
}

/// The paper code's cosine sampler (`get_distinct_cosine_centers_avg` in
/// `main_trf.py`): rank candidates by their mean cosine similarity to all
/// candidates, split that order into k equal buckets and draw one per
/// bucket, so the picks run from outliers to the most typical architectures.
pub fn cosine_spread(
    enc: &Encoding,
    rows: &[usize],
    k: usize,
    rng: &mut impl Rng,
) -> Result<Vec<usize>> {
    check(rows, k, enc)?;
    if k == 0 {
        return Ok(Vec::new());
    }
    let dim = enc.dim();
    let unit = |r: usize| -> Vec<f64> {
        let v = enc.row(r);
        let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        v.iter()
            .map(|x| {
                if norm > 0.0 {
                    f64::from(*x) / norm
                } else {
                    0.0
                }
            })
            .collect()
    };
    // mean_j cos(i, j) = u_i . mean_j(u_j)
    let mut centre = vec![0.0f64; dim];
    for &r in rows {
        for (c, v) in centre.iter_mut().zip(unit(r)) {
            *c += v / rows.len() as f64;
        }
    }
    let score: Vec<f64> = rows
        .iter()
        .map(|&r| unit(r).iter().zip(&centre).map(|(a, b)| a * b).sum())
        .collect();
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| score[a].total_cmp(&score[b]).then(a.cmp(&b)));
    let ordered: Vec<usize> = order.into_iter().map(|i| rows[i]).collect();
    bucket_spread(&ordered, k, rng)
}

fn dist2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// KMeans (k-means++ seeding, Lloyd iterations) over the candidates, then
/// the candidate nearest each centroid. The paper's sklearn run returned NaN
/// when a cluster came out empty or two centroids shared an architecture;
/// here an empty cluster is re-seeded with the point farthest from its
/// centroid, centroids pick in order of cluster size and each takes the
/// nearest candidate not yet picked, so the result is always k distinct rows.
pub fn kmeans(enc: &Encoding, rows: &[usize], k: usize, rng: &mut impl Rng) -> Result<Vec<usize>> {
    check(rows, k, enc)?;
    if k == 0 {
        return Ok(Vec::new());
    }
    let dim = enc.dim();
    let point = |i: usize| enc.row(rows[i]);
    let n = rows.len();
    let (assignment, centres) = clusters(enc, rows, k, rng)?;
    let mut counts = vec![0usize; k];
    for &c in &assignment {
        if c < k {
            counts[c] += 1;
        }
    }
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then(a.cmp(&b)));
    let mut taken = vec![false; n];
    let mut picked = Vec::with_capacity(k);
    for c in order {
        let centre = &centres[c * dim..(c + 1) * dim];
        let best = (0..n)
            .filter(|&i| !taken[i])
            .min_by(|&a, &b| {
                dist2(point(a), centre)
                    .total_cmp(&dist2(point(b), centre))
                    .then(a.cmp(&b))
            })
            .ok_or_else(|| PredictorError::internal("sampler", "ran out of candidates"))?;
        taken[best] = true;
        picked.push(rows[best]);
    }
    Ok(picked)
}

/// The paper code's default selection (`kmeancosine` in `main_trf.py`):
/// `k / 2` architectures by KMeans, one drawn at random from each cluster
/// (its `get_distinct_arch2vecs_kmeans`), the other `k - k / 2` by
/// [`cosine_spread`] over the candidates not yet drawn (the paper's code
/// draws both halves from all candidates and may repeat one).
pub fn kmeans_cosine(
    enc: &Encoding,
    rows: &[usize],
    k: usize,
    rng: &mut impl Rng,
) -> Result<Vec<usize>> {
    check(rows, k, enc)?;
    let half = k / 2;
    let mut picked = Vec::with_capacity(k);
    if half > 0 {
        let (assignment, _) = clusters(enc, rows, half, rng)?;
        for c in 0..half {
            let members: Vec<usize> = (0..rows.len()).filter(|&i| assignment[i] == c).collect();
            if members.is_empty() {
                return Err(PredictorError::internal("sampler", "an empty cluster"));
            }
            picked.push(rows[members[rng.random_range(0..members.len())]]);
        }
    }
    let rest: Vec<usize> = rows
        .iter()
        .copied()
        .filter(|r| !picked.contains(r))
        .collect();
    picked.extend(cosine_spread(enc, &rest, k - half, rng)?);
    Ok(picked)
}

/// KMeans (k-means++ seeding, Lloyd iterations, empty clusters re-seeded)
/// over the candidates: the cluster of each candidate and the centres.
fn clusters(
    enc: &Encoding,
    rows: &[usize],
    k: usize,
    rng: &mut impl Rng,
) -> Result<(Vec<usize>, Vec<f32>)> {
    let dim = enc.dim();
    let point = |i: usize| enc.row(rows[i]);
    let n = rows.len();
    let mut centres: Vec<f32> = Vec::with_capacity(k * dim);
    // k-means++: each next centre drawn with probability ~ squared distance
    // to the nearest centre so far; uniformly among unused points once every
    // point coincides with a centre (fewer distinct vectors than k).
    let mut is_centre = vec![false; n];
    let first = rng.random_range(0..n);
    is_centre[first] = true;
    centres.extend_from_slice(point(first));
    let mut d2: Vec<f32> = (0..n).map(|i| dist2(point(i), point(first))).collect();
    for _ in 1..k {
        let total: f64 = d2.iter().map(|&d| f64::from(d)).sum();
        let next = if total > 0.0 {
            let mut target = rng.random::<f64>() * total;
            let mut pick = None;
            for (i, &d) in d2.iter().enumerate() {
                if d > 0.0 {
                    pick = Some(i);
                    target -= f64::from(d);
                    if target <= 0.0 {
                        break;
                    }
                }
            }
            pick
        } else {
            let unused: Vec<usize> = (0..n).filter(|&i| !is_centre[i]).collect();
            (!unused.is_empty()).then(|| unused[rng.random_range(0..unused.len())])
        }
        .ok_or_else(|| PredictorError::internal("sampler", "k-means++ found no next centre"))?;
        is_centre[next] = true;
        centres.extend_from_slice(point(next));
        for (i, d) in d2.iter_mut().enumerate() {
            *d = d.min(dist2(point(i), point(next)));
        }
    }
    let nearest = |p: &[f32], centres: &[f32]| -> (usize, f32) {
        let mut best = (0, f32::INFINITY);
        for c in 0..k {
            let d = dist2(p, &centres[c * dim..(c + 1) * dim]);
            if d < best.1 {
                best = (c, d);
            }
        }
        best
    };
    let mut assignment = vec![usize::MAX; n];
    let mut distance = vec![0f32; n];
    for _ in 0..MAX_LLOYD_ITERATIONS {
        let mut changed = false;
        for i in 0..n {
            let (c, d) = nearest(point(i), &centres);
            if assignment[i] != c {
                assignment[i] = c;
                changed = true;
            }
            distance[i] = d;
        }
        if !changed {
            break;
        }
        let mut counts = vec![0usize; k];
        for &c in &assignment {
            counts[c] += 1;
        }
        // Re-seed empty clusters with the point farthest from its centre
        // (taken from a cluster that keeps at least one point).
        for c in 0..k {
            if counts[c] > 0 {
                continue;
            }
            let far = (0..n)
                .filter(|&i| counts[assignment[i]] > 1)
                .max_by(|&a, &b| distance[a].total_cmp(&distance[b]).then(b.cmp(&a)));
            if let Some(i) = far {
                counts[assignment[i]] -= 1;
                assignment[i] = c;
                counts[c] = 1;
                distance[i] = 0.0;
            }
        }
        let mut sums = vec![0f64; k * dim];
        for (i, &c) in assignment.iter().enumerate() {
            for (s, v) in sums[c * dim..(c + 1) * dim].iter_mut().zip(point(i)) {
                *s += f64::from(*v);
            }
        }
        for c in 0..k {
            if counts[c] > 0 {
                for j in 0..dim {
                    centres[c * dim + j] = (sums[c * dim + j] / counts[c] as f64) as f32;
                }
            }
        }
    }
    Ok((assignment, centres))
}

/// `order` split into k contiguous buckets as numpy's `array_split` does
/// (the first `len % k` buckets one longer), one seeded pick per bucket: the
/// paper's quantile-spread samplers (params, latency oracle).
pub fn bucket_spread(order: &[usize], k: usize, rng: &mut impl Rng) -> Result<Vec<usize>> {
    if k > order.len() {
        return Err(PredictorError::input(
            "sampler",
            format!("at most {} architectures", order.len()),
            k.to_string(),
        ));
    }
    let mut picked = Vec::with_capacity(k);
    let (base, extra) = (order.len() / k.max(1), order.len() % k.max(1));
    let mut start = 0;
    for b in 0..k {
        let len = base + usize::from(b < extra);
        picked.push(order[start + rng.random_range(0..len)]);
        start += len;
    }
    Ok(picked)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use nasflat_shared::SearchSpace;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn enc(dim: usize, values: Vec<f32>) -> Encoding {
        let columns = (0..dim).map(|c| format!("e{c}")).collect();
        Encoding::new("t", "1", SearchSpace::Nb201, columns, values).unwrap()
    }

    /// Three tight groups of 4 points around (10,0), (0,10), (-10,-10).
    fn clusters() -> Encoding {
        let mut v = Vec::new();
        for (cx, cy) in [(10.0, 0.0), (0.0, 10.0), (-10.0, -10.0)] {
            for (dx, dy) in [(0.1, 0.0), (-0.1, 0.0), (0.0, 0.1), (0.0, -0.1)] {
                v.push(cx + dx);
                v.push(cy + dy);
            }
        }
        enc(2, v)
    }

    #[test]
    fn cosine_is_deterministic_distinct_and_spread() {
        let e = clusters();
        let rows: Vec<usize> = (0..12).collect();
        let a = cosine(&e, &rows, 3, &mut StdRng::seed_from_u64(5)).unwrap();
        let b = cosine(&e, &rows, 3, &mut StdRng::seed_from_u64(5)).unwrap();
        assert_eq!(a, b);
        let mut groups: Vec<usize> = a.iter().map(|r| r / 4).collect();
        groups.sort_unstable();
        assert_eq!(groups, vec![0, 1, 2], "one per direction: {a:?}");
    }

    #[test]
    fn cosine_picks_the_least_similar_second() {
        // From (1,0) the orthogonal (0,1) beats (1,1) at 45 degrees, and
        // vice versa.
        let e = enc(2, vec![1.0, 0.0, 1.0, 1.0, 0.0, 1.0]);
        let mut checked = 0;
        for seed in 0..20 {
            let picked = cosine(&e, &[0, 1, 2], 2, &mut StdRng::seed_from_u64(seed)).unwrap();
            if picked[0] != 1 {
                assert_eq!(picked[1], 2 - picked[0], "{picked:?}");
                checked += 1;
            }
        }
        assert!(checked > 0);
    }

    #[test]
    fn cosine_spread_draws_from_outliers_to_typical() {
        // Nine vectors along (1,0) and one along (0,1): the outlier is the
        // whole first bucket when k = 10.
        let mut v = vec![0.0, 1.0];
        for i in 0..9 {
            v.push(1.0);
            v.push(0.01 * i as f32);
        }
        let e = enc(2, v);
        let rows: Vec<usize> = (0..10).collect();
        let a = cosine_spread(&e, &rows, 10, &mut StdRng::seed_from_u64(1)).unwrap();
        assert_eq!(a[0], 0);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, rows);
        let b = cosine_spread(&e, &rows, 3, &mut StdRng::seed_from_u64(8)).unwrap();
        assert_eq!(
            b,
            cosine_spread(&e, &rows, 3, &mut StdRng::seed_from_u64(8)).unwrap()
        );
    }

    #[test]
    fn kmeans_finds_one_per_cluster_deterministically() {
        let e = clusters();
        let rows: Vec<usize> = (0..12).collect();
        for seed in 0..5 {
            let a = kmeans(&e, &rows, 3, &mut StdRng::seed_from_u64(seed)).unwrap();
            let b = kmeans(&e, &rows, 3, &mut StdRng::seed_from_u64(seed)).unwrap();
            assert_eq!(a, b);
            let mut groups: Vec<usize> = a.iter().map(|r| r / 4).collect();
            groups.sort_unstable();
            assert_eq!(groups, vec![0, 1, 2], "seed {seed}: {a:?}");
        }
    }

    /// k = 6 on three groups: the KMeans half is one random member of each
    /// group (not always the same one), the cosine half fills the rest,
    /// all distinct.
    #[test]
    fn kmeans_cosine_takes_one_per_cluster_then_the_cosine_spread() {
        let e = clusters();
        let rows: Vec<usize> = (0..12).collect();
        let mut firsts = std::collections::BTreeSet::new();
        for seed in 0..10 {
            let a = kmeans_cosine(&e, &rows, 6, &mut StdRng::seed_from_u64(seed)).unwrap();
            assert_eq!(a.len(), 6);
            let mut groups: Vec<usize> = a[..3].iter().map(|r| r / 4).collect();
            groups.sort_unstable();
            assert_eq!(groups, vec![0, 1, 2], "seed {seed}: {a:?}");
            let mut unique = a.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), 6, "seed {seed}: {a:?}");
            firsts.extend(a[..3].iter().copied());
        }
        assert!(firsts.len() > 3, "members drawn at random: {firsts:?}");
        let odd = kmeans_cosine(&e, &rows, 5, &mut StdRng::seed_from_u64(2)).unwrap();
        assert_eq!(odd.len(), 5);
    }

    #[test]
    fn kmeans_with_duplicates_still_returns_distinct_rows() {
        // Only 2 distinct vectors but k = 5: the paper's NaN case.
        let e = enc(1, vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0]);
        let rows: Vec<usize> = (0..7).collect();
        let mut a = kmeans(&e, &rows, 5, &mut StdRng::seed_from_u64(1)).unwrap();
        a.sort_unstable();
        a.dedup();
        assert_eq!(a.len(), 5);
        let c = cosine(&e, &rows, 7, &mut StdRng::seed_from_u64(1)).unwrap();
        let mut c2 = c.clone();
        c2.sort_unstable();
        c2.dedup();
        assert_eq!(c2.len(), 7);
    }

    #[test]
    fn only_candidate_rows_are_picked() {
        let e = clusters();
        let rows = vec![1, 3, 5, 7, 9, 11];
        for seed in 0..4 {
            let mut rng = StdRng::seed_from_u64(seed);
            for r in kmeans(&e, &rows, 4, &mut rng)
                .unwrap()
                .into_iter()
                .chain(cosine(&e, &rows, 4, &mut rng).unwrap())
            {
                assert!(rows.contains(&r), "{r}");
            }
        }
    }

    #[test]
    fn more_than_the_candidates_is_an_error() {
        let e = clusters();
        let mut rng = StdRng::seed_from_u64(0);
        let err = kmeans(&e, &[0, 1], 3, &mut rng).unwrap_err().to_string();
        assert!(err.contains("at most 2 architectures, got 3"), "{err}");
        assert!(cosine(&e, &[0, 1], 3, &mut rng).is_err());
        assert!(bucket_spread(&[0, 1], 3, &mut rng).is_err());
        assert!(cosine(&e, &[99], 1, &mut rng).is_err());
    }

    #[test]
    fn bucket_spread_takes_one_per_array_split_bucket() {
        let order: Vec<usize> = (0..10).collect();
        let picked = bucket_spread(&order, 3, &mut StdRng::seed_from_u64(3)).unwrap();
        // array_split(10, 3) = [0..4], [4..7], [7..10].
        assert!(picked[0] < 4 && (4..7).contains(&picked[1]) && picked[2] >= 7);
    }

    #[test]
    fn kmeans_on_nb201_sized_input_is_fast() {
        let mut rng = StdRng::seed_from_u64(9);
        let values: Vec<f32> = (0..15_625 * 32).map(|_| rng.random::<f32>()).collect();
        let e = enc(32, values);
        let rows: Vec<usize> = (0..15_625).collect();
        let start = std::time::Instant::now();
        let picked = kmeans(&e, &rows, 20, &mut rng).unwrap();
        let elapsed = start.elapsed().as_secs_f64();
        assert_eq!(picked.len(), 20);
        assert!(elapsed < 3.0, "{elapsed:.2} s");
    }
}

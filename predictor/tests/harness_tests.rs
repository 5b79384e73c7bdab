//! The evaluation harness against an independent re-computation: for the
//! trivial baselines (FLOPs, nearest source, ridge on sources) every
//! per-device outcome is recomputed here from the raw tables and the
//! outcome's own sample rows, with this file's own least squares, ranks and
//! leave-one-out loop, and must agree with the harness to 1e-9.
#![allow(clippy::unwrap_used)]

mod common;

use common::nb201;
use nasflat_predictor::baselines::Method;
use nasflat_predictor::blend::BlendRule;
use nasflat_predictor::dataset::SpaceData;
use nasflat_predictor::eval::{BlendSpec, DeviceOutcome, EvalOptions, evaluate};
use nasflat_predictor::model::{PredictorConfig, TrainConfig};
use nasflat_predictor::sampler::Sampler;
use nasflat_shared::SearchSpace;
use nasflat_shared::data::paper_tasks;

const TASK: &str = "ND";

fn options() -> EvalOptions {
    EvalOptions {
        tasks: vec![TASK.to_string()],
        task_set: paper_tasks().unwrap(),
        trials: 2,
        samples: 20,
        seed: 7,
        sampler: Sampler::Random,
        methods: vec![Method::Flops, Method::Nearest, Method::Ridge],
        predictor: PredictorConfig::default(),
        train: TrainConfig::for_space(SearchSpace::Nb201),
        help_mlp_epochs: 1,
        blend: vec![BlendSpec::Rule(BlendRule::Fixed(0.0))],
        quiet: true,
        jobs: 1,
    }
}

/// Average ranks (ties share their mean rank).
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut out = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        for &k in &idx[i..=j] {
            out[k] = (i + j) as f64 / 2.0;
        }
        i = j + 1;
    }
    out
}

/// Pearson correlation of the ranks.
fn rank_correlation(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

/// Solves `a x = b` by Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
            .unwrap();
        a.swap(c, p);
        b.swap(c, p);
        let (pivot, below) = a.split_at_mut(c + 1);
        let pivot = &pivot[c];
        for (offset, row) in below.iter_mut().enumerate() {
            let f = row[c] / pivot[c];
            for (v, p) in row[c..].iter_mut().zip(&pivot[c..]) {
                *v -= f * p;
            }
            b[c + 1 + offset] -= f * b[c];
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|k| a[r][k] * x[k]).sum();
        x[r] = (b[r] - s) / a[r][r];
    }
    x
}

/// Least squares of `y` on `[1, x]` with `lambda` on every column but the
/// intercept; returns `[b0, w..]`.
fn penalised_fit(x: &[Vec<f64>], y: &[f64], lambda: f64) -> Vec<f64> {
    let d = x[0].len() + 1;
    let mut a = vec![vec![0.0; d]; d];
    let mut b = vec![0.0; d];
    for (row, &t) in x.iter().zip(y) {
        let z: Vec<f64> = std::iter::once(1.0).chain(row.iter().copied()).collect();
        for i in 0..d {
            b[i] += z[i] * t;
            for j in 0..d {
                a[i][j] += z[i] * z[j];
            }
        }
    }
    for (i, row) in a.iter_mut().enumerate().skip(1) {
        row[i] += lambda;
    }
    solve(a, b)
}

fn apply(w: &[f64], row: &[f64]) -> f64 {
    w[0] + row.iter().zip(&w[1..]).map(|(a, b)| a * b).sum::<f64>()
}

/// ms = exp(a + b * score), (a, b) by least squares in log space.
fn log_linear(
    score: impl Fn(usize) -> f64,
    samples: &[usize],
    ms: &[f64],
    rows: &[usize],
) -> Vec<f64> {
    let x: Vec<Vec<f64>> = samples.iter().map(|&r| vec![score(r)]).collect();
    let y: Vec<f64> = ms.iter().map(|v| v.ln()).collect();
    let w = penalised_fit(&x, &y, 0.0);
    rows.iter().map(|&r| apply(&w, &[score(r)]).exp()).collect()
}

/// Ridge on standardised source log latencies, the penalty picked from
/// 10^(-4..4 step 0.5) by refitting without each sample in turn.
fn ridge(
    x_of: impl Fn(usize) -> Vec<f64>,
    samples: &[usize],
    ms: &[f64],
    rows: &[usize],
) -> Vec<f64> {
    let raw: Vec<Vec<f64>> = samples.iter().map(|&r| x_of(r)).collect();
    let (n, d) = (raw.len(), raw[0].len());
    let mean: Vec<f64> = (0..d)
        .map(|c| raw.iter().map(|r| r[c]).sum::<f64>() / n as f64)
        .collect();
    let scale: Vec<f64> = (0..d)
        .map(|c| {
            let v = raw.iter().map(|r| (r[c] - mean[c]).powi(2)).sum::<f64>() / n as f64;
            if v > 1e-18 { v.sqrt() } else { 1.0 }
        })
        .collect();
    let std =
        |row: Vec<f64>| -> Vec<f64> { (0..d).map(|c| (row[c] - mean[c]) / scale[c]).collect() };
    let z: Vec<Vec<f64>> = raw.into_iter().map(std).collect();
    let y: Vec<f64> = ms.iter().map(|v| v.ln()).collect();
    let mut best = (f64::INFINITY, 0.0);
    for step in -8..=8 {
        let lambda = 10f64.powf(f64::from(step) * 0.5);
        let loo: f64 = (0..n)
            .map(|i| {
                let keep: Vec<usize> = (0..n).filter(|&j| j != i).collect();
                let xs: Vec<Vec<f64>> = keep.iter().map(|&j| z[j].clone()).collect();
                let ys: Vec<f64> = keep.iter().map(|&j| y[j]).collect();
                (y[i] - apply(&penalised_fit(&xs, &ys, lambda), &z[i])).powi(2)
            })
            .sum();
        if loo < best.0 {
            best = (loo, lambda);
        }
    }
    let w = penalised_fit(&z, &y, best.1);
    rows.iter()
        .map(|&r| apply(&w, &std(x_of(r))).exp())
        .collect()
}

/// What the harness should have reported for one outcome of `method`.
fn recompute(
    data: &SpaceData,
    sources: &[usize],
    method: &str,
    o: &DeviceOutcome,
) -> (f64, f64, f64) {
    let column = data.device_index(&o.device).unwrap();
    let ms: Vec<f64> = o
        .samples
        .iter()
        .map(|&r| data.latency(column, r).unwrap())
        .collect();
    let rest: Vec<usize> = data
        .valid_rows(column)
        .into_iter()
        .filter(|r| !o.samples.contains(r))
        .collect();
    let truth: Vec<f64> = rest
        .iter()
        .map(|&r| data.latency(column, r).unwrap())
        .collect();
    let logs: Vec<Vec<f64>> = sources
        .iter()
        .map(|&s| data.log_latency_filled(s))
        .collect();
    let predicted = match method {
        "flops" => log_linear(|r| data.flops[r].ln(), &o.samples, &ms, &rest),
        "nearest" => {
            let rho = |c: &Vec<f64>| {
                let xs: Vec<f64> = o.samples.iter().map(|&r| c[r]).collect();
                rank_correlation(&xs, &ms)
            };
            let best =
                (0..logs.len()).fold(0, |b, i| if rho(&logs[i]) > rho(&logs[b]) { i } else { b });
            log_linear(|r| logs[best][r], &o.samples, &ms, &rest)
        }
        "ridge" => ridge(
            |r| logs.iter().map(|c| c[r]).collect(),
            &o.samples,
            &ms,
            &rest,
        ),
        other => panic!("no independent computation of {other}"),
    };
    let within = predicted
        .iter()
        .zip(&truth)
        .filter(|(p, t)| ((*p - *t) / *t).abs() <= 0.1)
        .count();
    let mape = predicted
        .iter()
        .zip(&truth)
        .map(|(p, t)| ((p - t) / t).abs())
        .sum::<f64>()
        / truth.len() as f64;
    (
        rank_correlation(&predicted, &truth),
        within as f64 / truth.len() as f64,
        mape,
    )
}

#[test]
fn harness_reproduces_trivial_baselines() {
    let data = nb201();
    let opts = options();
    let task = opts.task_set.task(SearchSpace::Nb201, TASK).unwrap();
    let sources: Vec<usize> = task
        .train
        .iter()
        .map(|s| data.device_index(s).unwrap())
        .collect();
    let runs = evaluate(data, &opts).unwrap();
    assert_eq!(runs.len(), 3);
    for run in &runs {
        assert_eq!(
            run.outcomes.len(),
            opts.trials * task.test.len(),
            "{}",
            run.method
        );
        for o in &run.outcomes {
            assert_eq!(o.samples.len(), opts.samples);
            let (rho, within, mape) = recompute(data, &sources, &run.method, o);
            let what = format!("{} trial {} on {}", run.method, o.trial, o.device);
            assert!(
                (o.spearman - rho).abs() < 1e-9,
                "{what}: spearman {} vs {rho}",
                o.spearman
            );
            assert!(
                (o.within10 - within).abs() < 1e-9,
                "{what}: within10 {} vs {within}",
                o.within10
            );
            assert!(
                (o.mape - mape).abs() < 1e-9,
                "{what}: mape {} vs {mape}",
                o.mape
            );
            assert_eq!(
                o.evaluated,
                data.valid_rows(data.device_index(&o.device).unwrap()).len() - opts.samples
            );
        }
    }
    // The samples are the same for every method of a trial and target (the
    // harness's promise that methods are compared on the same samples).
    for o in &runs[0].outcomes {
        for other in &runs[1..] {
            let twin = other
                .outcomes
                .iter()
                .find(|p| p.trial == o.trial && p.device == o.device)
                .unwrap();
            assert_eq!(twin.samples, o.samples);
        }
    }
}

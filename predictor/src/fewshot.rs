//! The few-shot prediction path shared by the evaluation harness and the
//! host service: a transferred predictor's scores, calibrated to ms on the k
//! target samples, blended (log space) with the linear stack (additive cost
//! model + source-latency ridge). Keeping it in one place means the service serves exactly what
//! `eval` measures.

use crate::baselines::{self, SourceMatrix};
use crate::dataset::SpaceData;
use crate::error::Result;
use crate::train::Transferred;

/// Default weight of the linear stack in the served and evaluated blend.
/// Chosen on the 12 paper tasks (3 trials, seeds 0-2, docs/results.md): 0.85
/// beat the bar on 11 tasks, 0.7 on 10, 0.5 on 8, the GNN alone on none; the
/// GNN still adds on GPU targets (N3, N4) over the stack alone.
pub const DEFAULT_BLEND: f64 = 0.85;

/// Predicted ms of `rows` on the target of `transferred`, whose measured
/// samples are `archs` with latencies `ms`. `blend` is the weight of the
/// linear stack (additive cost model + source regression, see
/// [`baselines::Stack`]); 0 = the paper's predictor alone.
pub fn predict_transferred(
    transferred: &Transferred,
    data: &SpaceData,
    sources: &SourceMatrix,
    archs: &[usize],
    ms: &[f64],
    rows: &[usize],
    blend: f64,
) -> Result<Vec<f64>> {
    let mut out = predict_transferred_blends(
        transferred,
        data,
        sources,
        archs,
        ms,
        rows,
        std::slice::from_ref(&blend),
    )?;
    Ok(out.pop().unwrap_or_default())
}

/// [`predict_transferred`] at several blend weights, sharing the GNN's
/// forward pass and the stack's fit (one entry per weight, in order).
pub fn predict_transferred_blends(
    transferred: &Transferred,
    data: &SpaceData,
    sources: &SourceMatrix,
    archs: &[usize],
    ms: &[f64],
    rows: &[usize],
    blends: &[f64],
) -> Result<Vec<Vec<f64>>> {
    let scores = transferred
        .model
        .predict(&data.features, rows, transferred.row)?;
    let gnn = transferred.calibration.apply_all(&scores);
    let linear = if blends.iter().any(|&w| w > 0.0) {
        Some(baselines::stacked_predict(data, sources, archs, ms, rows)?)
    } else {
        None
    };
    Ok(blends
        .iter()
        .map(|&w| match &linear {
            Some(l) if w > 0.0 => blend_log(&gnn, l, w),
            _ => gnn.clone(),
        })
        .collect())
}

/// Geometric blend `gnn^(1-w) * linear^w` (a weighted mean of log-ms).
pub fn blend_log(gnn: &[f64], linear: &[f64], w: f64) -> Vec<f64> {
    gnn.iter()
        .zip(linear)
        .map(|(g, l)| ((1.0 - w) * g.max(1e-12).ln() + w * l.max(1e-12).ln()).exp())
        .collect()
}

//! The few-shot prediction path shared by the evaluation harness and the
//! host service: a transferred predictor's scores, calibrated to ms on the k
//! target samples, blended (log space) with the ridge-on-sources-and-cost
//! baseline. Keeping it in one place means the service serves exactly what
//! `eval` measures.

use crate::baselines::{self, SourceMatrix};
use crate::dataset::SpaceData;
use crate::error::Result;
use crate::eval::blend_log;
use crate::train::Transferred;

/// Predicted ms of `rows` on the target of `transferred`, whose measured
/// samples are `archs` with latencies `ms`. `blend` is the weight of the
/// ridgecost prediction (0 = the paper's predictor alone).
pub fn predict_transferred(
    transferred: &Transferred,
    data: &SpaceData,
    sources: &SourceMatrix,
    archs: &[usize],
    ms: &[f64],
    rows: &[usize],
    blend: f64,
) -> Result<Vec<f64>> {
    let scores = transferred
        .model
        .predict(&data.features, rows, transferred.row)?;
    let gnn = transferred.calibration.apply_all(&scores);
    if blend > 0.0 {
        let linear = baselines::ridge_cost_predict(data, sources, archs, ms, rows)?;
        Ok(blend_log(&gnn, &linear, blend))
    } else {
        Ok(gnn)
    }
}

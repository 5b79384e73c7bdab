//! The latency models a search can rank with: the few-shot pipeline, the
//! trivial FLOPs/params fit (the baseline that shows how much the protocol
//! separates predictors), and a device's true latencies (the rule's best
//! case and the oracle).

use crate::dataset::SpaceData;
use crate::error::{PredictorError, Result};
use crate::fewshot::Fitted;
use crate::samples::Samples;

/// Predicted latencies and the model's own out-of-sample error.
pub trait LatencyModel {
    /// Predicted ms of `rows`.
    fn predict(&self, rows: &[usize]) -> Result<Vec<f64>>;

    /// Out-of-sample residuals `ln(measured) - ln(predicted)` on the k
    /// target samples (empty when the model is exact).
    fn loo_log_residuals(&self) -> Result<Vec<f64>>;

    /// The k measured latencies the model was fitted on (empty when unknown
    /// or exact): the search reads the device's reporting step from them.
    fn sample_ms(&self) -> Vec<f64> {
        Vec::new()
    }
}

impl LatencyModel for Fitted<'_> {
    fn predict(&self, rows: &[usize]) -> Result<Vec<f64>> {
        Fitted::predict(self, rows)
    }

    fn loo_log_residuals(&self) -> Result<Vec<f64>> {
        Fitted::loo_log_residuals(self)
    }

    fn sample_ms(&self) -> Vec<f64> {
        self.samples().latencies()
    }
}

/// The pipeline at a blend weight other than the one it was fitted for
/// (one transfer serves the GNN alone and the served blend).
pub struct Blended<'f, 'a> {
    /// The fitted pipeline.
    pub fitted: &'f Fitted<'a>,
    /// Weight of the linear stack; 0 = the GNN alone.
    pub blend: f64,
}

impl LatencyModel for Blended<'_, '_> {
    fn predict(&self, rows: &[usize]) -> Result<Vec<f64>> {
        let mut out = self
            .fitted
            .predict_blends(rows, std::slice::from_ref(&self.blend))?;
        Ok(out.pop().unwrap_or_default())
    }

    fn loo_log_residuals(&self) -> Result<Vec<f64>> {
        self.fitted.loo_log_residuals_at(self.blend)
    }

    fn sample_ms(&self) -> Vec<f64> {
        self.fitted.samples().latencies()
    }
}

/// [`Blended`] owning its fit: what a refit of a probed search returns
/// ([`super::probe`]).
pub struct AtBlend<'a> {
    /// The fitted pipeline.
    pub fitted: Fitted<'a>,
    /// Weight of the linear stack; 0 = the GNN alone.
    pub blend: f64,
}

impl AtBlend<'_> {
    fn view(&self) -> Blended<'_, '_> {
        Blended {
            fitted: &self.fitted,
            blend: self.blend,
        }
    }
}

impl LatencyModel for AtBlend<'_> {
    fn predict(&self, rows: &[usize]) -> Result<Vec<f64>> {
        self.view().predict(rows)
    }

    fn loo_log_residuals(&self) -> Result<Vec<f64>> {
        self.view().loo_log_residuals()
    }

    fn sample_ms(&self) -> Vec<f64> {
        self.view().sample_ms()
    }
}

/// A device's measured latencies: an exact model (no residuals).
pub struct TableLatency<'a> {
    data: &'a SpaceData,
    column: usize,
}

impl<'a> TableLatency<'a> {
    /// The column of `device` in `data`'s latency table.
    pub fn new(data: &'a SpaceData, device: &str) -> Result<Self> {
        Ok(TableLatency {
            data,
            column: data.device_index(device)?,
        })
    }
}

impl LatencyModel for TableLatency<'_> {
    fn predict(&self, rows: &[usize]) -> Result<Vec<f64>> {
        // Unmeasured cells can never be shown to fit a budget.
        Ok(rows
            .iter()
            .map(|&r| self.data.latency(self.column, r).unwrap_or(f64::INFINITY))
            .collect())
    }

    fn loo_log_residuals(&self) -> Result<Vec<f64>> {
        Ok(Vec::new())
    }
}

/// Least squares of latency (ms) on FLOPs and params over the k samples.
pub struct TrivialFit<'a> {
    data: &'a SpaceData,
    coef: [f64; 3],
    floor: f64,
    residuals: Vec<f64>,
    sample_ms: Vec<f64>,
}

/// Predictions below this share of the fastest sample are raised to it: a
/// straight line can dip below zero far from the samples.
const TRIVIAL_FLOOR_SHARE: f64 = 0.5;

impl<'a> TrivialFit<'a> {
    /// Fits on `samples` and computes its leave-one-out residuals.
    pub fn fit(data: &'a SpaceData, samples: &Samples) -> Result<Self> {
        let points: Vec<([f64; 3], f64)> = samples
            .iter()
            .map(|s| (trivial_row(data, s.row), s.ms))
            .collect();
        let coef = least_squares(&points).ok_or_else(|| {
            PredictorError::input(
                "trivial fit samples",
                "FLOPs and params that are not collinear",
                "collinear FLOPs and params",
            )
        })?;
        let fastest = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let floor = TRIVIAL_FLOOR_SHARE * fastest;
        let residuals = (0..points.len())
            .filter_map(|i| {
                let rest: Vec<([f64; 3], f64)> = points
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(_, p)| *p)
                    .collect();
                let c = least_squares(&rest)?;
                Some(points[i].1.ln() - dot(&c, &points[i].0).max(floor).ln())
            })
            .collect();
        Ok(TrivialFit {
            data,
            coef,
            floor,
            residuals,
            sample_ms: samples.latencies(),
        })
    }
}

impl LatencyModel for TrivialFit<'_> {
    fn predict(&self, rows: &[usize]) -> Result<Vec<f64>> {
        Ok(rows
            .iter()
            .map(|&r| dot(&self.coef, &trivial_row(self.data, r)).max(self.floor))
            .collect())
    }

    fn loo_log_residuals(&self) -> Result<Vec<f64>> {
        Ok(self.residuals.clone())
    }

    fn sample_ms(&self) -> Vec<f64> {
        self.sample_ms.clone()
    }
}

/// `[1, FLOPs, params]` of a row.
fn trivial_row(data: &SpaceData, row: usize) -> [f64; 3] {
    [1.0, data.flops[row], data.params[row]]
}

fn dot(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Ordinary least squares by the 3x3 normal equations (Cramer's rule);
/// `None` when they are singular.
fn least_squares(points: &[([f64; 3], f64)]) -> Option<[f64; 3]> {
    let mut m = [[0.0; 3]; 3];
    let mut v = [0.0; 3];
    for (x, y) in points {
        for i in 0..3 {
            v[i] += x[i] * y;
            for j in 0..3 {
                m[i][j] += x[i] * x[j];
            }
        }
    }
    let det = det3(&m);
    if det.abs() <= 1e-12 * m[0][0].max(1.0) * m[1][1].max(1.0) * m[2][2].max(1.0) {
        return None;
    }
    let mut out = [0.0; 3];
    for (k, o) in out.iter_mut().enumerate() {
        let mut mk = m;
        for i in 0..3 {
            mk[i][k] = v[i];
        }
        *o = det3(&mk) / det;
    }
    Some(out)
}

fn det3(m: &[[f64; 3]; 3]) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_squares_recovers_an_exact_plane() {
        let points: Vec<([f64; 3], f64)> = (0..10)
            .map(|i| {
                let (a, b) = (f64::from(i), f64::from(i * i % 7));
                ([1.0, a, b], 2.0 + 0.5 * a - 0.25 * b)
            })
            .collect();
        let c = least_squares(&points).unwrap();
        assert!(
            (c[0] - 2.0).abs() < 1e-9 && (c[1] - 0.5).abs() < 1e-9 && (c[2] + 0.25).abs() < 1e-9
        );
        let collinear: Vec<([f64; 3], f64)> = (0..5)
            .map(|i| ([1.0, f64::from(i), 2.0 * f64::from(i)], 1.0))
            .collect();
        assert!(least_squares(&collinear).is_none());
    }
}

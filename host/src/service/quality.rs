//! How well a served predictor ranks the device's own measurements, and a
//! memo of it: the fleet page shows every listed device's held-out
//! Spearman, and computing it means loading all of the device's
//! measurements and its whole prediction vector. Stored measurements are
//! never changed, only added, so (predictor version, measurement count)
//! names the inputs exactly and a memoised value is reused until either
//! moves.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use nasflat_shared::SearchSpace;
use nasflat_shared::stats::spearman;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::fit_choice::FitChoice;
use super::store::measurements::MeasurementRow;
use super::store::transfers::PredictionRow;
use super::transfer::{SampleSet, samples_of};

/// Quality of a served predictor, measured on the device's own samples.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct Quality {
    /// Spearman on the samples it was fitted on.
    pub fit_spearman: Option<f64>,
    /// Samples it was fitted on.
    pub fit_samples: usize,
    /// Spearman on valid measurements it was not fitted on.
    pub heldout_spearman: Option<f64>,
    /// Held-out measurements (distinct archs).
    pub heldout_samples: usize,
    /// Mean absolute percentage error on the held-out measurements.
    pub heldout_mape: Option<f64>,
    /// What the fit chose (blend weight, the stack's rules and weight),
    /// from the device's samples and the source devices only.
    pub choice: Option<FitChoice>,
}

/// Quality of `pred` against a device's measurements in `space`.
pub fn quality(pred: &PredictionRow, measured: &[MeasurementRow], space: SearchSpace) -> Quality {
    let samples = samples_of(measured, space, SampleSet::All);
    let fit: HashSet<usize> = pred.train_rows.iter().copied().collect();
    let (mut fp, mut fm, mut hp, mut hm) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for s in samples.iter() {
        let (r, m) = (&s.row, &s.ms);
        let Some(&p) = pred.latencies.get(*r) else {
            continue;
        };
        if fit.contains(r) {
            fp.push(p);
            fm.push(*m);
        } else {
            hp.push(p);
            hm.push(*m);
        }
    }
    let rho = |a: &[f64], b: &[f64]| (a.len() >= 3).then(|| spearman(a, b));
    Quality {
        fit_spearman: rho(&fp, &fm),
        fit_samples: fp.len(),
        heldout_spearman: rho(&hp, &hm),
        heldout_samples: hp.len(),
        heldout_mape: (!hp.is_empty()).then(|| {
            hp.iter()
                .zip(&hm)
                .map(|(p, m)| ((p - m) / m).abs())
                .sum::<f64>()
                / hp.len() as f64
        }),
        choice: pred.choice,
    }
}

/// What a memoised [`Quality`] was computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Inputs {
    version: String,
    measurements: i64,
}

/// [`Quality`] per (device, space), kept while the predictor version and
/// the device's measurement count stay the same (see the module doc).
#[derive(Debug, Default)]
pub struct QualityMemo {
    map: Mutex<HashMap<(String, SearchSpace), (Inputs, Quality)>>,
}

impl QualityMemo {
    /// The memoised quality of `device_id`'s predictor `version` in `space`
    /// on its `measurements` stored measurements, if computed before.
    pub fn get(
        &self,
        device_id: &str,
        space: SearchSpace,
        version: &str,
        measurements: i64,
    ) -> Option<Quality> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let (inputs, q) = map.get(&(device_id.to_string(), space))?;
        (inputs.version == version && inputs.measurements == measurements).then(|| q.clone())
    }

    /// Computes the quality of `pred` on `measured` (all of the device's
    /// measurements) and keeps it.
    pub fn compute(
        &self,
        device_id: &str,
        space: SearchSpace,
        pred: &PredictionRow,
        measured: &[MeasurementRow],
    ) -> Quality {
        let q = quality(pred, measured, space);
        let inputs = Inputs {
            version: pred.version.clone(),
            measurements: super::store::int(measured.len()),
        };
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((device_id.to_string(), space), (inputs, q.clone()));
        q
    }
}

//! One search space's data as the predictor and the harness consume it:
//! latency table, per-arch features, FLOPs/params proxies and HELP's
//! reference architectures.

use std::path::Path;

use nasflat_shared::{SearchSpace, data, data::NumericTable};
use rand::Rng;
use rand::seq::IndexedRandom;

use crate::encoding::{EncodingKind, EncodingSet};
use crate::error::{PredictorError, Result};
use crate::features::ArchFeatures;

/// Latencies and features of every architecture of a space.
#[derive(Debug, Clone)]
pub struct SpaceData {
    /// The space.
    pub space: SearchSpace,
    /// Latency (ms) per device column and architecture row.
    pub latency: NumericTable,
    /// Graph encodings, analytic costs and supplementary encodings.
    pub features: ArchFeatures,
    /// FLOPs proxy of the trivial baseline (NB201 `cifar10_flops`, FBNet `flops`).
    pub flops: Vec<f64>,
    /// Parameter-count proxy (NB201 `cifar10_params`, FBNet `params`).
    pub params: Vec<f64>,
    /// HELP's 10 reference architectures (its hardware embedding).
    pub help_reference: Vec<usize>,
    /// Architecture encodings for the samplers (ZCP, and the cached ones found).
    pub encodings: EncodingSet,
}

impl SpaceData {
    /// Loads the vendored tables of a space and builds all features; cached
    /// encodings are the shipped ones unless `$NASFLAT_ENCODINGS_DIR` names
    /// a folder of retrained files.
    pub fn load(space: SearchSpace) -> Result<Self> {
        Self::load_with(space, None)
    }

    /// [`SpaceData::load`] with cached encodings read from `encodings_dir`
    /// (retrained files) when given.
    pub fn load_with(space: SearchSpace, encodings_dir: Option<&Path>) -> Result<Self> {
        let latency = data::latency_table(space)?;
        let zcp = data::zcp_table(space)?;
        let (flops_col, params_col) = match space {
            SearchSpace::Nb201 => ("cifar10_flops", "cifar10_params"),
            SearchSpace::Fbnet => ("flops", "params"),
        };
        let column = |name: &str| -> Result<Vec<f64>> {
            Ok(zcp.column(name)?.iter().map(|v| v.unwrap_or(0.0)).collect())
        };
        let flops = column(flops_col)?;
        let params = column(params_col)?;
        let mut features = ArchFeatures::build(space, &zcp)?;
        if features.len != latency.rows() {
            return Err(PredictorError::input(
                "data",
                format!("{space}: one ZCP row per latency row ({})", latency.rows()),
                format!("{} ZCP rows", features.len),
            ));
        }
        let encodings = EncodingSet::load(space, encodings_dir)?;
        for kind in encodings.available() {
            let enc = encodings.get(kind)?;
            if enc.rows() != latency.rows() {
                return Err(PredictorError::input(
                    "encoding",
                    format!(
                        "{space}: `{kind}` with one row per latency row ({})",
                        latency.rows()
                    ),
                    format!("{} rows", enc.rows()),
                ));
            }
            if kind != EncodingKind::Zcp {
                features.attach_encoding(kind, enc);
            }
        }
        Ok(SpaceData {
            space,
            latency,
            features,
            flops,
            params,
            help_reference: data::help_reference_archs(space)?,
            encodings,
        })
    }

    /// Number of architectures.
    pub fn rows(&self) -> usize {
        self.latency.rows()
    }

    /// Column of a device, or [`PredictorError::UnknownDevice`].
    pub fn device_index(&self, name: &str) -> Result<usize> {
        self.latency
            .position(name)
            .ok_or_else(|| PredictorError::UnknownDevice {
                space: self.space.to_string(),
                device: name.to_string(),
            })
    }

    /// Rows where a device has a (positive) measurement.
    pub fn valid_rows(&self, device: usize) -> Vec<usize> {
        self.latency
            .column_at(device)
            .iter()
            .enumerate()
            .filter_map(|(r, v)| v.filter(|x| *x > 0.0).map(|_| r))
            .collect()
    }

    /// One latency (ms).
    pub fn latency(&self, device: usize, row: usize) -> Option<f64> {
        self.latency.get(device, row)
    }

    /// Log-latency column with missing cells filled by the column minimum
    /// (missing rows are the disconnected NB201 cells, the cheapest ones).
    pub fn log_latency_filled(&self, device: usize) -> Vec<f64> {
        let column = self.latency.column_at(device);
        let min = column
            .iter()
            .flatten()
            .copied()
            .filter(|v| *v > 0.0)
            .fold(f64::INFINITY, f64::min);
        let fill = if min.is_finite() { min } else { 1.0 };
        column
            .iter()
            .map(|v| v.filter(|x| *x > 0.0).unwrap_or(fill).ln())
            .collect()
    }
}

/// Draws `k` distinct rows uniformly, or errors when fewer exist.
pub fn sample_rows(
    device: &str,
    rows: &[usize],
    k: usize,
    rng: &mut impl Rng,
) -> Result<Vec<usize>> {
    if k > rows.len() {
        return Err(PredictorError::NotEnoughSamples {
            device: device.to_string(),
            requested: k,
            available: rows.len(),
        });
    }
    Ok(rows.choose_multiple(rng, k).copied().collect())
}

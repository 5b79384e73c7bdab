//! Checkpoints: weights as safetensors (candle's `VarMap::save`/`load`) plus
//! a JSON sidecar with everything needed to rebuild the network.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::PredictorConfig;
use super::network::Predictor;
use crate::calibrate::LogLinearCalibration;
use crate::error::{PredictorError, Result};
use nasflat_shared::SearchSpace;

/// Bumped whenever the variable layout changes.
pub const FORMAT_VERSION: u32 = 1;

/// The JSON sidecar of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// [`FORMAT_VERSION`] at save time.
    pub format_version: u32,
    /// Search space.
    pub space: SearchSpace,
    /// Device per hardware-embedding row.
    pub devices: Vec<String>,
    /// Network shape.
    pub config: PredictorConfig,
    /// Width of the supplementary encoding.
    pub supplementary_dim: usize,
    /// Seed of the initial weights (reproducibility record).
    pub seed: u64,
    /// Score -> ms maps of transferred devices, by device name.
    #[serde(default)]
    pub calibration: Vec<(String, LogLinearCalibration)>,
}

fn paths(prefix: &Path) -> (PathBuf, PathBuf) {
    (
        prefix.with_extension("safetensors"),
        prefix.with_extension("json"),
    )
}

/// Writes `<prefix>.safetensors` and `<prefix>.json`.
pub fn save_checkpoint(
    predictor: &Predictor,
    calibration: &[(String, LogLinearCalibration)],
    prefix: &Path,
) -> Result<()> {
    let (weights, meta_path) = paths(prefix);
    predictor.varmap().save(&weights)?;
    let meta = CheckpointMeta {
        format_version: FORMAT_VERSION,
        space: predictor.space(),
        devices: predictor.devices().to_vec(),
        config: predictor.config().clone(),
        supplementary_dim: predictor.supplementary_dim(),
        seed: predictor.seed(),
        calibration: calibration.to_vec(),
    };
    let text = serde_json::to_string_pretty(&meta).map_err(|source| PredictorError::Json {
        what: meta_path.display().to_string(),
        source,
    })?;
    std::fs::write(&meta_path, text).map_err(|source| PredictorError::Io {
        path: meta_path.display().to_string(),
        source,
    })
}

/// Reads a checkpoint written by [`save_checkpoint`].
pub fn load_checkpoint(prefix: &Path) -> Result<(Predictor, CheckpointMeta)> {
    let (weights, meta_path) = paths(prefix);
    let text = std::fs::read_to_string(&meta_path).map_err(|source| PredictorError::Io {
        path: meta_path.display().to_string(),
        source,
    })?;
    let meta: CheckpointMeta =
        serde_json::from_str(&text).map_err(|source| PredictorError::Json {
            what: meta_path.display().to_string(),
            source,
        })?;
    if meta.format_version != FORMAT_VERSION {
        return Err(PredictorError::Checkpoint {
            path: meta_path.display().to_string(),
            reason: format!(
                "format version {} (this build reads {FORMAT_VERSION})",
                meta.format_version
            ),
        });
    }
    let mut predictor = Predictor::new(
        &meta.config,
        meta.space,
        &meta.devices,
        meta.supplementary_dim,
        meta.seed,
    )?;
    predictor.load_weights(&weights)?;
    Ok((predictor, meta))
}

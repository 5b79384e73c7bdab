//! One complete measurement: load, time, and record provenance.

use std::path::PathBuf;

use nasflat_onnx::{FbnetConfig, Nb201Config, WeightInit, encode, fbnet_model, nb201_model};
use nasflat_shared::Arch;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::limits::BenchLimits;
use crate::model::{InputSpec, LoadedModel};
use crate::provenance::{DynamicState, MachineInfo, Provenance, RunSettings};
use crate::timing::{Timing, time_model};

/// What to measure.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// An ONNX file, any model.
    File(PathBuf),
    /// ONNX bytes received from the host (user models).
    Bytes { name: String, bytes: Vec<u8> },
    /// One of our search-space architectures, built in-process.
    Arch {
        arch: Arch,
        batch: usize,
        resolution: Option<usize>,
    },
}

/// Options of a measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasureOptions {
    /// Warm-up and timing bounds.
    pub limits: BenchLimits,
    /// tract threads.
    pub threads: usize,
    /// Pin the measuring thread to this core.
    pub pin_core: Option<usize>,
    /// Input overrides (file models).
    pub inputs: Vec<InputSpec>,
    /// Seed of the random inputs and of generated weights.
    pub seed: u64,
}

impl Default for MeasureOptions {
    fn default() -> Self {
        MeasureOptions {
            limits: BenchLimits::default(),
            threads: 1,
            pin_core: None,
            inputs: Vec::new(),
            seed: 0,
        }
    }
}

/// A measured sample: the label is `timing.summary.median_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// File name or architecture string.
    pub model: String,
    /// The architecture, when the model is one of ours.
    pub arch: Option<Arch>,
    /// Parse + analysis time, ms.
    pub load_ms: f64,
    /// Optimisation time, ms.
    pub optimize_ms: f64,
    /// Whether stale value_info had to be ignored to load the model.
    pub ignored_value_info: bool,
    /// Timing results.
    pub timing: Timing,
    /// Machine, settings and state before/after.
    pub provenance: Provenance,
    /// Whether the sample can be used as a label.
    pub valid: bool,
    /// Why not, when not.
    pub invalid_reasons: Vec<String>,
}

impl Sample {
    /// The training label: median run time, ms.
    pub fn label_ms(&self) -> f64 {
        self.timing.summary.median_ms
    }
}

/// Loads the model of a source.
pub fn load(source: &ModelSource, options: &MeasureOptions) -> Result<(LoadedModel, Option<Arch>)> {
    match source {
        ModelSource::File(path) => Ok((LoadedModel::from_path(path, &options.inputs)?, None)),
        ModelSource::Bytes { name, bytes } => {
            Ok((LoadedModel::from_bytes(name, bytes, &options.inputs)?, None))
        }
        ModelSource::Arch {
            arch,
            batch,
            resolution,
        } => {
            let weights = WeightInit::Random { seed: options.seed };
            let proto = match arch {
                Arch::Nb201(a) => nb201_model(
                    a,
                    &Nb201Config {
                        batch: *batch,
                        resolution: *resolution,
                        weights,
                        ..Nb201Config::default()
                    },
                )?,
                Arch::Fbnet(a) => fbnet_model(
                    a,
                    &FbnetConfig {
                        batch: *batch,
                        resolution: *resolution,
                        weights,
                        ..FbnetConfig::default()
                    },
                )?,
            };
            let name = arch.to_string();
            Ok((
                LoadedModel::from_bytes(&name, &encode(&proto), &[])?,
                Some(*arch),
            ))
        }
    }
}

/// Measures one model: load, pin and set threads, time, read provenance
/// before and after, and flag the sample invalid when the limits were not
/// met or the machine's state changed during the run.
pub fn measure(source: &ModelSource, options: &MeasureOptions) -> Result<Sample> {
    crate::threads::configure(options.threads)?;
    let pinned_core = options.pin_core.filter(|&c| crate::threads::pin_current(c));
    let (model, arch) = load(source, options)?;
    let machine = MachineInfo::read();
    let before = DynamicState::read();
    let timing = time_model(&model, &options.limits, options.seed)?;
    let after = DynamicState::read();

    let mut invalid_reasons = Vec::new();
    if !timing.min_runs_met {
        invalid_reasons.push(format!(
            "only {} runs before the {:?} cap (min {})",
            timing.summary.runs, options.limits.max_time, options.limits.min_runs
        ));
    }
    if !timing.min_time_met {
        invalid_reasons.push(format!(
            "timed for less than the minimum {:?}",
            options.limits.min_time
        ));
    }
    if let Some(why) = before.instability(&after) {
        invalid_reasons.push(format!("environment changed: {why}"));
    }
    if options.pin_core.is_some() && pinned_core.is_none() {
        invalid_reasons.push("requested CPU pinning failed".into());
    }
    let batch_size = model.inputs.first().and_then(|i| i.shape.first().copied());
    Ok(Sample {
        model: model.name.clone(),
        arch,
        load_ms: model.load_ms,
        optimize_ms: model.optimize_ms,
        ignored_value_info: model.ignored_value_info,
        timing,
        provenance: Provenance {
            machine,
            settings: RunSettings {
                threads: options.threads,
                pinned_core,
                batch_size,
            },
            before,
            after,
        },
        valid: invalid_reasons.is_empty(),
        invalid_reasons,
    })
}

//! One complete measurement: load, time, and record provenance.

use std::path::PathBuf;

use nasflat_onnx::{FbnetConfig, Nb201Config, WeightInit, encode, fbnet_model, nb201_model};
use nasflat_shared::Arch;
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::error::{AgentError, Result};
use crate::label::LabelClock;
use crate::limits::BenchLimits;
use crate::model::{InputSpec, LoadedModel};
use crate::provenance::{DynamicState, MachineInfo, Provenance, RunSettings};
use crate::runtime::{Optimization, RuntimeChoice, RuntimeInfo, RuntimeKind, prepare};
use crate::timing::{Attempt, FirstRun, Timing, time_with_retries};
use crate::tract_engine::TractEngine;

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
    /// The runtime that times the model.
    pub runtime: RuntimeChoice,
    /// Inference threads (tract's pool, onnxruntime's intra-op pool).
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
            runtime: RuntimeChoice::Tract,
            threads: 1,
            pin_core: None,
            inputs: Vec::new(),
            seed: 0,
        }
    }
}

/// A measured sample: the label is `timing.estimate` ([`crate::label`]).
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
    /// Timing results (of the last attempt).
    pub timing: Timing,
    /// Earlier timings that were repeated (did not settle, or disturbed in
    /// a way the label clock cannot correct), oldest first.
    pub repeated: Vec<Attempt>,
    /// Machine, settings and state before/after.
    pub provenance: Provenance,
    /// Whether the sample can be used as a label.
    pub valid: bool,
    /// Why not, when not.
    pub invalid_reasons: Vec<String>,
}

impl Sample {
    /// The training label, ms: the median over rounds of each round's low
    /// quantile, on the thread's CPU clock for one inference thread
    /// ([`crate::label`]).
    pub fn label_ms(&self) -> f64 {
        self.timing.estimate.label_ms()
    }

    /// Whether the label settled.
    pub fn settled(&self) -> bool {
        self.timing.estimate.settled()
    }
}

/// A source as ONNX bytes, ready for any runtime.
#[derive(Debug, Clone)]
pub struct SourceBytes {
    /// Display name (file path, architecture string).
    pub name: String,
    /// The ONNX model.
    pub bytes: Vec<u8>,
    /// The architecture, for generated models.
    pub arch: Option<Arch>,
    /// Input overrides that apply (none for generated models).
    pub overrides: Vec<InputSpec>,
}

/// The ONNX bytes of a source, its display name, its architecture and the
/// input overrides that apply to it.
pub fn source_bytes(source: &ModelSource, options: &MeasureOptions) -> Result<SourceBytes> {
    match source {
        ModelSource::File(path) => {
            let bytes = std::fs::read(path).map_err(|source| AgentError::Io {
                path: path.display().to_string(),
                source,
            })?;
            Ok(SourceBytes {
                name: path.display().to_string(),
                bytes,
                arch: None,
                overrides: options.inputs.clone(),
            })
        }
        ModelSource::Bytes { name, bytes } => Ok(SourceBytes {
            name: name.clone(),
            bytes: bytes.clone(),
            arch: None,
            overrides: options.inputs.clone(),
        }),
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
            Ok(SourceBytes {
                name: arch.to_string(),
                bytes: encode(&proto),
                arch: Some(*arch),
                overrides: Vec::new(),
            })
        }
    }
}

/// Loads the model of a source into tract.
pub fn load(source: &ModelSource, options: &MeasureOptions) -> Result<(LoadedModel, Option<Arch>)> {
    let s = source_bytes(source, options)?;
    Ok((
        LoadedModel::from_bytes(&s.name, &s.bytes, &s.overrides)?,
        s.arch,
    ))
}

/// What loading a model on a runtime gave: its timing and first run, and
/// the facts the sample records.
struct Timed {
    name: String,
    arch: Option<Arch>,
    load_ms: f64,
    optimize_ms: f64,
    ignored_value_info: bool,
    /// Whether tract left out its axis pass (recorded in the provenance).
    skipped_axis_pass: bool,
    batch_size: Option<usize>,
    timing: Timing,
    first: FirstRun,
    repeated: Vec<Attempt>,
}

fn time_on_tract(source: &ModelSource, options: &MeasureOptions) -> Result<Timed> {
    let (model, arch) = load(source, options)?;
    let mut engine = TractEngine::new(&model)?;
    let clock = LabelClock::for_threads(options.threads);
    let (timing, first, repeated) =
        time_with_retries(&mut engine, &options.limits, clock, options.seed)?;
    Ok(Timed {
        name: model.name.clone(),
        arch,
        load_ms: model.load_ms,
        optimize_ms: model.optimize_ms,
        ignored_value_info: model.ignored_value_info,
        skipped_axis_pass: model.skipped_axis_pass,
        batch_size: engine
            .model_inputs()
            .first()
            .and_then(|i| i.shape.first().copied()),
        timing,
        first,
        repeated,
    })
}

#[cfg(with_ort)]
fn time_on_ort(source: &ModelSource, options: &MeasureOptions) -> Result<Timed> {
    let start = std::time::Instant::now();
    let SourceBytes {
        name,
        bytes,
        arch,
        overrides,
    } = source_bytes(source, options)?;
    let (proto, inputs) = crate::model::parse(&name, &bytes, &overrides)?;
    let outputs = crate::model::output_names(&proto);
    let load_ms = start.elapsed().as_secs_f64() * 1e3;
    let library = match &options.runtime {
        RuntimeChoice::Ort {
            library: Some(library),
        } => library.clone(),
        _ => return Err(AgentError::OrtLibraryNotGiven),
    };
    let mut model = crate::ort_engine::OrtModel::load(
        &library,
        &name,
        &bytes,
        inputs,
        outputs,
        options.threads,
    )?;
    let batch_size = model
        .model_inputs()
        .first()
        .and_then(|i| i.shape.first().copied());
    let clock = LabelClock::for_threads(options.threads);
    let (timing, first, repeated) =
        time_with_retries(&mut model, &options.limits, clock, options.seed)?;
    Ok(Timed {
        name,
        arch,
        load_ms,
        optimize_ms: model.session_ms,
        ignored_value_info: false,
        skipped_axis_pass: false,
        batch_size,
        timing,
        first,
        repeated,
    })
}

#[cfg(not(with_ort))]
fn time_on_ort(_source: &ModelSource, _options: &MeasureOptions) -> Result<Timed> {
    Err(AgentError::OrtUnavailable {
        target: env!("NASFLAT_TARGET").to_string(),
    })
}

/// Measures one model: prepare the runtime, pin, load, time, read
/// provenance before and after, and flag the sample invalid when the limits
/// were not met or the machine's state changed during the run.
pub fn measure(source: &ModelSource, options: &MeasureOptions) -> Result<Sample> {
    measure_with_first_run(source, options).map(|(sample, _)| sample)
}

/// [`measure`], also returning the first inference's inputs and outputs
/// (`--dump-output`).
pub fn measure_with_first_run(
    source: &ModelSource,
    options: &MeasureOptions,
) -> Result<(Sample, FirstRun)> {
    let mut runtime = prepare(&options.runtime, options.threads)?;
    let pinned_core = options.pin_core.filter(|&c| crate::threads::pin_current(c));
    let machine = MachineInfo::read();
    let before = DynamicState::read();
    let timed = match runtime.kind {
        RuntimeKind::Tract => time_on_tract(source, options)?,
        RuntimeKind::Ort => time_on_ort(source, options)?,
    };
    let after = DynamicState::read();
    if timed.skipped_axis_pass {
        runtime.optimization = Optimization::TractWithoutAxisPass;
    }
    let invalid_reasons = invalid_reasons(&timed.timing, options, &before, &after, pinned_core);
    let sample = Sample {
        model: timed.name,
        arch: timed.arch,
        load_ms: timed.load_ms,
        optimize_ms: timed.optimize_ms,
        ignored_value_info: timed.ignored_value_info,
        timing: timed.timing,
        repeated: timed.repeated,
        provenance: Provenance {
            machine,
            settings: RunSettings {
                threads: options.threads,
                pinned_core,
                batch_size: timed.batch_size,
            },
            runtime: Some(runtime),
            before,
            after,
        },
        valid: invalid_reasons.is_empty(),
        invalid_reasons,
    };
    Ok((sample, timed.first))
}

fn invalid_reasons(
    timing: &Timing,
    options: &MeasureOptions,
    before: &DynamicState,
    after: &DynamicState,
    pinned_core: Option<usize>,
) -> Vec<String> {
    let mut reasons = Vec::new();
    if !timing.min_runs_met {
        reasons.push(format!(
            "only {} runs before the {:?} cap (min {})",
            timing.summary.runs, options.limits.max_time, options.limits.min_runs
        ));
    }
    if !timing.min_time_met {
        reasons.push(format!(
            "timed for less than the minimum {:?}",
            options.limits.min_time
        ));
    }
    if !timing.estimate.settled() {
        let v = &timing.estimate.verdict;
        reasons.push(format!(
            "the label did not settle after {} attempts (last: {} rounds, drift {:.1}%, {:.0}% of rounds within {:.0}%)",
            options.limits.attempts,
            timing.estimate.rounds.len(),
            v.drift * 100.0,
            v.agreement * 100.0,
            timing.estimate.policy.band * 100.0
        ));
    }
    if let Some(why) = before.instability(after) {
        reasons.push(format!("environment changed: {why}"));
    }
    if options.pin_core.is_some() && pinned_core.is_none() {
        reasons.push("requested CPU pinning failed".into());
    }
    reasons
}

/// The runtime provenance a sample of `options` will carry, without
/// measuring (`run` mode registers with it).
pub fn runtime_info(options: &MeasureOptions) -> Result<RuntimeInfo> {
    prepare(&options.runtime, options.threads)
}

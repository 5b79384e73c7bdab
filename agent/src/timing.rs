//! The timing loop: warm-up, then timed runs on fresh random inputs.

use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::error::{AgentError, Result};
use crate::limits::BenchLimits;
use crate::model::LoadedModel;
use crate::stats::Summary;

/// The result of timing one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Every timed run, ms, in order.
    pub times_ms: Vec<f64>,
    /// Statistics of `times_ms`.
    pub summary: Summary,
    /// Warm-up runs done.
    pub warmup_runs: usize,
    /// The very first inference, ms (cold caches, lazy allocations).
    pub first_inference_ms: f64,
    /// Output shapes of the first run.
    pub output_shapes: Vec<Vec<usize>>,
    /// Whether the minimum number of runs was reached before the time cap.
    pub min_runs_met: bool,
    /// Whether the minimum timed duration was reached.
    pub min_time_met: bool,
}

/// Times a loaded model. Inputs are drawn fresh for every run from a seeded
/// generator (outside the timed region), so input-dependent shortcuts cannot
/// make later runs look faster, and two runs with one seed see the same data.
pub fn time_model(model: &LoadedModel, limits: &BenchLimits, seed: u64) -> Result<Timing> {
    limits.validate().map_err(AgentError::Limits)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let run_err = |e: tract_onnx::prelude::TractError| AgentError::Run {
        name: model.name.clone(),
        reason: format!("{e:#}"),
    };
    let mut state = model.plan.spawn().map_err(run_err)?;

    let inputs = model.random_inputs(&mut rng)?;
    let start = Instant::now();
    let outputs = state.run(inputs).map_err(run_err)?;
    let first_inference_ms = start.elapsed().as_secs_f64() * 1e3;
    let output_shapes = outputs.iter().map(|t| t.shape().to_vec()).collect();
    drop(outputs);

    let warm_start = Instant::now();
    let mut warmup_runs = 0;
    while !limits.warm(warmup_runs, warm_start.elapsed()) {
        let inputs = model.random_inputs(&mut rng)?;
        state.run(inputs).map_err(run_err)?;
        warmup_runs += 1;
    }

    let mut times_ms = Vec::new();
    let mut timed = Duration::ZERO;
    while !limits.done(times_ms.len(), timed) {
        let inputs = model.random_inputs(&mut rng)?;
        let start = Instant::now();
        let outputs = state.run(inputs).map_err(run_err)?;
        let elapsed = start.elapsed();
        drop(outputs);
        timed += elapsed;
        times_ms.push(elapsed.as_secs_f64() * 1e3);
        if !limits.cooldown.is_zero() {
            std::thread::sleep(limits.cooldown);
        }
    }
    let summary = Summary::of(&times_ms).ok_or_else(|| AgentError::Run {
        name: model.name.clone(),
        reason: "no timed run completed".into(),
    })?;
    Ok(Timing {
        min_runs_met: times_ms.len() >= limits.min_runs,
        min_time_met: timed >= limits.min_time,
        times_ms,
        summary,
        warmup_runs,
        first_inference_ms,
        output_shapes,
    })
}

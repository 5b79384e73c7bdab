//! The timing loop: warm-up, then timed runs on fresh random inputs.

use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::dump::{TensorDump, tensor_dump};
use crate::engine::Engine;
use crate::error::{AgentError, Result};
use crate::limits::BenchLimits;
use crate::model::random_inputs;
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

/// The first inference's inputs and outputs (for `--dump-output`).
#[derive(Debug, Clone, PartialEq)]
pub struct FirstRun {
    /// Its inputs.
    pub inputs: Vec<TensorDump>,
    /// Its outputs.
    pub outputs: Vec<TensorDump>,
}

/// Times a model on any runtime. Inputs are drawn fresh for every run from
/// a seeded generator and converted outside the timed region, so
/// input-dependent shortcuts cannot make later runs look faster, and two
/// runs (or two runtimes) with one seed see the same data.
pub fn time_model<E: Engine>(
    engine: &mut E,
    limits: &BenchLimits,
    seed: u64,
) -> Result<(Timing, FirstRun)> {
    limits.validate().map_err(AgentError::Limits)?;
    let mut rng = StdRng::seed_from_u64(seed);

    let drawn = random_inputs(engine.model_inputs(), &mut rng)?;
    let inputs = engine
        .model_inputs()
        .iter()
        .zip(&drawn)
        .map(|(input, t)| tensor_dump(&input.name, t))
        .collect::<Result<Vec<_>>>()?;
    let prepared = engine.prepare(drawn)?;
    let (first, outputs) = engine.run_with_outputs(prepared)?;
    let output_shapes = outputs.iter().map(|o| o.shape.clone()).collect();

    let warm_start = std::time::Instant::now();
    let mut warmup_runs = 0;
    while !limits.warm(warmup_runs, warm_start.elapsed()) {
        let prepared = engine.prepare(random_inputs(engine.model_inputs(), &mut rng)?)?;
        engine.timed_run(prepared)?;
        warmup_runs += 1;
    }

    let mut times_ms = Vec::new();
    let mut timed = Duration::ZERO;
    while !limits.done(times_ms.len(), timed) {
        let prepared = engine.prepare(random_inputs(engine.model_inputs(), &mut rng)?)?;
        let elapsed = engine.timed_run(prepared)?;
        timed += elapsed;
        times_ms.push(elapsed.as_secs_f64() * 1e3);
        if !limits.cooldown.is_zero() {
            std::thread::sleep(limits.cooldown);
        }
    }
    let summary = Summary::of(&times_ms).ok_or_else(|| AgentError::Run {
        name: engine.name().to_string(),
        reason: "no timed run completed".into(),
    })?;
    let timing = Timing {
        min_runs_met: times_ms.len() >= limits.min_runs,
        min_time_met: timed >= limits.min_time,
        times_ms,
        summary,
        warmup_runs,
        first_inference_ms: first.as_secs_f64() * 1e3,
        output_shapes,
    };
    Ok((timing, FirstRun { inputs, outputs }))
}

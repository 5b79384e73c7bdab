//! The timing loop: warm-up, then timed runs on fresh random inputs, in
//! rounds, until the label settles (`crate::label`); repeated when the
//! machine was disturbed in a way the label cannot correct.

use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::cpu_clock::thread_cpu_time;
use crate::disturbance::{Disturbance, DisturbanceKind, Probe};
use crate::dump::{TensorDump, tensor_dump};
use crate::engine::Engine;
use crate::error::{AgentError, Result};
use crate::label::{Estimate, LabelClock, Round};
use crate::limits::BenchLimits;
use crate::model::random_inputs;
use crate::stats::Summary;

/// The result of timing one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Every timed run's wall time, ms, in order.
    pub times_ms: Vec<f64>,
    /// Every timed run's CPU time of the measuring thread, ms, in order
    /// (the same runs as `times_ms`).
    pub cpu_times_ms: Vec<f64>,
    /// Statistics of `times_ms` (wall clock).
    pub summary: Summary,
    /// The label, its rounds and whether it settled.
    pub estimate: Estimate,
    /// What was seen of the machine while timing.
    pub disturbance: Disturbance,
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

impl Timing {
    /// Whether this timing should be repeated: its label did not settle, or
    /// the machine was disturbed in a way its clock cannot correct.
    pub fn needs_another_attempt(&self) -> bool {
        !self.estimate.settled() || !self.disturbance.corrected_by(self.estimate.clock)
    }
}

/// A timing that was repeated, in short.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// Its label, ms.
    pub label_ms: f64,
    /// Whether its label settled.
    pub settled: bool,
    /// What disturbed it.
    pub disturbances: Vec<DisturbanceKind>,
    /// Its timed runs.
    pub runs: usize,
}

impl Attempt {
    fn of(timing: &Timing) -> Attempt {
        Attempt {
            label_ms: timing.estimate.label_ms(),
            settled: timing.estimate.settled(),
            disturbances: timing.disturbance.kinds.clone(),
            runs: timing.times_ms.len(),
        }
    }
}

/// The first inference's inputs and outputs (for `--dump-output`).
#[derive(Debug, Clone, PartialEq)]
pub struct FirstRun {
    /// Its inputs.
    pub inputs: Vec<TensorDump>,
    /// Its outputs.
    pub outputs: Vec<TensorDump>,
}

/// Times a model up to `limits.attempts` times, until a timing's label
/// settled and nothing its clock cannot correct disturbed it. Returns the
/// last timing, the first inference of the first one, and the timings that
/// were repeated. Every attempt uses the same seed (the same inputs).
pub fn time_with_retries<E: Engine>(
    engine: &mut E,
    limits: &BenchLimits,
    clock: LabelClock,
    seed: u64,
) -> Result<(Timing, FirstRun, Vec<Attempt>)> {
    let (mut timing, first) = time_model(engine, limits, clock, seed)?;
    let mut repeated = Vec::new();
    while timing.needs_another_attempt() && repeated.len() + 1 < limits.attempts {
        repeated.push(Attempt::of(&timing));
        timing = time_model(engine, limits, clock, seed)?.0;
    }
    Ok((timing, first, repeated))
}

/// The timed runs so far.
#[derive(Default)]
struct RunLog {
    wall_ms: Vec<f64>,
    cpu_ms: Vec<f64>,
    rounds: Vec<Round>,
    wall: Duration,
    cpu: Duration,
}

impl RunLog {
    /// The label-clock times of the runs since `first`.
    fn label_times(&self, clock: LabelClock, first: usize) -> &[f64] {
        match clock {
            LabelClock::ThreadCpu => &self.cpu_ms[first..],
            LabelClock::Wall => &self.wall_ms[first..],
        }
    }
}

/// Times a model once. Inputs are drawn fresh for every run from a seeded
/// generator and converted outside the timed region, so input-dependent
/// shortcuts cannot make later runs look faster, and two runs (or two
/// runtimes) with one seed see the same data.
pub fn time_model<E: Engine>(
    engine: &mut E,
    limits: &BenchLimits,
    clock: LabelClock,
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

    let before = Probe::take();
    let log = timed_rounds(engine, limits, clock, &mut rng)?;
    let after = Probe::take();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = (clock == LabelClock::ThreadCpu).then_some(log.cpu);
    let disturbance = Disturbance::between(&before, &after, cores, log.wall, cpu);

    let no_run = || AgentError::Run {
        name: engine.name().to_string(),
        reason: "no timed run completed".into(),
    };
    let summary = Summary::of(&log.wall_ms).ok_or_else(no_run)?;
    let stats: Vec<f64> = log.rounds.iter().map(|r| r.stat_ms).collect();
    let policy = limits.settle.fitted_to(limits.max_time);
    let estimate = Estimate {
        clock,
        policy,
        verdict: policy.judge(&stats),
        rounds: log.rounds,
    };
    let timing = Timing {
        min_runs_met: log.wall_ms.len() >= limits.min_runs,
        min_time_met: log.wall >= limits.min_time,
        times_ms: log.wall_ms,
        cpu_times_ms: log.cpu_ms,
        summary,
        estimate,
        disturbance,
        warmup_runs,
        first_inference_ms: first.as_secs_f64() * 1e3,
        output_shapes,
    };
    Ok((timing, FirstRun { inputs, outputs }))
}

/// Runs rounds until a cap, or until both minimums are met and the label
/// has settled.
fn timed_rounds<E: Engine>(
    engine: &mut E,
    limits: &BenchLimits,
    clock: LabelClock,
    rng: &mut StdRng,
) -> Result<RunLog> {
    let policy = &limits.settle.fitted_to(limits.max_time);
    let mut log = RunLog::default();
    loop {
        let first = log.wall_ms.len();
        let round_start = log.wall;
        while !policy.round_done(log.wall_ms.len() - first, log.wall - round_start)
            && !limits.capped(log.wall_ms.len(), log.wall)
        {
            let prepared = engine.prepare(random_inputs(engine.model_inputs(), rng)?)?;
            let cpu_start = thread_cpu_time();
            let elapsed = engine.timed_run(prepared)?;
            let cpu = thread_cpu_time().saturating_sub(cpu_start);
            log.wall += elapsed;
            log.cpu += cpu;
            log.wall_ms.push(elapsed.as_secs_f64() * 1e3);
            log.cpu_ms.push(cpu.as_secs_f64() * 1e3);
            if !limits.cooldown.is_zero() {
                std::thread::sleep(limits.cooldown);
            }
        }
        if let Some(stat_ms) = policy.round_statistic(log.label_times(clock, first)) {
            log.rounds.push(Round {
                runs: log.wall_ms.len() - first,
                stat_ms,
            });
        }
        let runs = log.wall_ms.len();
        if limits.capped(runs, log.wall) {
            return Ok(log);
        }
        if limits.enough(runs, log.wall) {
            let stats: Vec<f64> = log.rounds.iter().map(|r| r.stat_ms).collect();
            if policy.judge(&stats).settled {
                return Ok(log);
            }
        }
    }
}

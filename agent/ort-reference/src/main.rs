//! `nasflat-ort-reference`: times one ONNX model through onnxruntime's C API
//! with the loop of the agent's benchmark (warm-up runs, then runs until both
//! `--min-runs` and `--min-ms` are reached or `--max-ms` passes, a fresh
//! uniform(-1, 1) input drawn outside the timed region before each run), and
//! prints one JSON line with every run's wall and thread-CPU time.
//!
//! It exists to check the agent's `--runtime ort` against the very library it
//! opens: Python's onnxruntime links its own, separately compiled copy
//! (docs/agent-bench.md, "The agent's onnxruntime against the library's C
//! API").

mod capi;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

/// Time an ONNX model through onnxruntime's C API (benchmark reference).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// onnxruntime shared library (libonnxruntime.so.1.N, API >= 22).
    #[arg(long)]
    ort_lib: PathBuf,
    /// ONNX model file (float32 inputs of fixed shape).
    #[arg(long)]
    model: PathBuf,
    /// Intra-op threads (the agent's `--threads`).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[arg(long, default_value_t = 5)]
    warmup_runs: usize,
    #[arg(long, default_value_t = 20)]
    min_runs: usize,
    #[arg(long, default_value_t = 1000)]
    min_ms: u64,
    #[arg(long, default_value_t = 10_000)]
    max_ms: u64,
    #[arg(long, default_value_t = 100_000)]
    max_runs: usize,
    /// Seed of the input values.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write the first run's inputs and outputs here, in the agent's
    /// `--dump-output` format (`.ci/ort_compare.py` checks either).
    #[arg(long)]
    dump_output: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let bytes = std::fs::read(&args.model)
        .with_context(|| format!("cannot read model {}", args.model.display()))?;
    let runtime = capi::Runtime::open(&args.ort_lib)?;
    let mut session = capi::Session::new(&runtime, &bytes, args.threads)
        .with_context(|| format!("onnxruntime cannot load {}", args.model.display()))?;
    let mut inputs: Vec<Vec<f32>> = session.inputs.iter().map(|i| vec![0.0; i.len()]).collect();
    let mut rng = Uniform(args.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    rng.fill(&mut inputs);
    let (_, _, outputs) = session.run(&mut inputs, true)?;
    if let Some(path) = &args.dump_output {
        write_dump(path, &args, &session, &inputs, &outputs)?;
    }
    for _ in 1..args.warmup_runs {
        rng.fill(&mut inputs);
        session.run(&mut inputs, false)?;
    }
    let (wall, cpu) = timed_runs(&mut session, &mut inputs, &mut rng, &args)?;
    let ms = |d: &[Duration]| {
        d.iter()
            .map(|t| t.as_secs_f64() * 1e3)
            .collect::<Vec<f64>>()
    };
    let (wall_ms, cpu_ms) = (ms(&wall), ms(&cpu));
    let report = serde_json::json!({
        "library": args.ort_lib.display().to_string(),
        "version": runtime.version,
        "model": args.model.display().to_string(),
        "threads": args.threads,
        "inputs": session.inputs.iter().map(|i| serde_json::json!({"name": i.name, "shape": i.shape})).collect::<Vec<_>>(),
        "outputs": session.output_names().iter().zip(&outputs).map(|(n, o)| serde_json::json!({"name": n, "shape": o.shape})).collect::<Vec<_>>(),
        "runs": wall_ms.len(),
        "median_ms": median(&wall_ms),
        "min_ms": wall_ms.iter().copied().fold(f64::INFINITY, f64::min),
        "cpu_median_ms": median(&cpu_ms),
        "times_ms": wall_ms,
        "cpu_times_ms": cpu_ms,
    });
    println!("{report}");
    Ok(())
}

/// The first run as the agent's `--dump-output` writes it.
fn write_dump(
    path: &std::path::Path,
    args: &Args,
    session: &capi::Session<'_>,
    inputs: &[Vec<f32>],
    outputs: &[capi::Output],
) -> Result<()> {
    let tensor = |name: &str, shape: &[i64], values: &[f32]| serde_json::json!({"name": name, "dtype": "float", "shape": shape, "values": values});
    let dump = serde_json::json!({
        "model": args.model.display().to_string(),
        "runtime": "ort-c-api",
        "inputs": session.inputs.iter().zip(inputs).map(|(i, v)| tensor(&i.name, &i.shape, v)).collect::<Vec<_>>(),
        "outputs": session.output_names().iter().zip(outputs).map(|(n, o)| tensor(n, &o.shape, &o.values)).collect::<Vec<_>>(),
    });
    std::fs::write(path, dump.to_string())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The timed runs, stopping as the agent's loop does.
fn timed_runs(
    session: &mut capi::Session<'_>,
    inputs: &mut [Vec<f32>],
    rng: &mut Uniform,
    args: &Args,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    let mut timed = Duration::ZERO;
    let (min, max) = (
        Duration::from_millis(args.min_ms),
        Duration::from_millis(args.max_ms),
    );
    while timed < max
        && wall.len() < args.max_runs
        && !(wall.len() >= args.min_runs && timed >= min)
    {
        rng.fill(inputs);
        let (w, c, _) = session.run(inputs, false)?;
        timed += w;
        wall.push(w);
        cpu.push(c);
    }
    Ok((wall, cpu))
}

fn median(xs: &[f64]) -> f64 {
    let mut s = xs.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// xorshift64* mapped to uniform(-1, 1): input values only need to be fresh
/// per run (so no run reuses a cached result), not of any quality.
struct Uniform(u64);

impl Uniform {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40; // 24 bits
        (bits as f32 / (1u64 << 23) as f32) - 1.0
    }

    fn fill(&mut self, buffers: &mut [Vec<f32>]) {
        buffers.iter_mut().flatten().for_each(|x| *x = self.next());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn inputs_are_fresh_and_within_minus_one_to_one() {
        let mut rng = Uniform(12345);
        let mut a = vec![vec![0.0f32; 1000]];
        rng.fill(&mut a);
        let mut b = a.clone();
        rng.fill(&mut b);
        assert!(a[0].iter().all(|x| (-1.0..1.0).contains(x)));
        assert_ne!(a, b, "a refill must give new values");
        let mean = a[0].iter().sum::<f32>() / 1000.0;
        let negative = a[0].iter().filter(|&&x| x < 0.0).count();
        assert!(
            mean.abs() < 0.1 && (400..600).contains(&negative),
            "mean {mean}, {negative} negative"
        );
    }
}

//! Checks that tract's default optimisation (`into_optimized`, then
//! `into_runnable`) accepts every NB201 model and lists the cells it
//! rejects (6 of 15,625 with tract 0.23.9; the agent retries those without
//! tract's axis pass, docs/agent-bench.md, "Cells tract's axis pass
//! rejects").
//!
//! ```text
//! cargo run --release -p nasflat-onnx --example tract_check_nb201 [-- THREADS [STEP]]
//! ```
//! STEP = 1 checks all 15,625 cells; STEP = k checks every k-th index.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use nasflat_onnx::{Nb201Config, nb201_model};
use nasflat_shared::Nb201Arch;
use tract_onnx::prelude::*;

fn analyse(arch: &Nb201Arch) -> anyhow::Result<()> {
    let proto = nb201_model(arch, &Nb201Config::default())?;
    let model = tract_onnx::onnx()
        .model_for_proto_model(&proto)?
        .with_input_fact(0, f32::fact([1, 3, 32, 32]).into())?;
    model.into_typed()?.into_optimized()?.into_runnable()?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().map_or(Ok(1), |n| n.parse())?;
    let step: usize = args.next().map_or(Ok(1), |n| n.parse())?;
    let archs: Vec<_> = Nb201Arch::all().iter().step_by(step).collect();
    let next = AtomicUsize::new(0);
    let failed = Mutex::new(Vec::new());
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while let Some(arch) = archs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if let Err(e) = analyse(arch) {
                        let line = format!("{} {arch} {}", arch.index(), e.root_cause());
                        if let Ok(mut f) = failed.lock() {
                            f.push(line);
                        }
                    }
                }
            });
        }
    });
    let failed = failed
        .into_inner()
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    for line in &failed {
        println!("{line}");
    }
    println!(
        "{} of {} NB201 cells rejected by tract ({:.1} s)",
        failed.len(),
        archs.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

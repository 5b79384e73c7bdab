//! Generates (builds and encodes, in memory) all 15,625 NB201 models with
//! random weights and prints the total time: the cost of regenerating the
//! whole benchmark on a device instead of shipping ~25 GB of files.
//!
//! ```text
//! cargo run --release -p nasflat-onnx --example generate_all_nb201 [-- THREADS]
//! ```

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use nasflat_onnx::{Nb201Config, WeightInit, encode, nb201_model};
use nasflat_shared::Nb201Arch;

fn main() -> anyhow::Result<()> {
    let threads = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 1,
    };
    let archs = Nb201Arch::all();
    let next = AtomicUsize::new(0);
    let bytes = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(arch) = archs.get(i) else {
                            return Ok(());
                        };
                        let config = Nb201Config {
                            weights: WeightInit::Random { seed: i as u64 },
                            ..Nb201Config::default()
                        };
                        let len = encode(&nb201_model(arch, &config)?).len();
                        bytes.fetch_add(len as u64, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
        }
        Ok(())
    })?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "generated {} NB201 models ({:.1} GB encoded) in {secs:.1} s on {threads} thread(s): {:.2} ms/model",
        archs.len(),
        bytes.load(Ordering::Relaxed) as f64 / 1e9,
        1e3 * secs * threads as f64 / archs.len() as f64
    );
    Ok(())
}

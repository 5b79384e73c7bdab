//! Times the GNN's prediction of every architecture of a space with a
//! freshly initialised predictor (speed does not depend on the weights):
//! `Predictor::predict` (memoised over shared node states, passes side by
//! side) against the batched training forward in chunks of 256 graphs
//! (what `predict` did before), in one run so the ratio is comparable.
//!
//! `RAYON_NUM_THREADS=1 cargo run --release -p nasflat-predictor --example predict_all -- nb201`
//! (`nasflat-host` itself always runs with `RAYON_NUM_THREADS=1`).

use std::time::Instant;

use anyhow::Result;
use nasflat_predictor::dataset::SpaceData;
use nasflat_predictor::model::{GraphBatch, Predictor, PredictorConfig};
use nasflat_shared::SearchSpace;

fn main() -> Result<()> {
    let space: SearchSpace = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "nb201".into())
        .parse()?;
    let data = SpaceData::load(space)?;
    let config = PredictorConfig::default();
    let devices = vec!["a".to_string(), "b".to_string()];
    let dim = data.features.supplementary_dim(config.supplementary);
    let model = Predictor::new(&config, space, &devices, dim, 0)?;
    let rows: Vec<usize> = (0..data.rows()).collect();
    let mut fast = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        fast = model.predict(&data.features, &rows, 1)?;
        println!(
            "{space}: predict, {} archs: {:.3} s",
            fast.len(),
            t.elapsed().as_secs_f64()
        );
    }
    let t = Instant::now();
    let mut slow = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(256) {
        let batch = GraphBatch::build(&data.features, &config, chunk, 1)?;
        slow.extend(model.forward(&batch)?.to_vec1::<f32>()?);
    }
    let seconds = t.elapsed().as_secs_f64();
    let worst = fast
        .iter()
        .zip(&slow)
        .map(|(a, &b)| (a - f64::from(b)).abs())
        .fold(0.0, f64::max);
    println!(
        "{space}: batched forward, {} archs: {seconds:.3} s (largest difference {worst:.2e})",
        slow.len()
    );
    Ok(())
}

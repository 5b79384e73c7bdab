//! Times the GNN's batch prediction of every architecture of a space with a
//! freshly initialised predictor (speed does not depend on the weights).
//!
//! `cargo run --release -p nasflat-host --example predict_all -- nb201`

use std::time::Instant;

use anyhow::Result;
use nasflat_host::dataset::SpaceData;
use nasflat_host::predictor::{Predictor, PredictorConfig};
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
    for run in 0..3 {
        let t = Instant::now();
        let scores = model.predict(&data.features, &rows, 1)?;
        println!(
            "run {run}: {} archs in {:.3} s (first score {:.4})",
            scores.len(),
            t.elapsed().as_secs_f64(),
            scores[0]
        );
    }
    Ok(())
}

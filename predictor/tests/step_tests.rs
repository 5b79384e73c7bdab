//! A paper-recipe training step computed in parts (`step::split_gradients`)
//! gives the whole batch's loss and gradients, and the same numbers on one
//! thread as on two.
#![allow(clippy::unwrap_used)]

mod common;

use common::{fbnet, nb201};
use nasflat_predictor::features::Supplementary;
use nasflat_predictor::model::{Predictor, PredictorConfig, Recipe};
use nasflat_predictor::recipe::pair_hinge;
use nasflat_predictor::step::{StepBatch, split_gradients};
use nasflat_shared::SearchSpace;

fn flat(t: &candle_core::Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn split_steps_give_the_whole_batch_gradient_on_any_thread_count() {
    for (data, space, supplementary) in [
        (nb201(), SearchSpace::Nb201, Supplementary::Zcp),
        (fbnet(), SearchSpace::Fbnet, Supplementary::Arch2vec),
    ] {
        let config = PredictorConfig {
            supplementary,
            ..PredictorConfig::for_recipe(Recipe::Paper)
        };
        let supp = data.features.supplementary_dim(supplementary);
        let devices_names = vec!["a".to_string(), "b".to_string()];
        let model = Predictor::new(&config, space, &devices_names, supp, 4).unwrap();
        let rows: Vec<usize> = (0..21).map(|i| i * 131 % data.rows()).collect();
        let devices: Vec<usize> = (0..21).map(|i| i % 2).collect();
        let y: Vec<f64> = (0..21).map(|i| ((i * 7) % 21) as f64).collect();
        let pairs: Vec<(usize, usize)> = (0..21).map(|i| (i, (i * 5 + 3) % 21)).collect();
        let loss_of = |s: &candle_core::Tensor| pair_hinge(s, &y, &pairs, 0.1);
        let whole_scores = model.forward_rows(&data.features, &rows, &devices).unwrap();
        let whole_loss = loss_of(&whole_scores).unwrap();
        let whole = whole_loss.backward().unwrap();
        let batch = StepBatch {
            features: &data.features,
            rows: &rows,
            devices: &devices,
        };
        let (loss1, one) = split_gradients(&model, &batch, 2, 1, loss_of).unwrap();
        let (loss2, two) = split_gradients(&model, &batch, 2, 2, loss_of).unwrap();
        let whole_loss = f64::from(whole_loss.to_scalar::<f32>().unwrap());
        assert!(whole_loss > 0.0);
        assert!((loss1 - whole_loss).abs() < 1e-6, "{loss1} vs {whole_loss}");
        assert_eq!(loss1.to_bits(), loss2.to_bits());
        for (name, var) in model.named_vars().unwrap() {
            let w = flat(whole.get(&var).unwrap());
            let (a, b) = (flat(one.get(&var).unwrap()), flat(two.get(&var).unwrap()));
            assert_eq!(a, b, "{space} {name}: thread count changed the gradient");
            let scale = w.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (x, y) in a.iter().zip(&w) {
                assert!(
                    (x - y).abs() <= 1e-4 * scale + 1e-9,
                    "{space} {name}: {x} vs whole {y} (largest {scale})"
                );
            }
        }
    }
}

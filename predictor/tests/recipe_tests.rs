//! The paper's training recipe end to end: the memoised training forward is
//! the dense forward, the paper's transfer reads out the mean of its last 4
//! epochs, and the recipe trains a predictor that ranks.
#![allow(clippy::unwrap_used)]

mod common;

use common::{fbnet, nb201};

use nasflat_encoders::training::vars_without_gradient;
use nasflat_predictor::correlation::spearman;
use nasflat_predictor::features::Supplementary;
use nasflat_predictor::model::{
    GraphBatch, NetworkForm, Predictor, PredictorConfig, Readout, Recipe, TrainConfig,
};
use nasflat_predictor::recipe::PAPER_READOUT_EPOCHS;
use nasflat_predictor::train;
use nasflat_shared::{Arch, SearchSpace};

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn paper_config(supplementary: Supplementary) -> PredictorConfig {
    PredictorConfig {
        supplementary,
        ..PredictorConfig::for_recipe(Recipe::Paper)
    }
}

/// The recipe's inputs on the network the paper's text describes, the
/// one with a memoised pass.
fn text_config(supplementary: Supplementary) -> PredictorConfig {
    PredictorConfig {
        network: NetworkForm::Text,
        ..paper_config(supplementary)
    }
}

/// Graphs on three different hardware rows in one batch: the memoised
/// training pass gives the dense forward's scores, with and without OPHW,
/// with the supplementary embedder, and every parameter gets a gradient.
#[test]
fn memoised_training_forward_equals_the_dense_forward_across_devices() {
    let data = nb201();
    let rows: Vec<usize> = (0..24).map(|i| i * 641 % data.rows()).collect();
    let devices: Vec<usize> = (0..24).map(|i| i % 3).collect();
    for config in [
        text_config(Supplementary::Zcp),
        PredictorConfig {
            ophw: false,
            ..text_config(Supplementary::Cost)
        },
        PredictorConfig::default(),
    ] {
        let supp = data.features.supplementary_dim(config.supplementary);
        let model = Predictor::new(
            &config,
            SearchSpace::Nb201,
            &names(&["a", "b", "c"]),
            supp,
            5,
        )
        .unwrap();
        let batch = GraphBatch::build_mixed(&data.features, &config, &rows, &devices).unwrap();
        let dense: Vec<f32> = model.forward(&batch).unwrap().to_vec1().unwrap();
        let scores = model.forward_rows(&data.features, &rows, &devices).unwrap();
        let memo: Vec<f32> = scores.to_vec1().unwrap();
        for (i, (d, m)) in dense.iter().zip(&memo).enumerate() {
            assert!((d - m).abs() < 1e-4, "{config:?} graph {i}: {d} vs {m}");
        }
        // The devices matter: the same rows on one device score otherwise.
        let single = model
            .forward_rows(&data.features, &rows, &vec![0; rows.len()])
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(single.iter().zip(&memo).any(|(a, b)| (a - b).abs() > 1e-4));
        let loss = scores.sqr().unwrap().mean_all().unwrap();
        let vars = model.named_vars().unwrap();
        let named = vars.iter().map(|(name, var)| (name.as_str(), var));
        let missing = vars_without_gradient(&loss, named).unwrap();
        assert!(missing.is_empty(), "no gradient: {missing:?}");
    }
}

/// The paper's readout (mean over every node but the input) on FBNet's
/// 24-node chain: the memoised pass equals the dense forward, and the
/// score depends on the first layer's block, which the output node alone
/// cannot see through 3 + 2 message-passing steps.
#[test]
fn the_mean_readout_sees_the_whole_fbnet_chain() {
    let data = fbnet();
    let first = "7_8_1_8_4_8_8_8_7_4_1_4_7_3_2_7_3_2_4_2_4_5";
    let changed = format!("0{}", &first[1..]);
    let archs: Vec<Arch> = [first, changed.as_str()]
        .iter()
        .map(|k| Arch::parse(SearchSpace::Fbnet, k).unwrap())
        .collect();
    let features = data.features.for_archs(&archs).unwrap();
    let mut scores = Vec::new();
    for readout in [Readout::Output, Readout::Mean] {
        let config = PredictorConfig {
            readout,
            ..text_config(Supplementary::None)
        };
        let model = Predictor::new(&config, SearchSpace::Fbnet, &names(&["a"]), 0, 5).unwrap();
        let batch = GraphBatch::build(&features, &config, &[0, 1], 0).unwrap();
        let dense: Vec<f32> = model.forward(&batch).unwrap().to_vec1().unwrap();
        let memo: Vec<f32> = model
            .forward_rows(&features, &[0, 1], &[0, 0])
            .unwrap()
            .to_vec1()
            .unwrap();
        for (d, m) in dense.iter().zip(&memo) {
            assert!((d - m).abs() < 1e-4, "{readout}: dense {d} vs memo {m}");
        }
        scores.push(memo);
    }
    assert_eq!(
        scores[0][0], scores[0][1],
        "the output node cannot see layer 0"
    );
    assert!(
        (scores[1][0] - scores[1][1]).abs() > 1e-6,
        "the mean readout must see layer 0: {:?}",
        scores[1]
    );
}

/// A short paper-recipe pretraining and transfer: the target keeps the
/// model after each of its last 4 epochs, the readout is their mean score
/// (not the last epoch's), and the recipe ranks the target's space.
#[test]
fn paper_transfer_reads_out_the_mean_of_its_last_four_epochs() {
    let data = nb201();
    let sources = names(&["1080ti_1", "silver_4114", "pixel3", "titan_rtx_256"]);
    let config = paper_config(Supplementary::Zcp);
    let mut train = TrainConfig::for_recipe(SearchSpace::Nb201, Recipe::Paper);
    train.epochs = 6;
    train.transfer_epochs = 8;
    let pretrained = train::pretrain(data, &sources, &config, &train, 1, 1, None).unwrap();
    let target = "samsung_a50";
    let column = data.device_index(target).unwrap();
    let archs: Vec<usize> = data
        .valid_rows(column)
        .into_iter()
        .step_by(700)
        .take(20)
        .collect();
    let t = train::transfer(&pretrained, data, target, &archs, &train, 2).unwrap();
    assert_eq!(t.snapshots.len(), PAPER_READOUT_EPOCHS);
    let rows: Vec<usize> = (0..data.rows()).step_by(37).collect();
    let each: Vec<Vec<f64>> = t
        .snapshots
        .iter()
        .map(|s| s.predict(&data.features, &rows, t.row).unwrap())
        .collect();
    let readout = t.scores(&data.features, &rows).unwrap();
    for (i, r) in readout.iter().enumerate() {
        let mean = each.iter().map(|e| e[i]).sum::<f64>() / each.len() as f64;
        assert!((r - mean).abs() < 1e-9, "row {i}: {r} vs {mean}");
    }
    // Four different epochs, the last of them the final model.
    for pair in each.windows(2) {
        assert!(pair[0].iter().zip(&pair[1]).any(|(a, b)| a != b));
    }
    let last = t.model.predict(&data.features, &rows, t.row).unwrap();
    assert_eq!(last, each[PAPER_READOUT_EPOCHS - 1]);
    assert!(readout.iter().zip(&last).any(|(a, b)| (a - b).abs() > 1e-9));
    // It ranks: the readout follows the target's latencies.
    let (xs, ys): (Vec<f64>, Vec<f64>) = rows
        .iter()
        .zip(&readout)
        .filter_map(|(&r, &s)| data.latency(column, r).map(|ms| (s, ms)))
        .unzip();
    let rho = spearman(&xs, &ys);
    assert!(rho > 0.6, "rho {rho}");
}

//! The network as the paper's released code computes it
//! (`NetworkForm::Code`): its attention reaches every node, its FBNet
//! graphs have no edges and no positions (so an FBNet score depends only
//! on which blocks the middle layers hold, not on their order), every
//! weight trains, and inference equals the training forward.
#![allow(clippy::unwrap_used)]

mod common;

use candle_core::{Device, IndexOp, Tensor};
use candle_nn::VarMap;
use common::{fbnet, nb201};
use nasflat_encoders::training::vars_without_gradient;
use nasflat_predictor::features::Supplementary;
use nasflat_predictor::model::gnn::GatLayer;
use nasflat_predictor::model::layers::ParamFactory;
use nasflat_predictor::model::{GraphBatch, NetworkForm, Predictor, PredictorConfig, Recipe};
use nasflat_shared::{Arch, SearchSpace};

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn code_config(supplementary: Supplementary) -> PredictorConfig {
    PredictorConfig {
        supplementary,
        network: NetworkForm::Code,
        ..PredictorConfig::for_recipe(Recipe::Paper)
    }
}

/// Node states `[4, 1, 6]` of one graph whose nodes all carry the same op.
fn one_graph(f: &mut ParamFactory<'_>) -> (GatLayer, Tensor, Tensor) {
    let layer = GatLayer::new(f, "gat", 6, 5, 3).unwrap();
    let x = Tensor::arange(0f32, 24.0, &Device::Cpu)
        .unwrap()
        .reshape((4, 1, 6))
        .unwrap();
    let x = (x * 0.1).unwrap().sin().unwrap();
    let ops = Tensor::ones((4, 1, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
    (layer, x, ops)
}

/// The code multiplies attention logits by the edge matrix instead of
/// masking them: with no edges at all every node attends uniformly to
/// every node, so all nodes of a graph get one state; a node's output
/// moves when a node that does not feed it changes. The text form's
/// masked attention does neither.
#[test]
fn the_codes_attention_reaches_every_node() {
    let varmap = VarMap::new();
    let mut f = ParamFactory::new(&varmap, 3);
    let (layer, x, ops) = one_graph(&mut f);
    let no_edges = Tensor::zeros((4, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
    let out = layer.forward_all_nodes(&x, &ops, &no_edges).unwrap();
    let rows: Vec<Vec<f32>> = (0..4)
        .map(|v| out.i((v, 0)).unwrap().to_vec1().unwrap())
        .collect();
    for r in &rows[1..] {
        for (a, b) in r.iter().zip(&rows[0]) {
            assert!((a - b).abs() < 1e-5, "uniform attention: {rows:?}");
        }
    }
    // Text form, each node attending to itself only: the states differ.
    let own_only = Tensor::from_vec(
        (0..16)
            .map(|i| if i % 5 == 0 { 0f32 } else { -1e9 })
            .collect(),
        (4, 4),
        &Device::Cpu,
    )
    .unwrap();
    let masked = layer.forward(&x, &ops, &own_only).unwrap();
    let m0: Vec<f32> = masked.i((0, 0)).unwrap().to_vec1().unwrap();
    let m1: Vec<f32> = masked.i((1, 0)).unwrap().to_vec1().unwrap();
    assert!(m0.iter().zip(&m1).any(|(a, b)| (a - b).abs() > 1e-3));
    // Node 1 fed by node 0 only: changing node 3 still moves node 1.
    let mut edges = vec![0f32; 16];
    edges[4] = 1.0;
    let edges = Tensor::from_vec(edges, (4, 4), &Device::Cpu).unwrap();
    let before: Vec<f32> = layer
        .forward_all_nodes(&x, &ops, &edges)
        .unwrap()
        .i((1, 0))
        .unwrap()
        .to_vec1()
        .unwrap();
    let bumped = x
        .slice_assign(&[3..4, 0..1, 0..6], &(x.i(3..4).unwrap() + 1.0).unwrap())
        .unwrap();
    let after: Vec<f32> = layer
        .forward_all_nodes(&bumped, &ops, &edges)
        .unwrap()
        .i((1, 0))
        .unwrap()
        .to_vec1()
        .unwrap();
    assert!(before.iter().zip(&after).any(|(a, b)| (a - b).abs() > 1e-4));
}

/// With no edges, one shared start state and attention over all nodes,
/// the code's FBNet network scores a block sequence by the multiset of
/// its middle layers' blocks: swapping two layers leaves the score alone,
/// changing one block does not. The text form (a chain with per-position
/// embeddings) tells the swap apart.
#[test]
fn the_codes_fbnet_graph_has_no_order() {
    let data = fbnet();
    let first = "7_8_1_8_4_8_8_8_7_4_1_4_7_3_2_7_3_2_4_2_4_5";
    let mut blocks: Vec<&str> = first.split('_').collect();
    blocks.swap(3, 9);
    let swapped = blocks.join("_");
    blocks[5] = "0";
    let changed = blocks.join("_");
    let archs: Vec<Arch> = [first, swapped.as_str(), changed.as_str()]
        .iter()
        .map(|k| Arch::parse(SearchSpace::Fbnet, k).unwrap())
        .collect();
    let features = data.features.for_archs(&archs).unwrap();
    let score = |config: &PredictorConfig| -> Vec<f32> {
        let model = Predictor::new(config, SearchSpace::Fbnet, &names(&["a"]), 0, 5).unwrap();
        model
            .forward_rows(&features, &[0, 1, 2], &[0, 0, 0])
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    // At initialisation a block moves the score by ~1e-5; a swap moves it
    // by float noise here (~1e-9) and by ~2e-7 on a chain.
    let code = score(&code_config(Supplementary::None));
    let (swap, change) = ((code[0] - code[1]).abs(), (code[0] - code[2]).abs());
    assert!(change > 1e-6, "blocks must matter: {code:?}");
    assert!(swap * 200.0 < change, "order must not matter: {code:?}");
    let text = score(&PredictorConfig {
        network: NetworkForm::Text,
        ..code_config(Supplementary::None)
    });
    assert!(
        (text[0] - text[1]).abs() > 1e-6,
        "the chain sees order: {text:?}"
    );
}

/// Every weight of the code's network gets a gradient (NB201 with its
/// ZCP embedder, FBNet edgeless), devices matter, and the inference path
/// gives the training forward's scores.
#[test]
fn every_weight_of_the_codes_network_trains() {
    for (data, space, supplementary) in [
        (nb201(), SearchSpace::Nb201, Supplementary::Zcp),
        (fbnet(), SearchSpace::Fbnet, Supplementary::Arch2vec),
    ] {
        let config = code_config(supplementary);
        let supp = data.features.supplementary_dim(supplementary);
        let model = Predictor::new(&config, space, &names(&["a", "b"]), supp, 7).unwrap();
        let rows: Vec<usize> = (0..12).map(|i| i * 97 % data.rows()).collect();
        let devices: Vec<usize> = (0..12).map(|i| i % 2).collect();
        let scores = model.forward_rows(&data.features, &rows, &devices).unwrap();
        let loss = scores.sqr().unwrap().mean_all().unwrap();
        let vars = model.named_vars().unwrap();
        let named = vars.iter().map(|(name, var)| (name.as_str(), var));
        let missing = vars_without_gradient(&loss, named).unwrap();
        assert!(missing.is_empty(), "{space}: no gradient: {missing:?}");
        let batch = GraphBatch::build(&data.features, &config, &rows, 1).unwrap();
        let dense: Vec<f32> = model.forward(&batch).unwrap().to_vec1().unwrap();
        let predicted = model.predict(&data.features, &rows, 1).unwrap();
        for (d, p) in dense.iter().zip(&predicted) {
            assert!((f64::from(*d) - p).abs() < 1e-4, "{space}: {d} vs {p}");
        }
        let trained: Vec<f32> = scores.to_vec1().unwrap();
        assert!(
            trained
                .iter()
                .zip(&dense)
                .any(|(a, b)| (a - b).abs() > 1e-4),
            "devices matter"
        );
    }
}

/// The code's network takes ops only: per-node costs are refused by name,
/// and the form is part of the serialised settings only when it is not
/// the served default.
#[test]
fn the_network_form_is_checked_and_keyed() {
    let bad = PredictorConfig {
        node_costs: true,
        ..code_config(Supplementary::None)
    };
    let err = Predictor::new(&bad, SearchSpace::Nb201, &names(&["a"]), 0, 1)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("network") && err.contains("node costs"),
        "{err}"
    );
    let text = serde_json::to_string(&PredictorConfig::default()).unwrap();
    assert!(!text.contains("network"), "{text}");
    let code = serde_json::to_string(&code_config(Supplementary::None)).unwrap();
    assert!(code.contains(r#""network":"code""#), "{code}");
    assert!("graph".parse::<NetworkForm>().is_err());
}

/// On FBNet the code's network runs on each graph's distinct ops with
/// their counts (`NodeSet`) instead of its 24 nodes: the scores and every
/// weight's gradient must be the dense network's, padding included
/// (graphs with different numbers of distinct ops share a batch).
#[test]
fn grouped_fbnet_graphs_give_the_dense_scores_and_gradients() {
    let data = fbnet();
    let config = code_config(Supplementary::Arch2vec);
    let supp = data.features.supplementary_dim(Supplementary::Arch2vec);
    let model = Predictor::new(&config, SearchSpace::Fbnet, &names(&["a", "b"]), supp, 11).unwrap();
    let rows: Vec<usize> = (0..16).map(|i| i * 211 % data.rows()).collect();
    let devices = vec![1; rows.len()];
    let weights = Tensor::arange(1f32, 17.0, &Device::Cpu).unwrap();
    let loss_of = |scores: &Tensor| (scores * &weights).unwrap().sum_all().unwrap();
    let grouped = model.forward_rows(&data.features, &rows, &devices).unwrap();
    let batch = GraphBatch::build(&data.features, &config, &rows, 1).unwrap();
    let dense = model.forward(&batch).unwrap();
    let set = nasflat_predictor::model::edgeless::NodeSet::group(&batch.ops).unwrap();
    let counts: Vec<Vec<Vec<f32>>> = set.counts.to_vec3().unwrap();
    let used: Vec<usize> = (0..rows.len())
        .map(|g| counts.iter().filter(|row| row[g][0] > 0.0).count())
        .collect();
    assert!(set.ops.dim(0).unwrap() < 24, "grouped: {used:?}");
    assert!(used.iter().min() < used.iter().max(), "padding: {used:?}");
    let (g, d): (Vec<f32>, Vec<f32>) = (grouped.to_vec1().unwrap(), dense.to_vec1().unwrap());
    for (a, b) in g.iter().zip(&d) {
        assert!((a - b).abs() < 1e-6, "scores {a} vs {b}");
    }
    let (grads_g, grads_d) = (
        loss_of(&grouped).backward().unwrap(),
        loss_of(&dense).backward().unwrap(),
    );
    for (name, var) in model.named_vars().unwrap() {
        let (Some(a), Some(b)) = (grads_g.get(&var), grads_d.get(&var)) else {
            continue;
        };
        let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (x, y) in a.iter().zip(&b) {
            assert!(
                (x - y).abs() <= 1e-4 * scale + 1e-9,
                "{name}: gradient {x} vs {y} (largest {scale})"
            );
        }
    }
}

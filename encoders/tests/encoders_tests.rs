//! Behaviour of the learned encoders, the cached files and the NB201 proxies.
#![allow(clippy::unwrap_used)]

use candle_core::Tensor;
use candle_nn::{Optimizer, VarMap};
use nasflat_encoders::arch2vec::{Arch2Vec, Arch2VecConfig, train_arch2vec};
use nasflat_encoders::cache::{EncodingTable, EncodingsSource};
use nasflat_encoders::cate::{Cate, CateConfig, flops_buckets, train_cate};
use nasflat_encoders::graphs::SpaceGraphs;
use nasflat_encoders::training::{adam, vars_without_gradient};
use nasflat_encoders::zcp::network::{Nb201Weights, weight_shapes};
use nasflat_encoders::zcp::proxies::l2_norm;
use nasflat_encoders::zcp::run::{parse_rows, read_rows, run_zcp};
use nasflat_encoders::zcp::{PROXY_NAMES, SyntheticBatch, ZcpConfig, score_arch};
use nasflat_shared::{Nb201Arch, SearchSpace};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn tiny_nb201() -> SpaceGraphs {
    let all = SpaceGraphs::load(SearchSpace::Nb201).unwrap();
    let picks: Vec<usize> = (0..48).map(|i| i * 311).collect();
    all.subset(&picks)
}

fn tiny_arch2vec(seed: u64) -> Arch2VecConfig {
    Arch2VecConfig {
        latent: 32,
        hidden: 16,
        layers: 2,
        epochs: 2,
        batch_size: 16,
        lr: 1e-2,
        kl_weight: 0.01,
        seed,
    }
}

fn tiny_cate(seed: u64) -> CateConfig {
    CateConfig {
        d_model: 32,
        heads: 2,
        layers: 1,
        ffn: 32,
        epochs: 2,
        batch_size: 16,
        lr: 1e-2,
        mask_prob: 0.2,
        bucket_size: 8,
        holdout: 0.1,
        seed,
    }
}

/// Every variable of `varmap` gets a non-zero gradient from `loss`.
fn assert_all_grads(varmap: &VarMap, loss: &Tensor) {
    let data = varmap.data().lock().unwrap();
    let vars = data.iter().map(|(name, var)| (name.as_str(), var));
    let missing = vars_without_gradient(loss, vars).unwrap();
    assert!(missing.is_empty(), "no gradient: {missing:?}");
}

#[test]
fn arch2vec_is_deterministic_and_32_wide() {
    let graphs = tiny_nb201();
    let (a, report) = train_arch2vec(&graphs, &tiny_arch2vec(5), false).unwrap();
    let (b, _) = train_arch2vec(&graphs, &tiny_arch2vec(5), false).unwrap();
    let (c, _) = train_arch2vec(&graphs, &tiny_arch2vec(6), false).unwrap();
    let (ea, eb, ec) = (
        a.embed(&graphs).unwrap(),
        b.embed(&graphs).unwrap(),
        c.embed(&graphs).unwrap(),
    );
    assert_eq!(ea.len(), 48);
    assert!(ea.iter().all(|r| r.len() == 32));
    assert_eq!(ea, eb, "same seed must give the same embedding");
    assert_ne!(ea, ec, "another seed must give another embedding");
    assert_eq!(report.epoch_losses.len(), 2);
    assert!(
        report
            .accuracies
            .iter()
            .all(|(_, v)| (0.0..=1.0).contains(v))
    );
}

#[test]
fn arch2vec_gradients_reach_every_weight_and_loss_falls() {
    let graphs = tiny_nb201();
    let config = tiny_arch2vec(1);
    let model = Arch2Vec::new(&config, graphs.vocab).unwrap();
    let batch: Vec<usize> = (0..16).collect();
    let loss_at = |m: &Arch2Vec| {
        let mut rng = StdRng::seed_from_u64(9);
        m.loss(&graphs, &batch, config.kl_weight, &mut rng).unwrap()
    };
    assert_all_grads(model.varmap(), &loss_at(&model));
    let before = loss_at(&model).to_scalar::<f32>().unwrap();
    let mut opt = adam(model.varmap(), 1e-2).unwrap();
    for _ in 0..15 {
        opt.backward_step(&loss_at(&model)).unwrap();
    }
    let after = loss_at(&model).to_scalar::<f32>().unwrap();
    assert!(after < 0.8 * before, "loss {before} -> {after}");
}

fn tiny_buckets(graphs: &SpaceGraphs) -> Vec<usize> {
    // Cost proxy for the test: number of conv ops (ids 4, 5) per cell.
    let flops: Vec<f64> = graphs
        .graphs
        .iter()
        .map(|g| g.ops.iter().filter(|&&o| o == 4 || o == 5).count() as f64)
        .collect();
    flops_buckets(&flops, &vec![0.0; flops.len()], 8)
}

#[test]
fn cate_is_deterministic_and_32_wide() {
    let graphs = tiny_nb201();
    let buckets = tiny_buckets(&graphs);
    let (a, report) = train_cate(&graphs, &buckets, &tiny_cate(3), false).unwrap();
    let (b, _) = train_cate(&graphs, &buckets, &tiny_cate(3), false).unwrap();
    let (c, _) = train_cate(&graphs, &buckets, &tiny_cate(4), false).unwrap();
    let (ea, eb, ec) = (
        a.embed(&graphs).unwrap(),
        b.embed(&graphs).unwrap(),
        c.embed(&graphs).unwrap(),
    );
    assert_eq!(ea.len(), 48);
    assert!(ea.iter().all(|r| r.len() == 32));
    assert_eq!(ea, eb);
    assert_ne!(ea, ec);
    assert_eq!(report.accuracies[0].0, "masked_op_heldout");
}

#[test]
fn cate_gradients_reach_every_weight_and_loss_falls() {
    let graphs = tiny_nb201();
    let config = tiny_cate(2);
    let model = Cate::new(&config, graphs.vocab, graphs.nodes).unwrap();
    let firsts: Vec<usize> = (0..16).collect();
    let partners: Vec<usize> = (16..32).collect();
    let loss_at = |m: &Cate| {
        let mut rng = StdRng::seed_from_u64(4);
        m.pair_loss(&graphs, &firsts, &partners, 0.3, &mut rng)
            .unwrap()
            .0
    };
    assert_all_grads(model.varmap(), &loss_at(&model));
    let before = loss_at(&model).to_scalar::<f32>().unwrap();
    let mut opt = adam(model.varmap(), 1e-2).unwrap();
    for _ in 0..15 {
        opt.backward_step(&loss_at(&model)).unwrap();
    }
    let after = loss_at(&model).to_scalar::<f32>().unwrap();
    assert!(after < 0.8 * before, "loss {before} -> {after}");
}

#[test]
fn shipped_embeddings_have_one_row_per_arch() {
    let shipped = EncodingsSource::Shipped;
    for (space, rows) in [(SearchSpace::Nb201, 15_625), (SearchSpace::Fbnet, 5_000)] {
        for name in ["arch2vec", "cate"] {
            let text = shipped.table_text(space, name).unwrap().unwrap();
            let emb = EncodingTable::parse(&text.origin, &text.text).unwrap().rows;
            let meta = shipped.meta(space, name).unwrap().unwrap();
            assert_eq!(emb.len(), rows, "{}", text.origin);
            assert_eq!(meta.made_by.get("dim"), Some(&32.into()));
            assert_eq!((meta.name.as_str(), meta.space), (name, space));
            assert!(
                emb.iter()
                    .all(|r| r.len() == 32 && r.iter().all(|v| v.is_finite()))
            );
            // A learned encoding separates architectures: not all rows equal.
            assert!(emb.iter().any(|r| r != &emb[0]));
        }
    }
    // The proxies ship for every NB201 arch (GraSP not computed).
    let text = shipped
        .table_text(SearchSpace::Nb201, "zcp_computed")
        .unwrap()
        .unwrap();
    let zcp = parse_rows(&text.origin, &text.text).unwrap();
    assert_eq!(zcp.len(), nasflat_shared::NB201_SIZE);
    assert_eq!(zcp.keys().last(), Some(&(nasflat_shared::NB201_SIZE - 1)));
}

#[test]
fn l2_norm_of_constant_weights_is_hand_computable() {
    // All-`none` cell: no conv in any cell, so the weights are the stem,
    // the two reduction blocks and the classifier.
    let arch = Nb201Arch::from_ids([0; 6]).unwrap();
    let sizes: Vec<usize> = weight_shapes(&arch, 10)
        .iter()
        .map(|s| s.iter().product())
        .collect();
    assert_eq!(sizes, vec![432, 4608, 9216, 512, 18432, 36864, 2048, 640]);
    let (w, _) = Nb201Weights::random(&arch, 10, 0).unwrap();
    let (constant, _) = w.map(|_, t| Ok((t.ones_like()? * 0.5)?)).unwrap();
    let expected: f64 = [432f64, 4608., 9216., 512., 18432., 36864., 2048., 640.]
        .iter()
        .map(|n| 0.5 * n.sqrt())
        .sum();
    let got = l2_norm(&constant).unwrap();
    assert!(
        (got - expected).abs() < 1e-6 * expected,
        "{got} vs {expected}"
    );
}

fn small_zcp() -> ZcpConfig {
    ZcpConfig {
        batch: 4,
        classes: 10,
        resolution: 8,
        seed: 11,
        grasp: true,
        grasp_step: 1e-3,
    }
}

#[test]
fn proxies_are_finite_and_reproducible() {
    let config = small_zcp();
    let batch = SyntheticBatch::new(&config).unwrap();
    let arch = Nb201Arch::from_index(1).unwrap();
    let a = score_arch(&arch, 1, &batch, &config).unwrap();
    let b = score_arch(&arch, 1, &batch, &config).unwrap();
    assert_eq!(a, b);
    for (name, v) in PROXY_NAMES.iter().zip(a) {
        assert!(v.is_finite(), "{name} = {v}");
    }
    let other = score_arch(&Nb201Arch::from_index(2).unwrap(), 2, &batch, &config).unwrap();
    assert_ne!(a, other);
}

#[test]
fn zcp_run_resumes_without_recomputing() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("nb201_zcp_computed.csv");
    let config = small_zcp();
    let indices: Vec<usize> = (0..5).collect();
    let first = run_zcp(&indices, &csv, &config, Some(3), false).unwrap();
    assert_eq!((first.computed, first.total_done), (3, 3));
    let before = read_rows(&csv).unwrap();
    // A run killed mid-write leaves a torn line; it must be dropped.
    let mut text = std::fs::read_to_string(&csv).unwrap();
    text.push_str("3,1.5,2");
    std::fs::write(&csv, text).unwrap();
    let second = run_zcp(&indices, &csv, &config, None, false).unwrap();
    assert_eq!(
        (second.computed, second.skipped, second.total_done),
        (2, 3, 5)
    );
    let after = read_rows(&csv).unwrap();
    assert_eq!(after.keys().copied().collect::<Vec<_>>(), indices);
    for i in 0..3 {
        assert_eq!(after[&i], before[&i], "row {i} was recomputed");
    }
    // Other settings on the same file are refused, not mixed in.
    let other = ZcpConfig { seed: 12, ..config };
    assert!(run_zcp(&indices, &csv, &other, None, false).is_err());
}

//! FBNet's open space: features, the few-shot pipeline's latency and the
//! evolutionary search for architectures given by value, checked against
//! the table path on the 5,000 table rows.
#![allow(clippy::unwrap_used)]

mod common;

use common::{fbnet, paper_task, spread_rows};

use nasflat_predictor::PredictorError;
use nasflat_predictor::Samples;
use nasflat_predictor::baselines::StackRules;
use nasflat_predictor::baselines::{AdditiveModel, SourceMatrix};
use nasflat_predictor::blend::BlendRule;
use nasflat_predictor::features::Supplementary;
use nasflat_predictor::fewshot::{FewShot, Fitted, Options, blend_log};
use nasflat_predictor::model::{Predictor, PredictorConfig, TrainConfig};
use nasflat_predictor::nas::arch_latency::{ArchLatency, PipelineScorer};
use nasflat_predictor::nas::evolution::{EvolutionConfig, evolve};
use nasflat_predictor::nas::{Constraint, Objective, bound, exhaustive};
use nasflat_predictor::train::{self, TransferOptions};
use nasflat_shared::{Arch, FbnetArch, SearchSpace};

fn quick_train() -> TrainConfig {
    let mut t = TrainConfig::for_space(SearchSpace::Fbnet);
    t.epochs = 4;
    t.source_samples = 25;
    t.transfer_epochs = 10;
    t
}

/// Task F1's sources, its first target and 20 spread table samples of it.
struct Setup {
    sources: SourceMatrix,
    target: String,
    samples: Samples,
}

fn setup() -> Setup {
    let data = fbnet();
    let task = paper_task(SearchSpace::Fbnet, "F1");
    let target = task.test[0].clone();
    let rows = spread_rows(data, &target, 20);
    Setup {
        sources: SourceMatrix::new(data, &task.train).unwrap(),
        samples: Samples::from_table(data, &target, &rows).unwrap(),
        target,
    }
}

fn fit<'a>(base: &'a Predictor, s: &'a Setup) -> Fitted<'a> {
    let pipeline = FewShot {
        pretrained: base,
        data: fbnet(),
        sources: &s.sources,
    };
    let opts = Options {
        transfer: TransferOptions {
            train: quick_train(),
            seed: 5,
            progress: None,
        },
        blend: BlendRule::Fixed(0.85),
        stack_rules: StackRules::LEGACY,
    };
    pipeline.fit(&s.target, &s.samples, &opts).unwrap()
}

fn table_archs(rows: &[usize]) -> Vec<Arch> {
    rows.iter()
        .map(|&r| Arch::Fbnet(FbnetArch::from_index(r).unwrap()))
        .collect()
}

/// Features computed by value equal the table's rows exactly.
#[test]
fn features_by_value_equal_the_table_rows() {
    let f = &fbnet().features;
    let rows = [0usize, 17, 999, 4321, 4999];
    let by_value = f.for_archs(&table_archs(&rows)).unwrap();
    assert_eq!(by_value.len, rows.len());
    let (n, c, a) = (f.nodes, f.cost_dim, f.additive_dim);
    let nf = nasflat_predictor::features::NODE_FEATURES;
    for (i, &r) in rows.iter().enumerate() {
        assert_eq!(by_value.ops[i * n..(i + 1) * n], f.ops[r * n..(r + 1) * n]);
        assert_eq!(
            by_value.node_features[i * n * nf..(i + 1) * n * nf],
            f.node_features[r * n * nf..(r + 1) * n * nf]
        );
        assert_eq!(
            by_value.cost[i * c..(i + 1) * c],
            f.cost[r * c..(r + 1) * c]
        );
        assert_eq!(
            by_value.additive[i * a..(i + 1) * a],
            f.additive[r * a..(r + 1) * a]
        );
        assert_eq!(
            (by_value.flops[i], by_value.params[i]),
            (f.flops[r], f.params[r])
        );
    }
    let nb = Arch::Nb201(nasflat_shared::Nb201Arch::from_index(3).unwrap());
    assert!(matches!(
        f.for_archs(&[nb]),
        Err(PredictorError::InvalidInput { .. })
    ));
}

/// On table rows the open-space model is exactly the fitted GNN (blend 0)
/// or the GNN blended with the additive model (blend > 0); off the table it
/// predicts finite latencies; its residuals follow its own blend; and the
/// evolution with it answers within the bound, at least as high in FLOPs as
/// the same model's exhaustive search over the 5,000 table rows.
#[test]
fn open_space_latency_matches_the_table_path_and_evolution_beats_the_table() {
    let data = fbnet();
    let s = setup();
    let config = PredictorConfig::default();
    let base =
        train::pretrain(data, &s.sources.names, &config, &quick_train(), 3, 1, None).unwrap();
    let fitted = fit(&base, &s);
    let probe: Vec<usize> = (0..data.rows()).skip(3).step_by(211).collect();

    let gnn_only = ArchLatency::new(&fitted, data, 0.0).unwrap();
    assert_eq!(
        gnn_only.predict_archs(&table_archs(&probe)).unwrap(),
        fitted.gnn_ms(&probe).unwrap()
    );
    let gnn_residuals = fitted.loo_log_residuals_at(0.0).unwrap();
    for (a, b) in gnn_only.loo_log_residuals().iter().zip(&gnn_residuals) {
        assert!((a - b).abs() < 1e-12);
    }

    let blended = ArchLatency::new(&fitted, data, 0.85).unwrap();
    let additive = AdditiveModel::fit(data, &s.samples.rows(), &s.samples.latencies()).unwrap();
    let linear: Vec<f64> = probe.iter().map(|&r| additive.predict(data, r)).collect();
    let want = blend_log(&fitted.gnn_ms(&probe).unwrap(), &linear, 0.85);
    assert_eq!(blended.predict_archs(&table_archs(&probe)).unwrap(), want);
    assert_eq!(blended.loo_log_residuals().len(), 20);
    assert_ne!(blended.loo_log_residuals(), gnn_only.loo_log_residuals());

    let off: Vec<Arch> = (0..9u8)
        .map(|b| Arch::Fbnet(FbnetArch::from_ids(&[b; 22]).unwrap()))
        .collect();
    let ms = blended.predict_archs(&off).unwrap();
    assert!(ms.iter().all(|m| m.is_finite() && *m > 0.0), "{ms:?}");

    let all: Vec<usize> = (0..data.rows()).collect();
    let table_ms = blended.predict_archs(&table_archs(&all)).unwrap();
    let mut sorted = table_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let budget = Constraint::new(sorted[sorted.len() / 2], 0.1).unwrap();
    let q = bound::conformal_quantile(blended.loo_log_residuals(), 0.1);
    let flops = Objective::Flops.scores(data).unwrap();
    let table_best = exhaustive::rank_feasible(&table_ms, &flops, q, budget.max_ms(), 1);
    let scorer = PipelineScorer {
        latency: &blended,
        objective: Objective::Flops,
    };
    let evolution = EvolutionConfig {
        seed: 7,
        ..EvolutionConfig::default()
    };
    let out = evolve(&scorer, &budget, &evolution, 10).unwrap();
    assert!(out.chosen.upper_ms <= budget.max_ms());
    assert!((out.residual_quantile - q).abs() < 1e-15);
    assert!(
        out.chosen.objective >= table_best[0].objective,
        "evolution {} < table {}",
        out.chosen.objective,
        table_best[0].objective
    );
    assert_eq!(out, evolve(&scorer, &budget, &evolution, 10).unwrap());
}

/// A GNN that reads a table-only input (ZCP columns) cannot score
/// architectures off the table: a typed error, not a silent zero.
#[test]
fn table_only_supplementary_inputs_are_refused() {
    let data = fbnet();
    let s = setup();
    let config = PredictorConfig {
        supplementary: Supplementary::Zcp,
        ..PredictorConfig::default()
    };
    let mut t = quick_train();
    t.epochs = 1;
    t.transfer_epochs = 1;
    let base = train::pretrain(data, &s.sources.names, &config, &t, 3, 1, None).unwrap();
    let fitted = fit(&base, &s);
    assert!(matches!(
        ArchLatency::new(&fitted, data, 0.85),
        Err(PredictorError::InvalidInput { .. })
    ));
    assert!(
        Objective::Synflow
            .of_fbnet(&FbnetArch::from_index(0).unwrap())
            .is_err()
    );
}

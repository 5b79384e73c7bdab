//! The served predictor's choices (blend weight, the stack's weight) are
//! made from the k samples and the task's sources only, are the ones the
//! leave-one-out errors favour, and are reported by `eval`.
#![allow(clippy::unwrap_used)]

mod common;

use common::{nb201, paper_task, spread_rows};

use nasflat_predictor::baselines::{Method, SourceMatrix, StackRules};
use nasflat_predictor::blend::{BLEND_GRID, BlendRule};
use nasflat_predictor::eval::{BlendSpec, EvalOptions, evaluate};
use nasflat_predictor::fewshot::{FewShot, Options};
use nasflat_predictor::model::{PredictorConfig, TrainConfig};
use nasflat_predictor::sampler::Sampler;
use nasflat_predictor::train::{self, TransferOptions};
use nasflat_predictor::{Predictor, Samples};
use nasflat_shared::SearchSpace;
use nasflat_shared::data::paper_tasks;

fn quick_train() -> TrainConfig {
    let mut t = TrainConfig::for_space(SearchSpace::Nb201);
    t.epochs = 4;
    t.transfer_epochs = 10;
    t.source_samples = 25;
    t
}

fn options(rule: BlendRule) -> Options {
    Options {
        transfer: TransferOptions {
            train: quick_train(),
            seed: 5,
            progress: None,
        },
        blend: rule,
        stack_rules: StackRules::SERVED,
    }
}

/// A predictor pretrained on N1's sources, the source matrix, and 20 table
/// samples of N1's first target.
fn setup() -> (Predictor, SourceMatrix, String, Samples) {
    let data = nb201();
    let task = paper_task(SearchSpace::Nb201, "N1");
    let base = train::pretrain(
        data,
        &task.train,
        &PredictorConfig::default(),
        &quick_train(),
        3,
        1,
        None,
    )
    .unwrap();
    let sources = SourceMatrix::new(data, &task.train).unwrap();
    let target = task.test[0].clone();
    let rows = spread_rows(data, &target, 20);
    let samples = Samples::from_table(data, &target, &rows).unwrap();
    (base, sources, target, samples)
}

/// The per-target choice is the grid weight with the least mean squared
/// leave-one-out log residual (`loo-min`), the one-SE rule's pick is at
/// least as heavy on the stack and within one standard error, and a fit
/// under a name no table holds (so nothing of the target's table beyond
/// the samples can be read) chooses and predicts exactly the same.
#[test]
fn the_blend_is_chosen_from_the_samples_alone() {
    let data = nb201();
    let (base, sources, target, samples) = setup();
    let pipeline = FewShot {
        pretrained: &base,
        data,
        sources: &sources,
    };
    let fitted = pipeline
        .fit(&target, &samples, &options(BlendRule::LooMin))
        .unwrap();
    let mse: Vec<f64> = BLEND_GRID
        .iter()
        .map(|&w| {
            let r = fitted.loo_log_residuals_at(w).unwrap();
            r.iter().map(|x| x * x).sum::<f64>() / r.len() as f64
        })
        .collect();
    let least = mse.iter().copied().fold(f64::INFINITY, f64::min);
    let chosen = fitted.choice();
    let at = BLEND_GRID
        .iter()
        .position(|&w| w == chosen.blend.weight)
        .unwrap();
    assert_eq!(mse[at], least, "{mse:?} {chosen:?}");
    assert!((chosen.blend.loo_mse.unwrap() - least).abs() < 1e-12);
    let one_se = fitted.choose_blend(BlendRule::Loo).unwrap();
    assert!(one_se.weight >= chosen.blend.weight, "{one_se:?}");

    let served = pipeline
        .fit(&target, &samples, &options(BlendRule::Loo))
        .unwrap();
    let renamed = pipeline
        .fit("a-board-in-no-table", &samples, &options(BlendRule::Loo))
        .unwrap();
    assert_eq!(served.choice(), renamed.choice());
    assert_eq!(served.choice().blend, one_se);
    let probe: Vec<usize> = (0..data.rows()).step_by(101).collect();
    assert_eq!(
        served.predict(&probe).unwrap(),
        renamed.predict(&probe).unwrap()
    );
    if served.blend() > 0.0 {
        let stack = served.choice().stack.unwrap();
        assert_eq!(stack.rules, StackRules::SERVED);
        assert!((0.0..=1.0).contains(&stack.additive_weight));
    }
}

/// `eval --json` carries each outcome's choices: the rule and weight of the
/// blend, the stack's rules and weight; `legacy` reports the old fixed
/// rules and `stacked` the served stack rules.
#[test]
fn eval_reports_every_choice_per_outcome() {
    let data = nb201();
    let mut train = quick_train();
    train.epochs = 1;
    let opts = EvalOptions {
        tasks: vec!["N1".into()],
        task_set: paper_tasks().unwrap(),
        trials: 1,
        samples: 20,
        seed: 0,
        sampler: Sampler::Random,
        methods: vec![Method::Nasflat, Method::Stacked, Method::Ridge],
        predictor: PredictorConfig::default(),
        train,
        help_mlp_epochs: 1,
        blend: vec![BlendSpec::Rule(BlendRule::Loo), BlendSpec::Legacy],
        quiet: true,
        jobs: 1,
    };
    let runs = evaluate(data, &opts).unwrap();
    let json = serde_json::to_value(&runs).unwrap();
    let outcomes = |method: &str| -> Vec<serde_json::Value> {
        json.as_array()
            .unwrap()
            .iter()
            .find(|r| r["method"] == method)
            .unwrap()["outcomes"]
            .as_array()
            .unwrap()
            .clone()
    };
    for o in outcomes("nasflat@loo") {
        let c = &o["choice"];
        assert_eq!(c["blend"]["rule"], "loo", "{c}");
        let w = c["blend"]["weight"].as_f64().unwrap();
        assert!(BLEND_GRID.contains(&w), "{c}");
        assert!(c["blend"]["loo_mse"].as_f64().unwrap().is_finite(), "{c}");
        if w > 0.0 {
            assert_eq!(c["stack"]["rules"]["one_se"], true, "{c}");
        }
    }
    for o in outcomes("nasflat@legacy") {
        let c = &o["choice"];
        assert_eq!(c["blend"]["weight"], 0.85, "{c}");
        assert_eq!(c["stack"]["rules"]["min_additive_step"], 5, "{c}");
        assert_eq!(c["stack"]["rules"]["source_gain"], 0.9, "{c}");
    }
    for o in outcomes("stacked") {
        let c = &o["choice"];
        assert_eq!(c["stack"]["rules"]["one_se"], true, "{c}");
        let w = c["stack"]["additive_weight"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&w), "{c}");
    }
    for o in outcomes("ridge") {
        assert!(o["choice"].is_null());
    }
}

//! NB201 graphs: exact parameter and FLOP counts against `nb201/zcp.csv` for
//! every architecture, and tract loading/running a representative sample.

// Helpers outside `#[test]` fns panic on failure too: that is the report.
#![allow(clippy::unwrap_used)]

mod util;

use std::thread;

use nasflat_onnx::{
    FlopsConvention, Nb201Config, Nb201Dataset, OnnxError, WeightInit, encode, model_cost,
    nb201_model,
};
use nasflat_shared::data::zcp_table;
use nasflat_shared::{NB201_SIZE, Nb201Arch, SearchSpace};

/// A table value in millions as an exact count (the CSV holds 6 decimals).
fn millions(v: Option<f64>) -> u64 {
    (v.unwrap() * 1e6).round() as u64
}

fn config(dataset: Nb201Dataset) -> Nb201Config {
    Nb201Config {
        dataset,
        weights: WeightInit::Zeros,
        ..Nb201Config::default()
    }
}

/// Counts `(params, tensorwatch flops)` of the archs at `indices`, on two
/// threads (the CI machines have two cores).
fn counts(indices: &[usize], dataset: Nb201Dataset) -> Vec<(usize, u64, u64)> {
    let config = config(dataset);
    let half = indices.len().div_ceil(2);
    thread::scope(|s| {
        let workers: Vec<_> = indices
            .chunks(half.max(1))
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|&i| {
                            let arch = Nb201Arch::from_index(i).unwrap();
                            let cost = model_cost(&nb201_model(&arch, &config).unwrap()).unwrap();
                            (i, cost.params, cost.flops(FlopsConvention::TensorWatch))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    })
}

fn assert_matches_table(indices: &[usize], dataset: Nb201Dataset) {
    let table = zcp_table(SearchSpace::Nb201).unwrap();
    let params = table.column(&format!("{dataset}_params")).unwrap();
    let flops = table.column(&format!("{dataset}_flops")).unwrap();
    let mut mismatches = Vec::new();
    for (i, p, f) in counts(indices, dataset) {
        if p != millions(params[i]) || f != millions(flops[i]) {
            mismatches.push((i, p, millions(params[i]), f, millions(flops[i])));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} {dataset} archs differ (index, params, table, flops, table): {:?}",
        mismatches.len(),
        indices.len(),
        &mismatches[..mismatches.len().min(5)]
    );
}

#[test]
fn cifar10_params_and_flops_match_table_for_all_archs() {
    let all: Vec<usize> = (0..NB201_SIZE).collect();
    assert_matches_table(&all, Nb201Dataset::Cifar10);
}

#[test]
fn cifar100_and_imagenet16_counts_match_table_on_a_sample() {
    let sample: Vec<usize> = (0..NB201_SIZE).step_by(61).collect();
    assert_matches_table(&sample, Nb201Dataset::Cifar100);
    assert_matches_table(&sample, Nb201Dataset::Imagenet16_120);
}

#[test]
fn index_zero_counts_by_hand() {
    let arch = Nb201Arch::from_index(0).unwrap();
    let cost = model_cost(&nb201_model(&arch, &config(Nb201Dataset::Cifar10)).unwrap()).unwrap();
    assert_eq!(cost.params, 129_306);
    assert_eq!(cost.flops(FlopsConvention::TensorWatch), 17_958_592);
    // The global pool's off-by-one window (see `cost`): 64 * (9 * 9) vs 64 * 8 * 8.
    let pool = cost
        .nodes
        .iter()
        .find(|n| n.op_type == "GlobalAveragePool")
        .unwrap();
    assert_eq!(pool.cost.flops(FlopsConvention::TensorWatch), 64 * 81);
    assert_eq!(pool.cost.flops(FlopsConvention::Flopth), 64 * 64);
    assert_eq!(cost.output_shape, vec![1, 10]);
}

#[test]
fn all_none_cell_is_zeros_and_still_valid() {
    let arch = Nb201Arch::from_ids([0; 6]).unwrap();
    let model = nb201_model(&arch, &config(Nb201Dataset::Cifar10)).unwrap();
    let graph = model.graph.as_ref().unwrap();
    let zeros = graph.node.iter().filter(|n| n.op_type == "Mul").count();
    assert_eq!(zeros, 15 * 3, "every node of every cell is zeros");
    assert_eq!(model_cost(&model).unwrap().output_shape, vec![1, 10]);
}

#[test]
fn batch_and_resolution_scale_shapes() {
    let arch = Nb201Arch::from_index(1234).unwrap();
    let base = config(Nb201Dataset::Cifar100);
    let one = model_cost(&nb201_model(&arch, &base).unwrap()).unwrap();
    let four = Nb201Config { batch: 4, ..base };
    let four = model_cost(&nb201_model(&arch, &four).unwrap()).unwrap();
    assert_eq!(four.output_shape, vec![4, 100]);
    assert_eq!(four.params, one.params);
    assert_eq!(
        four.flops(FlopsConvention::TensorWatch),
        4 * one.flops(FlopsConvention::TensorWatch)
    );
    let small = Nb201Config {
        resolution: Some(16),
        ..base
    };
    let small = model_cost(&nb201_model(&arch, &small).unwrap()).unwrap();
    assert_eq!(small.input_shape, vec![1, 3, 16, 16]);
    assert_eq!(small.output_shape, vec![1, 100]);
}

#[test]
fn invalid_configs_are_rejected() {
    let arch = Nb201Arch::from_index(0).unwrap();
    for (batch, resolution) in [(0, 32), (1, 30), (1, 0)] {
        let config = Nb201Config {
            batch,
            resolution: Some(resolution),
            ..Nb201Config::default()
        };
        let err = nb201_model(&arch, &config).unwrap_err();
        assert!(matches!(err, OnnxError::InvalidConfig { .. }), "{err}");
    }
    let err = "imagenet".parse::<Nb201Dataset>().unwrap_err().to_string();
    assert!(
        err.contains("`imagenet`") && err.contains("imagenet16_120"),
        "{err}"
    );
}

#[test]
fn random_weights_are_deterministic_per_seed() {
    let arch = Nb201Arch::from_index(77).unwrap();
    let with_seed = |seed| Nb201Config {
        weights: WeightInit::Random { seed },
        ..Nb201Config::default()
    };
    let a = encode(&nb201_model(&arch, &with_seed(3)).unwrap());
    let b = encode(&nb201_model(&arch, &with_seed(3)).unwrap());
    let c = encode(&nb201_model(&arch, &with_seed(4)).unwrap());
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(a.len(), c.len());
}

/// The archs tract must run: the degenerate cells plus an even spread.
fn tract_sample() -> Vec<Nb201Arch> {
    let special = [
        [0, 0, 0, 0, 0, 0], // all none: output is zeros
        [3, 0, 0, 0, 0, 3], // output disconnected from the input
        [3, 0, 0, 0, 3, 0], // node 2 dead, output reached through node 1
        [1, 1, 1, 1, 1, 1], // all skip
        [3, 3, 3, 3, 3, 3], // all conv3x3
        [2, 2, 2, 2, 2, 2], // all conv1x1
        [4, 4, 4, 4, 4, 4], // all avg pool
        [0, 0, 0, 1, 0, 0], // identity cell
    ];
    let mut archs: Vec<Nb201Arch> = special
        .iter()
        .map(|ids| Nb201Arch::from_ids(*ids).unwrap())
        .collect();
    archs.extend(
        (0..NB201_SIZE)
            .step_by(78)
            .map(|i| Nb201Arch::from_index(i).unwrap()),
    );
    archs
}

#[test]
fn tract_runs_sampled_archs() {
    let archs = tract_sample();
    assert!(archs.len() >= 200, "{}", archs.len());
    let config = Nb201Config {
        weights: WeightInit::Random { seed: 5 },
        ..Nb201Config::default()
    };
    let half = archs.len().div_ceil(2);
    thread::scope(|s| {
        for chunk in archs.chunks(half) {
            s.spawn(move || {
                for arch in chunk {
                    let model = nb201_model(arch, &config).unwrap();
                    assert_eq!(util::run_with_tract(&model), vec![1, 10], "{arch}");
                }
            });
        }
    });
}

#[test]
fn tract_runs_other_batch_resolution_and_dataset() {
    let arch = Nb201Arch::from_index(9_999).unwrap();
    let cases = [
        (Nb201Dataset::Cifar10, 4, None, vec![4, 10]),
        (Nb201Dataset::Cifar100, 1, Some(64), vec![1, 100]),
        (Nb201Dataset::Imagenet16_120, 2, None, vec![2, 120]),
    ];
    for (dataset, batch, resolution, expected) in cases {
        let config = Nb201Config {
            dataset,
            batch,
            resolution,
            weights: WeightInit::Random { seed: 9 },
        };
        let model = nb201_model(&arch, &config).unwrap();
        assert_eq!(util::run_with_tract(&model), expected, "{dataset}");
    }
}

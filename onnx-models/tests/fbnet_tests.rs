//! FBNet graphs: exact parameter and FLOP counts against `fbnet/zcp.csv` for
//! all 5,000 table architectures, and tract loading/running a sample.

// Helpers outside `#[test]` fns panic on failure too: that is the report.
#![allow(clippy::unwrap_used)]

mod util;

use std::thread;

use nasflat_onnx::{
    FbnetConfig, FlopsConvention, ModelCost, OpCost, WeightInit, fbnet_model, model_cost,
};
use nasflat_shared::data::zcp_table;
use nasflat_shared::{FBNET_LAYERS, FbnetArch, FbnetBlock, FbnetVariant, SearchSpace};

fn zeros() -> FbnetConfig {
    FbnetConfig {
        weights: WeightInit::Zeros,
        ..FbnetConfig::default()
    }
}

fn cost_of(arch: &FbnetArch, config: &FbnetConfig) -> ModelCost {
    model_cost(&fbnet_model(arch, config).unwrap()).unwrap()
}

#[test]
fn params_and_flops_match_table_for_all_archs() {
    let table = zcp_table(SearchSpace::Fbnet).unwrap();
    let params = table.column("params").unwrap();
    let flops = table.column("flops").unwrap();
    let archs = FbnetArch::table();
    assert_eq!(archs.len(), 5000);
    let config = zeros();
    let half = archs.len().div_ceil(2);
    let mismatches: Vec<_> = thread::scope(|s| {
        let workers: Vec<_> = archs
            .chunks(half)
            .enumerate()
            .map(|(c, chunk)| {
                s.spawn(move || {
                    let mut bad = Vec::new();
                    for (j, arch) in chunk.iter().enumerate() {
                        let i = c * half + j;
                        let cost = cost_of(arch, &config);
                        let (p, f) = (cost.params, cost.flops(FlopsConvention::Flopth));
                        let (tp, tf) = (params[i].unwrap() as u64, flops[i].unwrap() as u64);
                        if p != tp || f != tf {
                            bad.push((i, p, tp, f, tf));
                        }
                    }
                    bad
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert!(
        mismatches.is_empty(),
        "{} archs differ (index, params, table, flops, table): {:?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(5)]
    );
}

#[test]
fn index_zero_counts_by_hand() {
    let arch = FbnetArch::from_index(0).unwrap();
    let cost = cost_of(&arch, &zeros());
    assert_eq!(cost.params, 1_790_500);
    assert_eq!(cost.flops(FlopsConvention::Macs), 67_605_376);
    assert_eq!(cost.flops(FlopsConvention::Flopth), 70_098_816);
    assert_eq!(cost.output_shape, vec![1, 100]);
    // The convention gap is exactly the uncounted expand-conv ReLUs.
    let skipped: u64 = cost
        .nodes
        .iter()
        .filter_map(|n| match n.cost {
            OpCost::Relu {
                elements,
                feeds_depthwise: true,
            } => Some(elements),
            _ => None,
        })
        .sum();
    assert!(skipped > 0);
    assert!(
        cost.nodes
            .iter()
            .filter(|n| n.name.ends_with("expand.relu"))
            .all(|n| {
                matches!(
                    n.cost,
                    OpCost::Relu {
                        feeds_depthwise: true,
                        ..
                    }
                )
            })
    );
}

#[test]
fn grouped_blocks_shuffle_channels() {
    let arch = FbnetArch::from_ids(&[FbnetBlock::K3E1G2.id(); FBNET_LAYERS]).unwrap();
    let model = fbnet_model(&arch, &zeros()).unwrap();
    let graph = model.graph.as_ref().unwrap();
    let transposes = graph
        .node
        .iter()
        .filter(|n| n.op_type == "Transpose")
        .count();
    assert_eq!(transposes, FBNET_LAYERS);
    assert_eq!(model_cost(&model).unwrap().output_shape, vec![1, 100]);
}

#[test]
fn imagenet_variant_has_its_macro_shape() {
    let arch = FbnetArch::from_index(3).unwrap();
    let config = FbnetConfig {
        variant: FbnetVariant::Imagenet,
        ..zeros()
    };
    let cost = cost_of(&arch, &config);
    assert_eq!(cost.input_shape, vec![1, 3, 224, 224]);
    assert_eq!(cost.output_shape, vec![1, 1000]);
    let header = cost.nodes.iter().find(|n| n.name == "header.conv").unwrap();
    assert_eq!(header.output_shape, vec![1, 1984, 7, 7]);
}

fn tract_sample() -> Vec<FbnetArch> {
    let uniform = |b: FbnetBlock| FbnetArch::from_ids(&[b.id(); FBNET_LAYERS]).unwrap();
    let mut archs = vec![
        uniform(FbnetBlock::Skip),
        uniform(FbnetBlock::K5E6),
        uniform(FbnetBlock::K3E1G2),
        uniform(FbnetBlock::K5E1G2),
    ];
    archs.extend(FbnetArch::table().iter().step_by(108).copied());
    archs
}

#[test]
fn tract_runs_sampled_archs() {
    let archs = tract_sample();
    assert!(archs.len() >= 50, "{}", archs.len());
    let config = FbnetConfig {
        weights: WeightInit::Random { seed: 11 },
        ..FbnetConfig::default()
    };
    let half = archs.len().div_ceil(2);
    thread::scope(|s| {
        for chunk in archs.chunks(half) {
            s.spawn(move || {
                for arch in chunk {
                    let model = fbnet_model(arch, &config).unwrap();
                    assert_eq!(util::run_with_tract(&model), vec![1, 100], "{arch}");
                }
            });
        }
    });
}

#[test]
fn tract_runs_other_batch_and_resolution() {
    let arch = FbnetArch::from_index(4_321).unwrap();
    for (batch, resolution) in [(4, None), (1, Some(48)), (2, Some(17))] {
        let config = FbnetConfig {
            batch,
            resolution,
            weights: WeightInit::Random { seed: 2 },
            ..FbnetConfig::default()
        };
        let model = fbnet_model(&arch, &config).unwrap();
        assert_eq!(util::run_with_tract(&model), vec![batch, 100]);
    }
}

/// Off the table, the graph walker and `nasflat_shared::fbnet_cost` (the
/// closed form the predictor uses for any architecture) agree: uniform
/// architectures of every block and a spread of mixed ones.
#[test]
fn analytic_cost_matches_the_graph_off_the_table() {
    let mut archs: Vec<FbnetArch> = (0..9u8)
        .map(|b| FbnetArch::from_ids(&[b; FBNET_LAYERS]).unwrap())
        .collect();
    archs.extend((0..12u64).map(|s| {
        let ids: Vec<u8> = (0..FBNET_LAYERS as u64)
            .map(|l| ((l * 7 + s * 13 + l * s) % 9) as u8)
            .collect();
        FbnetArch::from_ids(&ids).unwrap()
    }));
    for arch in archs.iter().filter(|a| a.index().is_none()) {
        let graph = cost_of(arch, &zeros());
        let analytic = nasflat_shared::fbnet_cost(arch);
        assert_eq!(analytic.params, graph.params, "{arch}");
        assert_eq!(
            analytic.flops,
            graph.flops(FlopsConvention::Flopth),
            "{arch}"
        );
    }
}

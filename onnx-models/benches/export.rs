//! Time to generate one model: build the graph with random weights and
//! encode it to `.onnx` bytes, for the first table entry of each space and
//! for the largest NB201 cell (all conv3x3).

use criterion::{Criterion, criterion_group, criterion_main};
use nasflat_onnx::{FbnetConfig, Nb201Config, encode, fbnet_model, nb201_model};
use nasflat_shared::{FbnetArch, Nb201Arch};

fn export(c: &mut Criterion) {
    let nb201_first = Nb201Arch::from_index(0).unwrap_or_else(|e| panic!("{e}"));
    let nb201_largest = Nb201Arch::from_ids([3; 6]).unwrap_or_else(|e| panic!("{e}"));
    let fbnet_first = FbnetArch::from_index(0).unwrap_or_else(|e| panic!("{e}"));
    let nb201 = Nb201Config::default();
    let fbnet = FbnetConfig::default();

    c.bench_function("nb201_index0_build_encode", |b| {
        b.iter(|| nb201_model(&nb201_first, &nb201).map(|m| encode(&m).len()))
    });
    c.bench_function("nb201_all_conv3x3_build_encode", |b| {
        b.iter(|| nb201_model(&nb201_largest, &nb201).map(|m| encode(&m).len()))
    });
    c.bench_function("fbnet_index0_build_encode", |b| {
        b.iter(|| fbnet_model(&fbnet_first, &fbnet).map(|m| encode(&m).len()))
    });
}

criterion_group!(benches, export);
criterion_main!(benches);

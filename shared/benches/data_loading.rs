//! How long loading the vendored tables takes (the foundation issue asks < 1 s
//! for all 40 NB201 device columns in a release build).

use criterion::{Criterion, criterion_group, criterion_main};
use nasflat_shared::SearchSpace;
use nasflat_shared::data;

fn loading(c: &mut Criterion) {
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    group.bench_function("nb201_latency_40_devices", |b| {
        b.iter(|| data::latency_table(SearchSpace::Nb201))
    });
    group.bench_function("fbnet_latency_27_devices", |b| {
        b.iter(|| data::latency_table(SearchSpace::Fbnet))
    });
    group.bench_function("nb201_arch_list_gunzip", |b| {
        b.iter(|| nasflat_shared::vendored::NB201_ARCHS.text())
    });
    group.finish();
}

criterion_group!(benches, loading);
criterion_main!(benches);

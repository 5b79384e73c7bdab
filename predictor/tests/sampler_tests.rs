//! Samplers on the real NB201 table: only measured rows, distinct, seeded;
//! the uncertainty sampler extends its static first batch.
#![allow(clippy::unwrap_used)]

mod common;

use common::nb201;

use std::collections::HashSet;

use nasflat_predictor::baselines::SourceMatrix;
use nasflat_predictor::sampler::Sampler;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// An EAGLE device: some NB201 rows have no latency.
const PARTIAL_DEVICE: &str = "embedded_gpu_jetson_nano_fp16";

#[test]
fn every_sampler_picks_k_distinct_measured_rows_reproducibly() {
    let data = nb201();
    let column = data.device_index(PARTIAL_DEVICE).unwrap();
    let valid = data.valid_rows(column);
    assert!(
        valid.len() < data.rows(),
        "the device should miss some rows"
    );
    let measured: HashSet<usize> = valid.iter().copied().collect();
    let sources = SourceMatrix::new(data, &["1080ti_1".to_string(), "pixel3".to_string()]).unwrap();
    for name in [
        "random",
        "params",
        "oracle",
        "zcp-cosine",
        "zcp-kmeans",
        "zcp-cosine-spread",
        "uncertainty",
        "uncertainty:random",
    ] {
        let sampler: Sampler = name.parse().unwrap();
        let pick = |seed| {
            sampler
                .pick_for_task(
                    data,
                    Some(&sources),
                    PARTIAL_DEVICE,
                    &valid,
                    10,
                    &mut StdRng::seed_from_u64(seed),
                )
                .unwrap()
        };
        let a = pick(4);
        assert_eq!(a, pick(4), "{name}: not reproducible");
        assert_eq!(a.len(), 10, "{name}: {a:?}");
        assert_eq!(
            a.iter().collect::<HashSet<_>>().len(),
            10,
            "{name}: duplicates"
        );
        assert!(
            a.iter().all(|r| measured.contains(r)),
            "{name}: unmeasured row"
        );
    }
}

#[test]
fn uncertainty_keeps_its_static_first_batch_and_needs_sources() {
    let data = nb201();
    let valid = data.valid_rows(data.device_index("fpga").unwrap());
    let sources = SourceMatrix::new(data, &["1080ti_1".to_string()]).unwrap();
    let first = "zcp-kmeans"
        .parse::<Sampler>()
        .unwrap()
        .pick(data, "fpga", &valid, 5, &mut StdRng::seed_from_u64(2))
        .unwrap();
    let all = "uncertainty:zcp-kmeans"
        .parse::<Sampler>()
        .unwrap()
        .pick_for_task(
            data,
            Some(&sources),
            "fpga",
            &valid,
            9,
            &mut StdRng::seed_from_u64(2),
        )
        .unwrap();
    assert_eq!(&all[..5], &first[..]);
    let err = "uncertainty"
        .parse::<Sampler>()
        .unwrap()
        .pick(data, "fpga", &valid, 9, &mut StdRng::seed_from_u64(2))
        .unwrap_err()
        .to_string();
    assert!(err.contains("source devices"), "{err}");
}

#[test]
fn asking_for_more_than_measured_is_an_error() {
    let data = nb201();
    let valid: Vec<usize> = (0..4).collect();
    for name in ["zcp-cosine", "zcp-kmeans", "oracle", "params"] {
        let err = name
            .parse::<Sampler>()
            .unwrap()
            .pick(data, "fpga", &valid, 5, &mut StdRng::seed_from_u64(0))
            .unwrap_err()
            .to_string();
        assert!(err.contains("asked for 5"), "{name}: {err}");
    }
}

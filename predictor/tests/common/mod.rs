//! Fixtures shared by the predictor's integration tests.
#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;

use nasflat_predictor::dataset::SpaceData;
use nasflat_shared::SearchSpace;
use nasflat_shared::data::{Task, paper_tasks};

/// The NB201 tables and encodings, loaded once per test binary (the
/// encodings take a few seconds to decode).
#[allow(dead_code)] // each test binary uses some of the fixtures
pub(crate) fn nb201() -> &'static SpaceData {
    static DATA: OnceLock<SpaceData> = OnceLock::new();
    DATA.get_or_init(|| SpaceData::load(SearchSpace::Nb201).unwrap())
}

/// The FBNet tables and encodings, loaded once per test binary.
#[allow(dead_code)] // each test binary uses some of the fixtures
pub(crate) fn fbnet() -> &'static SpaceData {
    static DATA: OnceLock<SpaceData> = OnceLock::new();
    DATA.get_or_init(|| SpaceData::load(SearchSpace::Fbnet).unwrap())
}

/// The paper's task `name` of `space`.
#[allow(dead_code)]
pub(crate) fn paper_task(space: SearchSpace, name: &str) -> Task {
    paper_tasks().unwrap().task(space, name).unwrap().clone()
}

/// `n` of `target`'s measured rows, spread evenly over its table.
#[allow(dead_code)]
pub(crate) fn spread_rows(data: &SpaceData, target: &str, n: usize) -> Vec<usize> {
    let valid = data.valid_rows(data.device_index(target).unwrap());
    valid
        .iter()
        .copied()
        .step_by(valid.len() / n)
        .take(n)
        .collect()
}

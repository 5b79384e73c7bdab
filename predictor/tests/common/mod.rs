//! Fixtures shared by the predictor's integration tests.
#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;

use nasflat_predictor::dataset::SpaceData;
use nasflat_shared::SearchSpace;

/// The NB201 tables and encodings, loaded once per test binary (the
/// encodings take a few seconds to decode).
pub(crate) fn nb201() -> &'static SpaceData {
    static DATA: OnceLock<SpaceData> = OnceLock::new();
    DATA.get_or_init(|| SpaceData::load(SearchSpace::Nb201).unwrap())
}

//! What a new job asks for (a leaf: the queue types of the store's files
//! import it, and it imports none of them).

use nasflat_shared::SearchSpace;

/// What a job asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewJob {
    /// Architecture `index` of `space`'s table.
    Arch {
        /// Space.
        space: SearchSpace,
        /// Table row.
        index: usize,
    },
    /// A user model.
    Model {
        /// Model id.
        model_id: String,
        /// Input overrides `NAME:SHAPE[:DTYPE]`.
        inputs: Vec<String>,
    },
}

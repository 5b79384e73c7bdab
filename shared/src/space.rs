//! The two search spaces as one enum, for CLIs and wire messages.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::SpaceError;

/// A search space of the paper.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchSpace {
    /// NASBench-201: 15,625 cells of 6 edges x 5 ops.
    Nb201,
    /// FBNet: 22 searchable layers x 9 blocks.
    Fbnet,
}

impl SearchSpace {
    /// Both spaces, in the paper's order.
    pub const ALL: [SearchSpace; 2] = [SearchSpace::Nb201, SearchSpace::Fbnet];

    /// Lower-case name used in files, CLIs and JSON (`nb201`, `fbnet`).
    pub fn name(self) -> &'static str {
        match self {
            SearchSpace::Nb201 => "nb201",
            SearchSpace::Fbnet => "fbnet",
        }
    }
}

impl fmt::Display for SearchSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SearchSpace {
    type Err = SpaceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "nb201" | "nasbench201" | "nas-bench-201" => Ok(SearchSpace::Nb201),
            "fbnet" => Ok(SearchSpace::Fbnet),
            _ => Err(SpaceError::UnknownSpace(s.to_string())),
        }
    }
}

//! An architecture of either space, for CLIs, wire messages and tables.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Result, SpaceError};
use crate::fbnet::FbnetArch;
use crate::graph::ArchGraph;
use crate::nb201::Nb201Arch;
use crate::space::SearchSpace;

/// An architecture of one of the two search spaces.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// A NASBench-201 cell.
    Nb201(Nb201Arch),
    /// An FBNet block sequence.
    Fbnet(FbnetArch),
}

impl Arch {
    /// Its search space.
    pub fn space(&self) -> SearchSpace {
        match self {
            Arch::Nb201(_) => SearchSpace::Nb201,
            Arch::Fbnet(_) => SearchSpace::Fbnet,
        }
    }

    /// Parses an arch string (NB201) or arch key (FBNet).
    pub fn parse(space: SearchSpace, text: &str) -> Result<Self> {
        Ok(match space {
            SearchSpace::Nb201 => Arch::Nb201(text.parse()?),
            SearchSpace::Fbnet => Arch::Fbnet(text.parse()?),
        })
    }

    /// The architecture at a row of the space's latency table.
    pub fn from_index(space: SearchSpace, index: usize) -> Result<Self> {
        Ok(match space {
            SearchSpace::Nb201 => Arch::Nb201(Nb201Arch::from_index(index)?),
            SearchSpace::Fbnet => Arch::Fbnet(FbnetArch::from_index(index)?),
        })
    }

    /// Row of the space's latency table, if the architecture has one.
    pub fn index(&self) -> Option<usize> {
        match self {
            Arch::Nb201(a) => Some(a.index()),
            Arch::Fbnet(a) => a.index(),
        }
    }

    /// The predictor's graph encoding.
    pub fn graph(&self) -> ArchGraph {
        match self {
            Arch::Nb201(a) => ArchGraph::from(a),
            Arch::Fbnet(a) => ArchGraph::from(a),
        }
    }

    /// Checks that the architecture belongs to `space`.
    pub fn expect_space(&self, space: SearchSpace) -> Result<()> {
        if self.space() == space {
            Ok(())
        } else {
            Err(SpaceError::Malformed {
                space: space.name(),
                input: self.to_string(),
                reason: format!("architecture belongs to {}", self.space()),
            })
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arch::Nb201(a) => a.fmt(f),
            Arch::Fbnet(a) => a.fmt(f),
        }
    }
}

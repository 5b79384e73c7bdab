//! Types both halves of nasflat use: the NASBench-201 and FBNet search spaces,
//! the graph encoding the predictor consumes, and the vendored latency data.
//!
//! ```
//! use nasflat_shared::{Nb201Arch, ArchGraph};
//! let arch = Nb201Arch::from_index(0)?;
//! assert_eq!(arch.to_string(), "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|");
//! assert_eq!(ArchGraph::from(&arch).len(), 8);
//! # Ok::<(), nasflat_shared::SpaceError>(())
//! ```

pub mod arch;
pub mod data;
pub mod error;
pub mod fbnet;
pub mod fbnet_cost;
pub mod graph;
pub mod nb201;
pub mod protocol;
#[cfg(feature = "schema")]
pub mod schema;
pub mod space;
pub mod stats;
pub mod vendored;

pub use arch::Arch;
pub use error::{Result, SpaceError};
pub use fbnet::{
    BlockShape, FBNET_LAYERS, FbnetArch, FbnetBlock, FbnetLayer, FbnetMacro, FbnetVariant,
};
pub use fbnet_cost::{NetCost, fbnet_cost};
pub use graph::ArchGraph;
pub use nb201::{NB201_EDGE_NODES, NB201_EDGES, NB201_SIZE, Nb201Arch, Nb201Op};
pub use space::SearchSpace;

//! NASBench-201: a cell of 4 nodes and 6 edges, each edge one of 5 operations.
//!
//! The canonical string lists the edges grouped by their destination node:
//! `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`, i.e. edges `e01 | e02 e12 | e03 e13 e23`
//! (`op~i` in group `j` is the edge from node `i` to node `j`).
//! [`Nb201Arch::from_index`] follows the official NB201 API index, which is not
//! an enumeration order of the ops: it comes from the vendored `archs.csv`.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Result, SpaceError};
use crate::vendored;

const SPACE: &str = "nb201";

/// Number of architectures in NASBench-201 (5^6).
pub const NB201_SIZE: usize = 15_625;

/// Number of edges in a cell.
pub const NB201_EDGES: usize = 6;

/// `(from, to)` node pair of each edge, in canonical edge order.
pub const NB201_EDGE_NODES: [(usize, usize); NB201_EDGES] =
    [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)];

/// An edge operation. Discriminants are the op ids of the data tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(u8)]
pub enum Nb201Op {
    /// Zeros: the edge is absent.
    None = 0,
    /// Identity.
    SkipConnect = 1,
    /// ReLU -> Conv1x1 -> BN.
    NorConv1x1 = 2,
    /// ReLU -> Conv3x3 -> BN.
    NorConv3x3 = 3,
    /// 3x3 average pooling, stride 1, padding 1, padding not counted.
    AvgPool3x3 = 4,
}

impl Nb201Op {
    /// All ops by id.
    pub const ALL: [Nb201Op; 5] = [
        Nb201Op::None,
        Nb201Op::SkipConnect,
        Nb201Op::NorConv1x1,
        Nb201Op::NorConv3x3,
        Nb201Op::AvgPool3x3,
    ];

    /// Name used in arch strings.
    pub fn name(self) -> &'static str {
        match self {
            Nb201Op::None => "none",
            Nb201Op::SkipConnect => "skip_connect",
            Nb201Op::NorConv1x1 => "nor_conv_1x1",
            Nb201Op::NorConv3x3 => "nor_conv_3x3",
            Nb201Op::AvgPool3x3 => "avg_pool_3x3",
        }
    }

    /// Op id as in the data tables.
    pub fn id(self) -> u8 {
        self as u8
    }

    /// Op from its id.
    pub fn from_id(id: u8) -> Option<Nb201Op> {
        Nb201Op::ALL.get(usize::from(id)).copied()
    }

    /// Op from its name.
    pub fn from_name(name: &str) -> Option<Nb201Op> {
        Nb201Op::ALL.iter().copied().find(|op| op.name() == name)
    }
}

impl fmt::Display for Nb201Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One NASBench-201 cell: the op on each edge, in canonical edge order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nb201Arch {
    /// Ops of edges `e01, e02, e12, e03, e13, e23`.
    pub ops: [Nb201Op; NB201_EDGES],
}

impl Nb201Arch {
    /// Builds an arch from op ids in canonical edge order.
    pub fn from_ids(ids: [u8; NB201_EDGES]) -> Result<Self> {
        let mut ops = [Nb201Op::None; NB201_EDGES];
        for (position, (slot, id)) in ops.iter_mut().zip(ids).enumerate() {
            *slot = Nb201Op::from_id(id).ok_or_else(|| SpaceError::UnknownToken {
                space: SPACE,
                what: "op id",
                token: id.to_string(),
                position,
                input: format!("{ids:?}"),
            })?;
        }
        Ok(Nb201Arch { ops })
    }

    /// Op ids in canonical edge order.
    pub fn ids(&self) -> [u8; NB201_EDGES] {
        self.ops.map(Nb201Op::id)
    }

    /// Dense code in `0..15625`: the op ids read as a base-5 number. This is
    /// *not* the NB201 API index (see [`Nb201Arch::index`]).
    pub fn code(&self) -> usize {
        self.ops
            .iter()
            .fold(0usize, |acc, op| acc * 5 + usize::from(op.id()))
    }

    /// Inverse of [`Nb201Arch::code`].
    pub fn from_code(code: usize) -> Result<Self> {
        if code >= NB201_SIZE {
            return Err(SpaceError::IndexOutOfRange {
                space: SPACE,
                index: code,
                len: NB201_SIZE,
            });
        }
        let mut ops = [Nb201Op::None; NB201_EDGES];
        let mut rest = code;
        for slot in ops.iter_mut().rev() {
            // `rest % 5` is always a valid id.
            *slot = Nb201Op::ALL[rest % 5];
            rest /= 5;
        }
        Ok(Nb201Arch { ops })
    }

    /// The architecture at an official NB201 API index.
    pub fn from_index(index: usize) -> Result<Self> {
        nb201_table()
            .by_index
            .get(index)
            .copied()
            .ok_or(SpaceError::IndexOutOfRange {
                space: SPACE,
                index,
                len: NB201_SIZE,
            })
    }

    /// The official NB201 API index of this architecture.
    pub fn index(&self) -> usize {
        usize::from(nb201_table().index_by_code[self.code()])
    }

    /// Whether a path of non-`none` edges joins the cell input to its output.
    /// When not, the network's output does not depend on its input.
    pub fn output_connected(&self) -> bool {
        let mut reach = [true, false, false, false];
        for (edge, &(from, to)) in NB201_EDGE_NODES.iter().enumerate() {
            // Edges are sorted by destination, so sources are final when read.
            if reach[from] && self.ops[edge] != Nb201Op::None {
                reach[to] = true;
            }
        }
        reach[3]
    }

    /// Op on the edge `from -> to`, if that edge exists (`from < to <= 3`).
    pub fn edge(&self, from: usize, to: usize) -> Option<Nb201Op> {
        NB201_EDGE_NODES
            .iter()
            .position(|&e| e == (from, to))
            .map(|i| self.ops[i])
    }

    /// Every architecture in official index order.
    pub fn all() -> &'static [Nb201Arch] {
        &nb201_table().by_index
    }
}

impl fmt::Display for Nb201Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.ops;
        write!(
            f,
            "|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|",
            o[0], o[1], o[2], o[3], o[4], o[5]
        )
    }
}

impl FromStr for Nb201Arch {
    type Err = SpaceError;

    /// Parses the canonical string. Errors name the offending token and its
    /// position (0-based character offset in the input).
    fn from_str(input: &str) -> Result<Self> {
        let malformed = |reason: String| SpaceError::Malformed {
            space: SPACE,
            input: input.to_string(),
            reason,
        };
        let groups: Vec<&str> = input.split('+').collect();
        if groups.len() != 3 {
            return Err(malformed(format!(
                "expected 3 node groups separated by `+`, found {}",
                groups.len()
            )));
        }
        let mut ops = [Nb201Op::None; NB201_EDGES];
        let mut edge = 0;
        let mut offset = 0;
        for (g, group) in groups.iter().enumerate() {
            let to = g + 1;
            let inner = group
                .strip_prefix('|')
                .and_then(|s| s.strip_suffix('|'))
                .ok_or_else(|| {
                    malformed(format!(
                        "group {} `{group}` (at position {offset}) must start and end with `|`",
                        g + 1
                    ))
                })?;
            let tokens: Vec<&str> = inner.split('|').collect();
            if tokens.len() != to {
                return Err(malformed(format!(
                    "group {} (node {to}) must have {to} edges, found {}",
                    g + 1,
                    tokens.len()
                )));
            }
            let mut token_offset = offset + 1;
            for (from, token) in tokens.iter().enumerate() {
                let unknown = |what: &'static str, bad: &str| SpaceError::UnknownToken {
                    space: SPACE,
                    what,
                    token: bad.to_string(),
                    position: token_offset,
                    input: input.to_string(),
                };
                let (name, source) = token
                    .split_once('~')
                    .ok_or_else(|| unknown("edge (expected `op~i`)", token))?;
                let op = Nb201Op::from_name(name).ok_or_else(|| unknown("operation", name))?;
                if source.parse::<usize>().ok() != Some(from) {
                    return Err(unknown("source node", source));
                }
                ops[edge] = op;
                edge += 1;
                token_offset += token.len() + 1;
            }
            offset += group.len() + 1;
        }
        Ok(Nb201Arch { ops })
    }
}

struct Nb201Table {
    by_index: Vec<Nb201Arch>,
    index_by_code: Vec<u16>,
}

fn nb201_table() -> &'static Nb201Table {
    static TABLE: OnceLock<Nb201Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        // The vendored table is checked by tests to hold all 15,625 archs
        // exactly once; a corrupt build would fail there, not here.
        let by_index = vendored_archs();
        let mut index_by_code = vec![0u16; NB201_SIZE];
        for (index, arch) in by_index.iter().enumerate() {
            index_by_code[arch.code()] = u16::try_from(index).unwrap_or(u16::MAX);
        }
        Nb201Table {
            by_index,
            index_by_code,
        }
    })
}

/// Human-readable formats (JSON) carry the canonical string; binary formats
/// (postcard) the op ids, which is what a slow link wants.
impl Serialize for Nb201Arch {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            self.ids().serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Nb201Arch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            let ids: [u8; NB201_EDGES] = <[u8; NB201_EDGES]>::deserialize(deserializer)?;
            Nb201Arch::from_ids(ids).map_err(serde::de::Error::custom)
        }
    }
}

/// Parses the vendored `nb201/archs.csv`. The file is checked by tests, so a
/// parse failure can only mean a corrupt build; it yields an empty list and
/// every index lookup then reports "out of range".
fn vendored_archs() -> Vec<Nb201Arch> {
    vendored::parse_records(vendored::NB201_ARCHS, |record| {
        let ids: Vec<u8> = (2..8)
            .map(|i| record.get(i).and_then(|s| s.parse().ok()))
            .collect::<Option<_>>()?;
        let ids: [u8; 6] = ids.try_into().ok()?;
        Nb201Arch::from_ids(ids).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_string() {
        let s = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|";
        let arch: Nb201Arch = s.parse().unwrap();
        assert_eq!(arch.ids(), [4, 2, 1, 2, 1, 1]);
        assert_eq!(arch.to_string(), s);
        assert_eq!(arch.index(), 0);
    }

    #[test]
    fn bad_op_names_token_and_position() {
        let s = "|avg_pool_3x3~0|+|nor_conv_2x2~0|skip_connect~1|+|none~0|none~1|none~2|";
        let err = s.parse::<Nb201Arch>().unwrap_err().to_string();
        assert!(err.contains("nor_conv_2x2"), "{err}");
        assert!(err.contains("position 18"), "{err}");
    }

    #[test]
    fn bad_structure_is_error() {
        for bad in [
            "",
            "|none~0|",
            "|none~0|+|none~0|+|none~0|none~1|none~2|",
            "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|",
            "|none~0|+|none~0|none~1|+|none~0|none~1|none~2",
            "|none0|+|none~0|none~1|+|none~0|none~1|none~2|",
        ] {
            assert!(bad.parse::<Nb201Arch>().is_err(), "{bad}");
        }
    }

    #[test]
    fn code_round_trips() {
        for code in [0, 1, 4, 5, 1234, NB201_SIZE - 1] {
            assert_eq!(Nb201Arch::from_code(code).unwrap().code(), code);
        }
        assert!(Nb201Arch::from_code(NB201_SIZE).is_err());
    }

    #[test]
    fn connectivity() {
        let all_none = Nb201Arch::from_ids([0; 6]).unwrap();
        assert!(!all_none.output_connected());
        let direct = Nb201Arch::from_ids([0, 0, 0, 1, 0, 0]).unwrap();
        assert!(direct.output_connected());
        let dead_end = Nb201Arch::from_ids([3, 0, 0, 0, 3, 0]).unwrap();
        assert!(dead_end.output_connected());
        let broken = Nb201Arch::from_ids([3, 0, 0, 0, 0, 3]).unwrap();
        assert!(!broken.output_connected());
    }

    #[test]
    fn index_out_of_range() {
        let err = Nb201Arch::from_index(NB201_SIZE).unwrap_err();
        assert!(err.to_string().contains("15625"));
    }
}

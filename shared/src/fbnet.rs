//! FBNet: a fixed macro network with 22 searchable layers, each one of 9 blocks.
//!
//! An architecture is identified by its 22 block ids joined with `_` (the
//! "arch key" of the data tables). Every one of the 9^22 architectures is
//! representable; the 5,000 with measured latencies are [`FbnetArch::table`].

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Result, SpaceError};
use crate::vendored;

const SPACE: &str = "fbnet";

/// Number of searchable layers.
pub const FBNET_LAYERS: usize = 22;

/// A candidate block. Discriminants are the block ids of `fbnet/blocks.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(u8)]
pub enum FbnetBlock {
    K3E1 = 0,
    K3E1G2 = 1,
    K3E3 = 2,
    K3E6 = 3,
    K5E1 = 4,
    K5E1G2 = 5,
    K5E3 = 6,
    K5E6 = 7,
    Skip = 8,
}

/// Shape parameters of an inverted-residual block (`None` for `skip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockShape {
    /// Depthwise kernel size.
    pub kernel: usize,
    /// Channel expansion of the 1x1 expand conv.
    pub expansion: usize,
    /// Groups of both 1x1 convs.
    pub groups: usize,
}

impl FbnetBlock {
    /// All blocks by id.
    pub const ALL: [FbnetBlock; 9] = [
        FbnetBlock::K3E1,
        FbnetBlock::K3E1G2,
        FbnetBlock::K3E3,
        FbnetBlock::K3E6,
        FbnetBlock::K5E1,
        FbnetBlock::K5E1G2,
        FbnetBlock::K5E3,
        FbnetBlock::K5E6,
        FbnetBlock::Skip,
    ];

    /// Name as in `blocks.csv`.
    pub fn name(self) -> &'static str {
        match self {
            FbnetBlock::K3E1 => "k3_e1",
            FbnetBlock::K3E1G2 => "k3_e1_g2",
            FbnetBlock::K3E3 => "k3_e3",
            FbnetBlock::K3E6 => "k3_e6",
            FbnetBlock::K5E1 => "k5_e1",
            FbnetBlock::K5E1G2 => "k5_e1_g2",
            FbnetBlock::K5E3 => "k5_e3",
            FbnetBlock::K5E6 => "k5_e6",
            FbnetBlock::Skip => "skip",
        }
    }

    /// Block id.
    pub fn id(self) -> u8 {
        self as u8
    }

    /// Block from its id.
    pub fn from_id(id: u8) -> Option<FbnetBlock> {
        FbnetBlock::ALL.get(usize::from(id)).copied()
    }

    /// Block from its name.
    pub fn from_name(name: &str) -> Option<FbnetBlock> {
        FbnetBlock::ALL.iter().copied().find(|b| b.name() == name)
    }

    /// Kernel, expansion and groups; `None` for `skip`.
    pub fn shape(self) -> Option<BlockShape> {
        let (kernel, expansion, groups) = match self {
            FbnetBlock::K3E1 => (3, 1, 1),
            FbnetBlock::K3E1G2 => (3, 1, 2),
            FbnetBlock::K3E3 => (3, 3, 1),
            FbnetBlock::K3E6 => (3, 6, 1),
            FbnetBlock::K5E1 => (5, 1, 1),
            FbnetBlock::K5E1G2 => (5, 1, 2),
            FbnetBlock::K5E3 => (5, 3, 1),
            FbnetBlock::K5E6 => (5, 6, 1),
            FbnetBlock::Skip => return None,
        };
        Some(BlockShape {
            kernel,
            expansion,
            groups,
        })
    }
}

impl fmt::Display for FbnetBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One FBNet architecture: the block of each searchable layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FbnetArch {
    /// Block of layers 0..22.
    pub blocks: [FbnetBlock; FBNET_LAYERS],
}

impl FbnetArch {
    /// Builds an arch from block ids.
    pub fn from_ids(ids: &[u8]) -> Result<Self> {
        if ids.len() != FBNET_LAYERS {
            return Err(SpaceError::Malformed {
                space: SPACE,
                input: format!("{ids:?}"),
                reason: format!("expected {FBNET_LAYERS} block ids, found {}", ids.len()),
            });
        }
        let mut blocks = [FbnetBlock::Skip; FBNET_LAYERS];
        for (position, (slot, &id)) in blocks.iter_mut().zip(ids).enumerate() {
            *slot = FbnetBlock::from_id(id).ok_or_else(|| SpaceError::UnknownToken {
                space: SPACE,
                what: "block id",
                token: id.to_string(),
                position,
                input: format!("{ids:?}"),
            })?;
        }
        Ok(FbnetArch { blocks })
    }

    /// Block ids of layers 0..22.
    pub fn ids(&self) -> [u8; FBNET_LAYERS] {
        self.blocks.map(FbnetBlock::id)
    }

    /// The arch key, e.g. `7_8_1_..._5`.
    pub fn key(&self) -> String {
        self.to_string()
    }

    /// The architecture at a row of the 5,000-arch latency table.
    pub fn from_index(index: usize) -> Result<Self> {
        let table = FbnetArch::table();
        table
            .get(index)
            .copied()
            .ok_or(SpaceError::IndexOutOfRange {
                space: SPACE,
                index,
                len: table.len(),
            })
    }

    /// Row of this architecture in the latency table, if it was measured.
    pub fn index(&self) -> Option<usize> {
        FbnetArch::table().iter().position(|a| a == self)
    }

    /// The 5,000 architectures of the HELP / HW-NAS-Bench latency table.
    pub fn table() -> &'static [FbnetArch] {
        static TABLE: OnceLock<Vec<FbnetArch>> = OnceLock::new();
        TABLE.get_or_init(vendored_archs)
    }
}

impl fmt::Display for FbnetArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.blocks.iter().enumerate() {
            if i > 0 {
                f.write_str("_")?;
            }
            write!(f, "{}", b.id())?;
        }
        Ok(())
    }
}

impl FromStr for FbnetArch {
    type Err = SpaceError;

    /// Parses an arch key (`b_b_..._b`, 22 ids in 0..=8). Block names
    /// (`k3_e1`, ...) are accepted too when separated by `,` or `-`.
    fn from_str(input: &str) -> Result<Self> {
        let tokens: Vec<&str> = if input.contains(',') || input.contains('-') {
            input.split([',', '-']).map(str::trim).collect()
        } else {
            input.split('_').collect()
        };
        if tokens.len() != FBNET_LAYERS {
            return Err(SpaceError::Malformed {
                space: SPACE,
                input: input.to_string(),
                reason: format!(
                    "expected {FBNET_LAYERS} blocks separated by `_`, found {}",
                    tokens.len()
                ),
            });
        }
        let mut blocks = [FbnetBlock::Skip; FBNET_LAYERS];
        let mut offset = 0;
        for (slot, token) in blocks.iter_mut().zip(&tokens) {
            let by_id = token.parse::<u8>().ok().and_then(FbnetBlock::from_id);
            *slot = by_id
                .or_else(|| FbnetBlock::from_name(token))
                .ok_or_else(|| SpaceError::UnknownToken {
                    space: SPACE,
                    what: "block",
                    token: token.to_string(),
                    position: offset,
                    input: input.to_string(),
                })?;
            offset += token.len() + 1;
        }
        Ok(FbnetArch { blocks })
    }
}

/// Input variant of the FBNet macro network (`fbnet/macro.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FbnetVariant {
    /// 32x32 input, 100 classes; the variant of the latency data.
    Cifar100,
    /// 224x224 input, 1000 classes.
    Imagenet,
}

/// One searchable layer of the macro network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FbnetLayer {
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Stride of the depthwise conv (or of the skip projection).
    pub stride: usize,
}

/// The FBNet macro network (`fbnet/macro.json`), independent of the blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FbnetMacro {
    /// Default input `[C, H, W]`.
    pub input: [usize; 3],
    /// Stem: conv3x3 from 3 to this many channels, BN, ReLU.
    pub stem_channels: usize,
    /// Stride of the stem conv.
    pub stem_stride: usize,
    /// The 22 searchable layers.
    pub layers: [FbnetLayer; FBNET_LAYERS],
    /// Channels of the 1x1 header conv.
    pub header_channels: usize,
    /// Classifier outputs.
    pub num_classes: usize,
}

impl FbnetMacro {
    /// Layers per stage.
    pub const STAGE_LAYERS: [usize; 7] = [1, 4, 4, 4, 4, 4, 1];
    /// Output width of each stage.
    pub const STAGE_CHANNELS: [usize; 7] = [16, 24, 32, 64, 112, 184, 352];

    /// The macro network of a variant.
    pub fn new(variant: FbnetVariant) -> Self {
        let (input, stem_stride, strides, header_channels, num_classes) = match variant {
            FbnetVariant::Cifar100 => ([3, 32, 32], 1, [1, 1, 2, 2, 1, 2, 1], 1504, 100),
            FbnetVariant::Imagenet => ([3, 224, 224], 2, [1, 2, 2, 2, 1, 2, 1], 1984, 1000),
        };
        let stem_channels = 16;
        let mut layers = [FbnetLayer {
            c_in: 0,
            c_out: 0,
            stride: 1,
        }; FBNET_LAYERS];
        let mut c_in = stem_channels;
        let mut i = 0;
        for (stage, &n) in FbnetMacro::STAGE_LAYERS.iter().enumerate() {
            let c_out = FbnetMacro::STAGE_CHANNELS[stage];
            for j in 0..n {
                layers[i] = FbnetLayer {
                    c_in,
                    c_out,
                    stride: if j == 0 { strides[stage] } else { 1 },
                };
                c_in = c_out;
                i += 1;
            }
        }
        FbnetMacro {
            input,
            stem_channels,
            stem_stride,
            layers,
            header_channels,
            num_classes,
        }
    }
}

/// Human-readable formats (JSON) carry the canonical string; binary formats
/// (postcard) the op ids, which is what a slow link wants.
impl Serialize for FbnetArch {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            self.ids().serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for FbnetArch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            let ids = <[u8; FBNET_LAYERS]>::deserialize(deserializer)?;
            FbnetArch::from_ids(&ids).map_err(serde::de::Error::custom)
        }
    }
}

/// Parses the vendored `fbnet/archs.csv` (a failure yields an empty list, as
/// for NB201's).
fn vendored_archs() -> Vec<FbnetArch> {
    vendored::parse_records(vendored::FBNET_ARCHS, |record| {
        record.get(1).and_then(|key| key.parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trip() {
        let key = "7_8_1_8_4_8_8_8_7_4_1_4_7_3_2_7_3_2_4_2_4_5";
        let arch: FbnetArch = key.parse().unwrap();
        assert_eq!(arch.key(), key);
        assert_eq!(arch.blocks[0], FbnetBlock::K5E6);
        assert_eq!(arch.blocks[1], FbnetBlock::Skip);
    }

    #[test]
    fn names_accepted() {
        let names = vec!["k3_e1"; 22].join(",");
        let arch: FbnetArch = names.parse().unwrap();
        assert!(arch.blocks.iter().all(|&b| b == FbnetBlock::K3E1));
    }

    #[test]
    fn bad_keys() {
        let err = "7_8_1".parse::<FbnetArch>().unwrap_err().to_string();
        assert!(err.contains("expected 22"), "{err}");
        let bad = "7_8_1_8_4_8_8_9_7_4_1_4_7_3_2_7_3_2_4_2_4_5";
        let err = bad.parse::<FbnetArch>().unwrap_err().to_string();
        assert!(err.contains("`9`") && err.contains("position 14"), "{err}");
        assert!(FbnetArch::from_ids(&[0; 21]).is_err());
        assert!(FbnetArch::from_ids(&[9; 22]).is_err());
    }

    #[test]
    fn macro_matches_json() {
        let m = FbnetMacro::new(FbnetVariant::Cifar100);
        assert_eq!(m.layers[0].c_in, 16);
        assert_eq!(m.layers[1].c_out, 24);
        assert_eq!(m.layers[9].stride, 2);
        assert_eq!(m.layers[21].c_out, 352);
        let strides: usize = m.layers.iter().map(|l| l.stride).product();
        assert_eq!(strides, 8);
    }
}

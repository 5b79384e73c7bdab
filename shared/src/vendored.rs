//! The data files vendored under the repository's `data/` folder, compiled in.
//!
//! The architecture lists (~320 KB gzipped) are always embedded: index <->
//! arch must work everywhere, the agent included. The latency, accuracy and
//! ZCP tables (~6 MB gzipped) only with the `embedded-data` feature.

use std::io::Read;

use flate2::read::GzDecoder;

use crate::error::{Result, SpaceError};

/// `data/nb201/archs.csv.gz`: index, arch string, edge op ids, output_connected.
pub const NB201_ARCHS: VendoredFile = VendoredFile {
    name: "nb201/archs.csv.gz",
    bytes: include_bytes!("../../data/nb201/archs.csv.gz"),
};

/// `data/fbnet/archs.csv.gz`: index, arch key, block id per layer.
pub const FBNET_ARCHS: VendoredFile = VendoredFile {
    name: "fbnet/archs.csv.gz",
    bytes: include_bytes!("../../data/fbnet/archs.csv.gz"),
};

/// A vendored file: its name (as in `data/`) and its bytes.
#[derive(Debug, Clone, Copy)]
pub struct VendoredFile {
    /// Path under `data/`.
    pub name: &'static str,
    /// Raw bytes; gzipped when the name ends in `.gz`.
    pub bytes: &'static [u8],
}

impl VendoredFile {
    /// The file's text, decompressed when gzipped.
    pub fn text(&self) -> Result<String> {
        decode(self.name, self.bytes)
    }
}

/// Decodes a possibly gzipped UTF-8 file.
pub(crate) fn decode(name: &str, bytes: &[u8]) -> Result<String> {
    let mut text = String::new();
    let io = |source| SpaceError::Io {
        path: name.to_string(),
        source,
    };
    if name.ends_with(".gz") {
        GzDecoder::new(bytes)
            .read_to_string(&mut text)
            .map_err(io)?;
    } else {
        text = String::from_utf8(bytes.to_vec()).map_err(|e| SpaceError::Table {
            file: name.to_string(),
            line: 0,
            reason: format!("not UTF-8: {e}"),
        })?;
    }
    Ok(text)
}

/// Parses every record of a vendored CSV file with `parse`; `None` when the
/// file cannot be read or any record fails (a corrupt build).
pub(crate) fn parse_records<T>(
    file: VendoredFile,
    parse: impl Fn(&csv::StringRecord) -> Option<T>,
) -> Vec<T> {
    let Ok(text) = file.text() else {
        return Vec::new();
    };
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let parsed: Option<Vec<T>> = reader
        .records()
        .map(|r| r.ok().as_ref().and_then(&parse))
        .collect();
    parsed.unwrap_or_default()
}

/// The vendored tables (feature `embedded-data`).
#[cfg(feature = "embedded-data")]
pub mod tables {
    use super::VendoredFile;

    macro_rules! vendored {
        ($ident:ident, $name:literal) => {
            #[doc = concat!("`data/", $name, "`")]
            pub const $ident: VendoredFile = VendoredFile {
                name: $name,
                bytes: include_bytes!(concat!("../../data/", $name)),
            };
        };
    }

    vendored!(NB201_LATENCY, "nb201/latency.csv.gz");
    vendored!(NB201_ACCURACY, "nb201/accuracy.csv.gz");
    vendored!(NB201_ZCP, "nb201/zcp.csv.gz");
    vendored!(NB201_ZCP_SUBSET, "nb201/zcp_subset.csv.gz");
    vendored!(NB201_METAD2A, "nb201/metad2a_archs.txt.gz");
    vendored!(FBNET_LATENCY, "fbnet/latency.csv.gz");
    vendored!(FBNET_ZCP, "fbnet/zcp.csv.gz");
    vendored!(DEVICES, "devices.csv.gz");
    vendored!(TASKS, "tasks.json");
    vendored!(HELP_REFERENCE_ARCHS, "help_reference_archs.json");
    vendored!(PROVENANCE, "provenance.json");
}

//! Cached encodings (Arch2Vec, CATE) as [`Encoding`]s, read through the
//! format's owner, [`nasflat_encoders::cache`]: the shipped files compiled
//! into the build, or a folder of retrained ones.

use nasflat_encoders::cache::EncodingTable;
pub use nasflat_encoders::cache::{DIR_ENV, EncodingsSource};
use nasflat_shared::SearchSpace;

use super::Encoding;
use crate::error::{PredictorError, Result};

/// The encoding `<space>_<name>` of `source`, versioned by its sidecar
/// (`unversioned` without one); `None` when the source has no such table,
/// an error naming the file when it is malformed.
pub fn read_optional(
    source: &EncodingsSource,
    space: SearchSpace,
    name: &str,
) -> Result<Option<Encoding>> {
    let Some(text) = source.table_text(space, name).map_err(file_error)? else {
        return Ok(None);
    };
    let table = EncodingTable::parse(&text.origin, &text.text).map_err(file_error)?;
    let version = source
        .meta(space, name)
        .map_err(file_error)?
        .map_or_else(|| "unversioned".to_string(), |m| m.version);
    let values = table.rows.iter().flatten().map(|&v| v as f32).collect();
    Encoding::new(name, version, space, table.columns, values).map(Some)
}

/// An encodings file that could not be read or parsed.
pub(crate) fn file_error(e: nasflat_encoders::EncodeError) -> PredictorError {
    PredictorError::input("encoding file", "a readable encodings table", e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_retrained_file_reads_with_its_sidecar_version() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("fbnet_cate.csv"),
            "index,e0,e1\n0,0.5,-2\n1,3,1e-3\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("fbnet_cate.json"),
            r#"{"name":"cate","space":"fbnet","version":"v3","seed":7}"#,
        )
        .unwrap();
        let source = EncodingsSource::Dir(dir.path().to_path_buf());
        let enc = read_optional(&source, SearchSpace::Fbnet, "cate")
            .unwrap()
            .unwrap();
        assert_eq!((enc.version.as_str(), enc.rows(), enc.dim()), ("v3", 2, 2));
        assert_eq!(enc.row(1), &[3.0, 1e-3]);
        assert!(
            read_optional(&source, SearchSpace::Nb201, "cate")
                .unwrap()
                .is_none()
        );
        std::fs::write(dir.path().join("fbnet_cate.csv"), "index,e0\n0,1\n1,\n").unwrap();
        let err = read_optional(&source, SearchSpace::Fbnet, "cate")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("fbnet_cate.csv: row 1 column `e0` is empty"),
            "{err}"
        );
    }

    #[test]
    fn the_shipped_files_load() {
        for (space, rows) in [(SearchSpace::Nb201, 15_625), (SearchSpace::Fbnet, 5_000)] {
            for name in ["arch2vec", "cate"] {
                let enc = read_optional(&EncodingsSource::Shipped, space, name)
                    .unwrap()
                    .unwrap();
                assert_eq!(enc.dim(), 32, "{space} {name}");
                assert_eq!(enc.rows(), rows, "{space} {name}");
            }
        }
    }
}

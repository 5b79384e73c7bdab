//! Cached encodings on disk, so users need not retrain Arch2Vec or CATE.
//!
//! Format (one encoding of one space, in the encodings folder):
//! - `<space>_<name>.csv.gz` (or plain `.csv`): header `index,<col>,<col>,...`
//!   (learned embeddings use `e0,e1,...`), one row per architecture in index
//!   order 0..n, every cell a number.
//! - `<space>_<name>.json` (sidecar, optional): `{"name", "space",
//!   "version", ...}`; any other fields (seed, training seconds, tool) are
//!   kept but not interpreted. Without a sidecar the version is `unversioned`.
//!
//! The folder is `$NASFLAT_ENCODINGS_DIR`, else `data/encodings` under the
//! working directory, else the repository's `data/encodings` of this build.

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use nasflat_shared::SearchSpace;
use nasflat_shared::data::NumericTable;
use serde::{Deserialize, Serialize};

use super::Encoding;
use crate::error::{PredictorError, Result};

/// Environment variable naming the encodings folder.
pub const DIR_ENV: &str = "NASFLAT_ENCODINGS_DIR";

/// Sidecar metadata of a cached encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheMeta {
    /// Encoding name.
    pub name: String,
    /// Space of the rows.
    pub space: SearchSpace,
    /// Version of the values (the encoder writes a number, which reads as
    /// its decimal string).
    #[serde(deserialize_with = "string_or_number")]
    pub version: String,
    /// Anything else the producer recorded.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// `<space>_<name>.csv.gz`.
pub fn file_name(space: &str, name: &str) -> String {
    format!("{space}_{name}.csv.gz")
}

/// `<space>_<name>.csv.gz` in `dir`, else the uncompressed `.csv` (what a
/// user who edited the table by hand leaves), else `None`.
pub fn find_table(dir: &Path, space: SearchSpace, name: &str) -> Option<PathBuf> {
    let gz = dir.join(file_name(space.name(), name));
    let plain = dir.join(format!("{}_{name}.csv", space.name()));
    [gz, plain].into_iter().find(|p| p.is_file())
}

/// The encodings folder to use when none is given (see the module doc).
pub fn default_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os(DIR_ENV) {
        return Some(PathBuf::from(d));
    }
    let local = PathBuf::from("data/encodings");
    if local.is_dir() {
        return Some(local);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/encodings");
    repo.is_dir().then_some(repo)
}

/// Reads `<dir>/<space>_<name>.csv.gz` (or `.csv`) with its sidecar; `None`
/// when neither file exists, an error when one exists but is malformed.
pub fn read_optional(dir: &Path, space: SearchSpace, name: &str) -> Result<Option<Encoding>> {
    let Some((table, version, shown)) = read_table_optional(dir, space, name)? else {
        return Ok(None);
    };
    let columns: Vec<String> = table.names().to_vec();
    let mut values = Vec::with_capacity(table.rows() * columns.len());
    for r in 0..table.rows() {
        for c in 0..columns.len() {
            values.push(cell(&table, c, r, &shown)? as f32);
        }
    }
    Encoding::new(name, version, space, columns, values).map(Some)
}

/// One cell that must be present.
pub(crate) fn cell(table: &NumericTable, c: usize, r: usize, shown: &str) -> Result<f64> {
    table.get(c, r).ok_or_else(|| {
        PredictorError::input(
            "encoding file",
            format!("{shown}: a value in every cell"),
            format!("row {r} column `{}` empty", table.names()[c]),
        )
    })
}

/// The raw table (f64, so proxies like synflow ~1e35 keep their precision),
/// its version and its path for messages; `None` when the file is absent.
pub fn read_table_optional(
    dir: &Path,
    space: SearchSpace,
    name: &str,
) -> Result<Option<(NumericTable, String, String)>> {
    let Some(path) = find_table(dir, space, name) else {
        return Ok(None);
    };
    let shown = path.display().to_string();
    let table = NumericTable::from_path(&path)?;
    if table.names().is_empty() {
        return Err(PredictorError::input(
            "encoding file",
            format!("{shown}: columns after `index`"),
            "none",
        ));
    }
    let sidecar = dir.join(format!("{}_{name}.json", space.name()));
    let version = if sidecar.is_file() {
        let meta = read_meta(&sidecar)?;
        if meta.space != space || meta.name != name {
            return Err(PredictorError::input(
                "encoding file",
                format!("{}: `{name}` of {space}", sidecar.display()),
                format!("`{}` of {}", meta.name, meta.space),
            ));
        }
        meta.version
    } else {
        "unversioned".to_string()
    };
    Ok(Some((table, version, shown)))
}

/// A JSON string, or a number taken as its decimal text.
fn string_or_number<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "version must be a string or a number, not {other}"
        ))),
    }
}

fn read_meta(path: &Path) -> Result<CacheMeta> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| PredictorError::Io {
        path: shown.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| PredictorError::Json {
        what: shown,
        source,
    })
}

/// Writes an encoding and its sidecar into `dir` (created if needed); returns
/// the CSV path. `extra` goes into the sidecar beside name/space/version.
pub fn write(
    dir: &Path,
    encoding: &Encoding,
    extra: serde_json::Map<String, serde_json::Value>,
) -> Result<PathBuf> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| PredictorError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let space = encoding.space.name();
    let path = dir.join(file_name(space, &encoding.name));
    let mut text = String::from("index");
    for c in &encoding.columns {
        text.push(',');
        text.push_str(c);
    }
    text.push('\n');
    for r in 0..encoding.rows() {
        text.push_str(&r.to_string());
        for v in encoding.row(r) {
            text.push(',');
            text.push_str(&v.to_string());
        }
        text.push('\n');
    }
    let file = std::fs::File::create(&path).map_err(io(&path))?;
    let mut gz = GzEncoder::new(file, Compression::default());
    gz.write_all(text.as_bytes()).map_err(io(&path))?;
    gz.finish().map_err(io(&path))?;
    let meta = CacheMeta {
        name: encoding.name.clone(),
        space: encoding.space,
        version: encoding.version.clone(),
        extra,
    };
    let sidecar = dir.join(format!("{space}_{}.json", encoding.name));
    let json = serde_json::to_string_pretty(&meta).map_err(|source| PredictorError::Json {
        what: sidecar.display().to_string(),
        source,
    })?;
    std::fs::write(&sidecar, json + "\n").map_err(io(&sidecar))?;
    Ok(path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_values_and_version() {
        let dir = tempfile::tempdir().unwrap();
        let enc = Encoding::new(
            "cate",
            "v3",
            SearchSpace::Fbnet,
            vec!["e0".into(), "e1".into()],
            vec![0.1, -2.5e-7, 3.0, 1.0 / 3.0],
        )
        .unwrap();
        let mut extra = serde_json::Map::new();
        extra.insert("seed".into(), 7.into());
        write(dir.path(), &enc, extra).unwrap();
        let back = read_optional(dir.path(), SearchSpace::Fbnet, "cate")
            .unwrap()
            .unwrap();
        assert_eq!(back, enc);
        assert!(
            read_optional(dir.path(), SearchSpace::Nb201, "cate")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn empty_cell_and_wrong_sidecar_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nb201_cate.csv"), "index,e0\n0,1\n1,\n").unwrap();
        let err = read_optional(dir.path(), SearchSpace::Nb201, "cate")
            .unwrap_err()
            .to_string();
        assert!(err.contains("got row 1 column `e0` empty"), "{err}");
        std::fs::write(dir.path().join("nb201_cate.csv"), "index,e0\n0,1\n1,2\n").unwrap();
        std::fs::write(
            dir.path().join("nb201_cate.json"),
            r#"{"name":"arch2vec","space":"nb201","version":"1"}"#,
        )
        .unwrap();
        let err = read_optional(dir.path(), SearchSpace::Nb201, "cate")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`cate` of nb201, got"), "{err}");
    }

    #[test]
    fn numeric_sidecar_version_as_the_encoder_writes_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nb201_cate.csv"), "index,e0\n0,1\n1,2\n").unwrap();
        std::fs::write(
            dir.path().join("nb201_cate.json"),
            r#"{"name":"cate","space":"nb201","dim":1,"version":1,"seed":0}"#,
        )
        .unwrap();
        let enc = read_optional(dir.path(), SearchSpace::Nb201, "cate")
            .unwrap()
            .unwrap();
        assert_eq!(enc.version, "1");
        std::fs::write(
            dir.path().join("nb201_cate.json"),
            r#"{"name":"cate","space":"nb201","version":[1]}"#,
        )
        .unwrap();
        let err = read_optional(dir.path(), SearchSpace::Nb201, "cate")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("version must be a string or a number"),
            "{err}"
        );
    }

    #[test]
    fn the_shipped_sidecars_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/encodings");
        for space in [SearchSpace::Nb201, SearchSpace::Fbnet] {
            for name in ["arch2vec", "cate"] {
                let enc = read_optional(&dir, space, name).unwrap().unwrap();
                assert_eq!(enc.dim(), 32, "{space} {name}");
            }
        }
    }
}

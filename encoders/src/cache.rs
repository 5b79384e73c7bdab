//! The one owner of the cached-encoding file format (`data/encodings/`):
//! this crate writes the files, the predictor reads them through here.
//!
//! One encoding of one space is two files:
//! - `<space>_<name>.csv.gz` (or plain `.csv`, what a user who edited the
//!   table by hand leaves): header `index,<col>,<col>,...` (learned
//!   embeddings: `index,e0,e1,...`), one row per architecture index of the
//!   space in order `0..n`, every cell a number;
//! - `<space>_<name>.json`, the optional sidecar ([`EncodingMeta`]).
//!
//! The shipped files are compiled in ([`EncodingsSource::Shipped`]), so an
//! installed or copied binary has them; retrained files are read from a
//! folder named explicitly ([`EncodingsSource::Dir`]: `--encodings-dir` or
//! [`DIR_ENV`]). No path of the source tree is looked at run time.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use nasflat_shared::SearchSpace;
use serde::{Deserialize, Serialize};

use crate::error::{EncodeError, Result};

/// Format version of the learned encodings; bump when training changes
/// so that stale caches are recognisable.
pub const ENCODING_VERSION: u32 = 1;

/// Environment variable naming a folder of retrained encodings.
pub const DIR_ENV: &str = "NASFLAT_ENCODINGS_DIR";

/// Sidecar of a cached encoding: what the reader checks (name, space) and
/// keys caches on (version), plus whatever the producer recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncodingMeta {
    /// Encoding name (`arch2vec`, `cate`).
    pub name: String,
    /// Space of the rows.
    pub space: SearchSpace,
    /// Version of the values: it becomes part of the encoding's version, so
    /// any change of values must change it. JSON may hold a string or a
    /// number (older files and [`ENCODING_VERSION`]), read as its text.
    #[serde(deserialize_with = "string_or_number")]
    pub version: String,
    /// How the file was made (width, seed, training seconds, command): kept
    /// for people, not interpreted.
    #[serde(flatten)]
    pub made_by: serde_json::Map<String, serde_json::Value>,
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

/// `<space>_<name>.csv.gz`.
pub fn file_name(space: SearchSpace, name: &str) -> String {
    format!("{space}_{name}.csv.gz")
}

/// `<space>_<name>.json`.
pub fn sidecar_name(space: SearchSpace, name: &str) -> String {
    format!("{space}_{name}.json")
}

/// `(<dir>/<space>_<name>.csv.gz, <dir>/<space>_<name>.json)`.
pub fn cache_paths(dir: &Path, space: SearchSpace, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(file_name(space, name)),
        dir.join(sidecar_name(space, name)),
    )
}

macro_rules! shipped {
    ($name:literal) => {
        (
            $name,
            include_bytes!(concat!("../../data/encodings/", $name)),
        )
    };
}

/// The files of `data/encodings/` this build was made with.
const SHIPPED: [(&str, &[u8]); 10] = [
    shipped!("nb201_arch2vec.csv.gz"),
    shipped!("nb201_arch2vec.json"),
    shipped!("nb201_cate.csv.gz"),
    shipped!("nb201_cate.json"),
    shipped!("nb201_zcp_computed.csv.gz"),
    shipped!("nb201_zcp_computed.json"),
    shipped!("fbnet_arch2vec.csv.gz"),
    shipped!("fbnet_arch2vec.json"),
    shipped!("fbnet_cate.csv.gz"),
    shipped!("fbnet_cate.json"),
];

/// Where cached encodings are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodingsSource {
    /// The files of `data/encodings/` compiled into this build.
    Shipped,
    /// A folder of retrained files; only this folder is read, so a file
    /// missing there is an error naming it when it is needed, never a
    /// silent fall-back to the shipped one.
    Dir(PathBuf),
}

/// One cached file as read: its bytes' text and where it came from.
#[derive(Debug, Clone)]
pub struct CachedText {
    /// Path, or `shipped:<file>` for a compiled-in file (for messages).
    pub origin: String,
    /// The text, gunzipped.
    pub text: String,
}

impl EncodingsSource {
    /// `explicit` when given, else [`DIR_ENV`] when set, else the shipped files.
    pub fn resolve(explicit: Option<&Path>) -> Self {
        match explicit {
            Some(dir) => EncodingsSource::Dir(dir.to_path_buf()),
            None => std::env::var_os(DIR_ENV)
                .map_or(EncodingsSource::Shipped, |d| EncodingsSource::Dir(d.into())),
        }
    }

    /// Where `<space>_<name>.csv.gz` is (or would be), for messages.
    pub fn location(&self, space: SearchSpace, name: &str) -> String {
        self.origin_of(&file_name(space, name))
    }

    fn origin_of(&self, file: &str) -> String {
        match self {
            EncodingsSource::Shipped => format!("shipped:{file}"),
            EncodingsSource::Dir(dir) => dir.join(file).display().to_string(),
        }
    }

    /// The table `<space>_<name>.csv.gz` (else `.csv` in a folder);
    /// `None` when the source has neither.
    pub fn table_text(&self, space: SearchSpace, name: &str) -> Result<Option<CachedText>> {
        let gz = file_name(space, name);
        if let Some(found) = self.text(&gz)? {
            return Ok(Some(found));
        }
        match self {
            EncodingsSource::Shipped => Ok(None),
            EncodingsSource::Dir(_) => self.text(&format!("{space}_{name}.csv")),
        }
    }

    /// The sidecar's raw bytes; `None` when there is none.
    pub fn sidecar_bytes(&self, space: SearchSpace, name: &str) -> Result<Option<Vec<u8>>> {
        let file = sidecar_name(space, name);
        match self {
            EncodingsSource::Shipped => Ok(shipped_bytes(&file).map(<[u8]>::to_vec)),
            EncodingsSource::Dir(dir) => {
                let path = dir.join(&file);
                if !path.is_file() {
                    return Ok(None);
                }
                std::fs::read(&path)
                    .map(Some)
                    .map_err(|e| EncodeError::io(&path, e))
            }
        }
    }

    /// The sidecar, checked to describe `name` of `space`; `None` when absent.
    pub fn meta(&self, space: SearchSpace, name: &str) -> Result<Option<EncodingMeta>> {
        let Some(bytes) = self.sidecar_bytes(space, name)? else {
            return Ok(None);
        };
        let origin = self.origin_of(&sidecar_name(space, name));
        let meta: EncodingMeta =
            serde_json::from_slice(&bytes).map_err(|e| EncodeError::Format {
                path: origin.clone(),
                reason: e.to_string(),
            })?;
        if meta.space != space || meta.name != name {
            return Err(EncodeError::Format {
                path: origin,
                reason: format!(
                    "describes `{}` of {}, expected `{name}` of {space}",
                    meta.name, meta.space
                ),
            });
        }
        Ok(Some(meta))
    }

    fn text(&self, file: &str) -> Result<Option<CachedText>> {
        let origin = self.origin_of(file);
        let text = match self {
            EncodingsSource::Shipped => match shipped_bytes(file) {
                Some(bytes) => decode(&origin, file, bytes)?,
                None => return Ok(None),
            },
            EncodingsSource::Dir(dir) => {
                let path = dir.join(file);
                if !path.is_file() {
                    return Ok(None);
                }
                read_text(&path)?
            }
        };
        Ok(Some(CachedText { origin, text }))
    }
}

fn shipped_bytes(file: &str) -> Option<&'static [u8]> {
    SHIPPED.iter().find(|(n, _)| *n == file).map(|(_, b)| *b)
}

/// UTF-8 text of `bytes`, gunzipped when `file` ends in `.gz`.
fn decode(origin: &str, file: &str, bytes: &[u8]) -> Result<String> {
    let mut text = String::new();
    let io = |source| EncodeError::Io {
        path: origin.to_string(),
        source,
    };
    if file.ends_with(".gz") {
        GzDecoder::new(bytes)
            .read_to_string(&mut text)
            .map_err(io)?;
    } else {
        text = String::from_utf8(bytes.to_vec()).map_err(|e| EncodeError::Format {
            path: origin.to_string(),
            reason: format!("not UTF-8: {e}"),
        })?;
    }
    Ok(text)
}

/// A dense encoding table: column names and one row per architecture.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodingTable {
    /// Column names after `index`.
    pub columns: Vec<String>,
    /// Row `r` is architecture `r`; f64 so that proxies like synflow
    /// (~1e35) keep their precision.
    pub rows: Vec<Vec<f64>>,
}

impl EncodingTable {
    /// Parses the CSV text of a table (`origin` names it in errors): header
    /// `index,<col>,...`, indices `0, 1, ...` in order, no empty cell.
    pub fn parse(origin: &str, text: &str) -> Result<Self> {
        let bad = |reason: String| EncodeError::Format {
            path: origin.to_string(),
            reason,
        };
        let mut lines = text.lines();
        let header = lines.next().ok_or_else(|| bad("empty file".into()))?;
        let columns: Vec<String> = match header.split(',').collect::<Vec<_>>().split_first() {
            Some((&"index", cols)) if !cols.is_empty() => {
                cols.iter().map(|c| c.to_string()).collect()
            }
            _ => return Err(bad("header must be `index,<column>,...`".into())),
        };
        let mut rows = Vec::new();
        for (r, line) in lines.enumerate() {
            let mut cells = line.split(',');
            if cells.next().and_then(|c| c.parse::<usize>().ok()) != Some(r) {
                return Err(bad(format!("line {}: index must be {r}", r + 2)));
            }
            let row = parse_row(&columns, r, cells).map_err(bad)?;
            rows.push(row);
        }
        Ok(EncodingTable { columns, rows })
    }
}

/// The numbers of row `r` after its index, one per column.
fn parse_row<'a>(
    columns: &[String],
    r: usize,
    cells: impl Iterator<Item = &'a str>,
) -> std::result::Result<Vec<f64>, String> {
    let cells: Vec<&str> = cells.collect();
    if cells.len() != columns.len() {
        return Err(format!(
            "line {}: {} values, header has {}",
            r + 2,
            cells.len(),
            columns.len()
        ));
    }
    cells
        .iter()
        .zip(columns)
        .map(|(cell, column)| match cell.trim() {
            "" => Err(format!("row {r} column `{column}` is empty")),
            v => v
                .parse::<f64>()
                .map_err(|e| format!("row {r} column `{column}`: {e}")),
        })
        .collect()
}

/// Compact text of one value: 4 decimals, trailing zeros dropped. The
/// embeddings are O(1) and the samplers only compare them, so 1e-4 is
/// plenty and keeps the shipped files small.
fn short(v: f32) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" || s.is_empty() {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// Writes the embeddings and the sidecar into `dir`; returns the CSV path.
pub fn write_embeddings(dir: &Path, rows: &[Vec<f32>], meta: &EncodingMeta) -> Result<PathBuf> {
    let dim = rows.first().map_or(0, Vec::len);
    if let Some(bad) = rows.iter().position(|r| r.len() != dim || dim == 0) {
        return Err(EncodeError::Invalid {
            what: "embedding rows",
            reason: format!(
                "row {bad} has {} values, expected {dim} > 0",
                rows[bad].len()
            ),
        });
    }
    std::fs::create_dir_all(dir).map_err(|e| EncodeError::io(dir, e))?;
    let (csv_path, json_path) = cache_paths(dir, meta.space, &meta.name);
    let file = File::create(&csv_path).map_err(|e| EncodeError::io(&csv_path, e))?;
    let mut out = BufWriter::new(GzEncoder::new(file, Compression::best()));
    let header: Vec<String> = (0..dim).map(|d| format!("e{d}")).collect();
    let mut text = format!("index,{}\n", header.join(","));
    for (i, row) in rows.iter().enumerate() {
        text.push_str(&i.to_string());
        for &v in row {
            text.push(',');
            text.push_str(&short(v));
        }
        text.push('\n');
    }
    out.write_all(text.as_bytes())
        .map_err(|e| EncodeError::io(&csv_path, e))?;
    let encoder = out
        .into_inner()
        .map_err(|e| EncodeError::io(&csv_path, e.into_error()))?;
    encoder
        .finish()
        .map_err(|e| EncodeError::io(&csv_path, e))?;
    let json = serde_json::to_string_pretty(meta).map_err(|e| EncodeError::Invalid {
        what: "sidecar",
        reason: e.to_string(),
    })?;
    std::fs::write(&json_path, json + "\n").map_err(|e| EncodeError::io(&json_path, e))?;
    Ok(csv_path)
}

/// The whole text of a file, gunzipped when its name ends in `.gz`.
pub fn read_text(path: &Path) -> Result<String> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| EncodeError::io(path, e))?;
    let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
    decode(
        &path.display().to_string(),
        file.as_deref().unwrap_or(""),
        &bytes,
    )
}

/// Gzips `text` into `path`.
pub fn write_gz(path: &Path, text: &str) -> Result<()> {
    let file = File::create(path).map_err(|e| EncodeError::io(path, e))?;
    let mut encoder = GzEncoder::new(file, Compression::best());
    encoder
        .write_all(text.as_bytes())
        .map_err(|e| EncodeError::io(path, e))?;
    encoder.finish().map_err(|e| EncodeError::io(path, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy_meta() -> EncodingMeta {
        let mut made_by = serde_json::Map::new();
        made_by.insert("seed".into(), 3.into());
        EncodingMeta {
            name: "toy".into(),
            space: SearchSpace::Nb201,
            version: ENCODING_VERSION.to_string(),
            made_by,
        }
    }

    fn read(source: &EncodingsSource, name: &str) -> Result<Option<EncodingTable>> {
        source
            .table_text(SearchSpace::Nb201, name)?
            .map(|t| EncodingTable::parse(&t.origin, &t.text))
            .transpose()
    }

    #[test]
    fn round_trip_keeps_rows_and_rejects_ragged() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![vec![0.5, -1.25], vec![0.0, 3.0]];
        let path = write_embeddings(dir.path(), &rows, &toy_meta()).unwrap();
        assert!(path.ends_with("nb201_toy.csv.gz"));
        let source = EncodingsSource::Dir(dir.path().to_path_buf());
        let back = read(&source, "toy").unwrap().unwrap();
        assert_eq!(back.rows, vec![vec![0.5, -1.25], vec![0.0, 3.0]]);
        assert_eq!(back.columns, vec!["e0", "e1"]);
        let meta = source.meta(SearchSpace::Nb201, "toy").unwrap().unwrap();
        assert_eq!(meta, toy_meta());
        assert!(read(&source, "other").unwrap().is_none());
        let ragged = vec![vec![0.5], vec![0.0, 3.0]];
        assert!(write_embeddings(dir.path(), &ragged, &toy_meta()).is_err());
    }

    #[test]
    fn empty_cell_gap_in_index_and_wrong_sidecar_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let source = EncodingsSource::Dir(dir.path().to_path_buf());
        std::fs::write(dir.path().join("nb201_cate.csv"), "index,e0\n0,1\n1,\n").unwrap();
        let err = read(&source, "cate").unwrap_err().to_string();
        assert!(err.contains("row 1 column `e0` is empty"), "{err}");
        std::fs::write(dir.path().join("nb201_cate.csv"), "index,e0\n0,1\n2,2\n").unwrap();
        let err = read(&source, "cate").unwrap_err().to_string();
        assert!(err.contains("line 3: index must be 1"), "{err}");
        std::fs::write(
            dir.path().join("nb201_cate.json"),
            r#"{"name":"arch2vec","space":"nb201","version":"1"}"#,
        )
        .unwrap();
        let err = source
            .meta(SearchSpace::Nb201, "cate")
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected `cate` of nb201"), "{err}");
    }

    #[test]
    fn sidecar_version_is_a_string_or_a_number() {
        let dir = tempfile::tempdir().unwrap();
        let source = EncodingsSource::Dir(dir.path().to_path_buf());
        let sidecar = dir.path().join("nb201_cate.json");
        std::fs::write(
            &sidecar,
            r#"{"name":"cate","space":"nb201","dim":1,"version":1,"seed":0}"#,
        )
        .unwrap();
        let meta = source.meta(SearchSpace::Nb201, "cate").unwrap().unwrap();
        assert_eq!(meta.version, "1");
        assert_eq!(meta.made_by.get("dim"), Some(&1.into()));
        std::fs::write(&sidecar, r#"{"name":"cate","space":"nb201","version":[1]}"#).unwrap();
        let err = source
            .meta(SearchSpace::Nb201, "cate")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("version must be a string or a number"),
            "{err}"
        );
    }

    #[test]
    fn shipped_files_are_compiled_in_and_a_folder_is_read_alone() {
        let shipped = EncodingsSource::Shipped;
        let table = read(&shipped, "cate").unwrap().unwrap();
        assert_eq!(table.rows.len(), nasflat_shared::NB201_SIZE);
        assert_eq!(
            shipped.location(SearchSpace::Fbnet, "cate"),
            "shipped:fbnet_cate.csv.gz"
        );
        let meta = shipped
            .meta(SearchSpace::Fbnet, "arch2vec")
            .unwrap()
            .unwrap();
        assert_eq!(meta.version, ENCODING_VERSION.to_string());
        // An explicit folder does not fall back to the shipped files.
        let empty = tempfile::tempdir().unwrap();
        let dir = EncodingsSource::resolve(Some(empty.path()));
        assert!(read(&dir, "cate").unwrap().is_none());
        assert!(dir.meta(SearchSpace::Nb201, "cate").unwrap().is_none());
    }
}

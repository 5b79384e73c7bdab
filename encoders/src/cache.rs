//! The cached-embedding format the samplers and the predictor read:
//! `<dir>/<space>_<name>.csv.gz` (gzipped CSV, header `index,e0,e1,...`,
//! one row per architecture index of the space, in order) with a sidecar
//! `<dir>/<space>_<name>.json` saying how it was made.

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

/// Sidecar of a cached encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncodingMeta {
    /// Encoder name (`arch2vec`, `cate`).
    pub name: String,
    /// Space name (`nb201`, `fbnet`).
    pub space: String,
    /// Embedding width.
    pub dim: usize,
    /// [`ENCODING_VERSION`] at the time of writing.
    pub version: u32,
    /// Seed of the training run.
    pub seed: u64,
    /// Wall-clock training time.
    pub train_seconds: f64,
    /// The command that regenerates the file.
    pub command: String,
}

/// `(<dir>/<space>_<name>.csv.gz, <dir>/<space>_<name>.json)`.
pub fn cache_paths(dir: &Path, space: SearchSpace, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{space}_{name}.csv.gz")),
        dir.join(format!("{space}_{name}.json")),
    )
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

/// Writes the embeddings and the sidecar; returns the CSV path.
pub fn write_embeddings(dir: &Path, rows: &[Vec<f32>], meta: &EncodingMeta) -> Result<PathBuf> {
    let space: SearchSpace = meta.space.parse()?;
    if let Some(bad) = rows.iter().position(|r| r.len() != meta.dim) {
        return Err(EncodeError::Invalid {
            what: "embedding rows",
            reason: format!(
                "row {bad} has {} values, expected {}",
                rows[bad].len(),
                meta.dim
            ),
        });
    }
    std::fs::create_dir_all(dir).map_err(|e| EncodeError::io(dir, e))?;
    let (csv_path, json_path) = cache_paths(dir, space, &meta.name);
    let file = File::create(&csv_path).map_err(|e| EncodeError::io(&csv_path, e))?;
    let mut out = BufWriter::new(GzEncoder::new(file, Compression::best()));
    let header: Vec<String> = (0..meta.dim).map(|d| format!("e{d}")).collect();
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

/// Reads a gzipped (or plain) CSV whose first column is `index` (0, 1, ...
/// in order) and the rest numbers; returns the rows without the index.
pub fn read_embeddings(path: &Path) -> Result<Vec<Vec<f64>>> {
    let text = read_text(path)?;
    let mut lines = text.lines();
    let header = lines
        .next()
        .ok_or_else(|| EncodeError::format(path, "empty file"))?;
    let width = header.split(',').count();
    if !header.starts_with("index,") || width < 2 {
        return Err(EncodeError::format(path, "header must be `index,e0,...`"));
    }
    let mut rows = Vec::new();
    for (row, line) in lines.enumerate() {
        let mut cells = line.split(',');
        let index: Option<usize> = cells.next().and_then(|c| c.parse().ok());
        if index != Some(row) {
            return Err(EncodeError::format(
                path,
                format!("line {}: index must be {row}", row + 2),
            ));
        }
        let values: Vec<f64> = cells
            .map(|c| c.parse::<f64>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| EncodeError::format(path, format!("line {}: {e}", row + 2)))?;
        if values.len() + 1 != width {
            return Err(EncodeError::format(
                path,
                format!(
                    "line {}: {} values, header has {}",
                    row + 2,
                    values.len(),
                    width - 1
                ),
            ));
        }
        rows.push(values);
    }
    Ok(rows)
}

/// Reads a sidecar.
pub fn read_meta(path: &Path) -> Result<EncodingMeta> {
    let text = std::fs::read_to_string(path).map_err(|e| EncodeError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| EncodeError::format(path, e.to_string()))
}

/// The whole text of a file, gunzipped when its name ends in `.gz`.
pub fn read_text(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| EncodeError::io(path, e))?;
    let mut text = String::new();
    if path.extension().is_some_and(|e| e == "gz") {
        GzDecoder::new(file)
            .read_to_string(&mut text)
            .map_err(|e| EncodeError::io(path, e))?;
    } else {
        file.read_to_string(&mut text)
            .map_err(|e| EncodeError::io(path, e))?;
    }
    Ok(text)
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

    #[test]
    fn round_trip_keeps_rows_and_rejects_ragged() {
        let dir = tempfile::tempdir().unwrap();
        let meta = EncodingMeta {
            name: "toy".into(),
            space: "nb201".into(),
            dim: 2,
            version: ENCODING_VERSION,
            seed: 3,
            train_seconds: 0.5,
            command: "x".into(),
        };
        let rows = vec![vec![0.5, -1.25], vec![0.0, 3.0]];
        let path = write_embeddings(dir.path(), &rows, &meta).unwrap();
        assert!(path.ends_with("nb201_toy.csv.gz"));
        let back = read_embeddings(&path).unwrap();
        assert_eq!(back, vec![vec![0.5, -1.25], vec![0.0, 3.0]]);
        assert_eq!(read_meta(&dir.path().join("nb201_toy.json")).unwrap(), meta);
        let ragged = vec![vec![0.5], vec![0.0, 3.0]];
        assert!(write_embeddings(dir.path(), &ragged, &meta).is_err());
    }
}

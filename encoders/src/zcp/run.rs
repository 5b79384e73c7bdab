//! A resumable proxy run over many NB201 architectures.
//!
//! Results are appended, one line per architecture and flushed at once, to
//! a plain CSV (`index,<proxies>,seconds`); a restarted run reads the file,
//! drops a torn last line, and skips every index already there. A sidecar
//! JSON pins the settings, so a resume with other settings is refused
//! instead of mixing incomparable values.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use nasflat_shared::Nb201Arch;
use serde::{Deserialize, Serialize};

use super::proxies::{PROXY_NAMES, ProxyScores, SyntheticBatch, ZcpConfig, score_arch};
use crate::cache::{read_text, write_gz};
use crate::error::{EncodeError, Result};
use crate::training::progress;
use nasflat_shared::stats::spearman;

/// Settings recorded beside a run's CSV.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZcpRunMeta {
    /// Always `zcp`.
    pub name: String,
    /// Always `nb201`.
    pub space: String,
    /// Proxy columns.
    pub proxies: Vec<String>,
    /// Synthetic batch size.
    pub batch: usize,
    /// Classes of the classifier.
    pub classes: usize,
    /// Input side.
    pub resolution: usize,
    /// Seed of the batch and weights.
    pub seed: u64,
    /// Whether GraSP was computed.
    pub grasp: bool,
    /// GraSP's relative finite-difference step.
    pub grasp_step: f64,
}

impl ZcpRunMeta {
    /// The metadata of `config`.
    pub fn of(config: &ZcpConfig) -> Self {
        ZcpRunMeta {
            name: "zcp".into(),
            space: "nb201".into(),
            proxies: PROXY_NAMES.iter().map(|s| s.to_string()).collect(),
            batch: config.batch,
            classes: config.classes,
            resolution: config.resolution,
            seed: config.seed,
            grasp: config.grasp,
            grasp_step: config.grasp_step,
        }
    }
}

/// One scored architecture.
#[derive(Debug, Clone, PartialEq)]
pub struct ZcpRow {
    /// Proxy values, NaN where undefined.
    pub scores: ProxyScores,
    /// Seconds this architecture took.
    pub seconds: f64,
}

/// What a call to [`run_zcp`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct ZcpRunSummary {
    /// Architectures scored in this call.
    pub computed: usize,
    /// Requested architectures already in the file.
    pub skipped: usize,
    /// Architectures in the file now.
    pub total_done: usize,
    /// Mean seconds per architecture scored in this call.
    pub seconds_per_arch: f64,
}

fn header() -> String {
    format!("index,{},seconds", PROXY_NAMES.join(","))
}

/// The sidecar path of a run CSV (`x.csv` -> `x.json`).
pub fn meta_path(csv: &Path) -> PathBuf {
    csv.with_extension("json")
}

fn number(v: f64) -> String {
    if v.is_finite() {
        v.to_string()
    } else {
        String::new()
    }
}

/// Reads the rows of a run CSV (plain or `.gz`). A torn last line (no
/// newline: the run was killed mid-write) is ignored.
pub fn read_rows(path: &Path) -> Result<BTreeMap<usize, ZcpRow>> {
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    parse_rows(&path.display().to_string(), &read_text(path)?)
}

/// Parses the text of a run CSV (`origin` names it in errors); see [`read_rows`].
pub fn parse_rows(origin: &str, text: &str) -> Result<BTreeMap<usize, ZcpRow>> {
    let mut rows = BTreeMap::new();
    let malformed = |reason: String| EncodeError::Format {
        path: origin.to_string(),
        reason,
    };
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    let mut lines = complete.lines();
    match lines.next() {
        None => return Ok(rows),
        Some(h) if h == header() => {}
        Some(h) => {
            return Err(malformed(format!("header `{h}` is not `{}`", header())));
        }
    }
    for (n, line) in lines.enumerate() {
        let bad = |what: &str| malformed(format!("line {}: {what}", n + 2));
        let cells: Vec<&str> = line.split(',').collect();
        if cells.len() != PROXY_NAMES.len() + 2 {
            return Err(bad("wrong number of cells"));
        }
        let index: usize = cells[0].parse().map_err(|_| bad("bad index"))?;
        let mut scores = [f64::NAN; PROXY_NAMES.len()];
        for (slot, cell) in scores.iter_mut().zip(&cells[1..=PROXY_NAMES.len()]) {
            if !cell.is_empty() {
                *slot = cell.parse().map_err(|_| bad("bad number"))?;
            }
        }
        let seconds = cells[PROXY_NAMES.len() + 1]
            .parse()
            .map_err(|_| bad("bad seconds"))?;
        rows.insert(index, ZcpRow { scores, seconds });
    }
    Ok(rows)
}

/// Scores every index of `indices` not yet in `csv`, appending as it goes;
/// stops after `limit` new architectures when given.
pub fn run_zcp(
    indices: &[usize],
    csv: &Path,
    config: &ZcpConfig,
    limit: Option<usize>,
    show_progress: bool,
) -> Result<ZcpRunSummary> {
    config.validate()?;
    let meta = ZcpRunMeta::of(config);
    let meta_file = meta_path(csv);
    if meta_file.exists() {
        let text =
            std::fs::read_to_string(&meta_file).map_err(|e| EncodeError::io(&meta_file, e))?;
        let old: ZcpRunMeta = serde_json::from_str(&text)
            .map_err(|e| EncodeError::format(&meta_file, e.to_string()))?;
        if old != meta {
            return Err(EncodeError::Invalid {
                what: "zcp resume",
                reason: format!(
                    "{} was made with {old:?}; this run has {meta:?} (use another output or the same settings)",
                    meta_file.display()
                ),
            });
        }
    } else if let Some(dir) = meta_file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| EncodeError::io(dir, e))?;
        let json = serde_json::to_string_pretty(&meta).map_err(|e| EncodeError::Invalid {
            what: "zcp sidecar",
            reason: e.to_string(),
        })?;
        std::fs::write(&meta_file, json + "\n").map_err(|e| EncodeError::io(&meta_file, e))?;
    }
    let done = read_rows(csv)?;
    rewrite_complete(csv, &done)?;
    let todo: Vec<usize> = indices
        .iter()
        .copied()
        .filter(|i| !done.contains_key(i))
        .take(limit.unwrap_or(usize::MAX))
        .collect();
    let skipped = indices.iter().filter(|i| done.contains_key(i)).count();
    let batch = SyntheticBatch::new(config)?;
    let mut file = OpenOptions::new()
        .append(true)
        .open(csv)
        .map_err(|e| EncodeError::io(csv, e))?;
    let bar = progress(todo.len(), "zcp nb201", show_progress);
    let start = Instant::now();
    for &index in &todo {
        let arch = Nb201Arch::from_index(index)?;
        let t0 = Instant::now();
        let scores = score_arch(&arch, index, &batch, config)?;
        let seconds = t0.elapsed().as_secs_f64();
        let mut line = index.to_string();
        for v in scores {
            line.push(',');
            line.push_str(&number(v));
        }
        line.push_str(&format!(",{seconds:.3}\n"));
        file.write_all(line.as_bytes())
            .and_then(|()| file.flush())
            .map_err(|e| EncodeError::io(csv, e))?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let elapsed = start.elapsed().as_secs_f64();
    Ok(ZcpRunSummary {
        computed: todo.len(),
        skipped,
        total_done: done.len() + todo.len(),
        seconds_per_arch: elapsed / todo.len().max(1) as f64,
    })
}

/// Rewrites the CSV with exactly the parsed rows (dropping a torn tail),
/// or creates it with the header.
fn rewrite_complete(csv: &Path, rows: &BTreeMap<usize, ZcpRow>) -> Result<()> {
    let mut text = header() + "\n";
    for (index, row) in rows {
        text.push_str(&row_line(*index, row));
    }
    std::fs::write(csv, text).map_err(|e| EncodeError::io(csv, e))
}

fn row_line(index: usize, row: &ZcpRow) -> String {
    let mut line = index.to_string();
    for v in row.scores {
        line.push(',');
        line.push_str(&number(v));
    }
    line.push_str(&format!(",{:.3}\n", row.seconds));
    line
}

/// Writes the rows of a run, sorted by index, gzipped to `out` (with the
/// run's sidecar copied beside it).
pub fn pack(csv: &Path, out: &Path) -> Result<usize> {
    let rows = read_rows(csv)?;
    let mut text = header() + "\n";
    for (index, row) in &rows {
        text.push_str(&row_line(*index, row));
    }
    write_gz(out, &text)?;
    let meta = meta_path(csv);
    if meta.exists() {
        let target = out.with_extension("").with_extension("json");
        if target != meta {
            std::fs::copy(&meta, &target).map_err(|e| EncodeError::io(&target, e))?;
        }
    }
    Ok(rows.len())
}

/// Spearman of each computed proxy against the public NAS-Bench-Suite-Zero
/// value (CIFAR-10 rows of `zcp_subset.csv`) over the architectures both
/// have: `(proxy, archs compared, spearman)`.
pub fn validate_against_subset(
    rows: &BTreeMap<usize, ZcpRow>,
) -> Result<Vec<(String, usize, f64)>> {
    let subset = nasflat_shared::data::nb201_zcp_subset()?;
    let mut out = Vec::new();
    for (p, name) in PROXY_NAMES.iter().enumerate() {
        let Some(col) = subset.names.iter().position(|n| n == name) else {
            continue;
        };
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for (dataset, index, values) in &subset.rows {
            if dataset != "cifar10" {
                continue;
            }
            let (Some(row), Some(Some(v))) = (rows.get(index), values.get(col)) else {
                continue;
            };
            if row.scores[p].is_finite() && v.is_finite() {
                ours.push(row.scores[p]);
                theirs.push(*v);
            }
        }
        out.push((name.to_string(), ours.len(), spearman(&ours, &theirs)));
    }
    Ok(out)
}

/// CIFAR-10 arch indices of the public subset, ascending.
pub fn subset_indices() -> Result<Vec<usize>> {
    let subset = nasflat_shared::data::nb201_zcp_subset()?;
    let mut idx: Vec<usize> = subset
        .rows
        .iter()
        .filter(|(d, _, _)| d == "cifar10")
        .map(|(_, i, _)| *i)
        .collect();
    idx.sort_unstable();
    idx.dedup();
    Ok(idx)
}

//! The ZCP encoding: zero-cost proxies per architecture, normalised per
//! proxy exactly as the paper's code does (`nas_embedding_suite/*_ss.py`,
//! `normalize_and_process_zcp`): `log1p` then min-max for fisher, flops,
//! grad_norm, params, snip and synflow; z-score (population std) for grasp;
//! min-max for the rest.
//!
//! FBNet: the 13 proxies of `fbnet/zcp.csv`. NB201: the public data has only
//! FLOPs, params and Zen for every architecture (CIFAR-10 columns, the
//! dataset of the paper's encoding). The other proxies are computed by
//! `nasflat-host encode --encoder zcp` into `nb201_zcp_computed.csv.gz`
//! ([`ComputedProxies`]; which ones the shipped file holds is in
//! `data/encodings/README.md`). They join the encoding only when that file
//! covers **every** architecture: a proxy known for a few rows cannot
//! encode the others, so with a partial file the encoding stays
//! flops/params/zen and [`build`] returns a note saying so (the CLI prints
//! it) instead of guessing the missing values.

use std::collections::BTreeMap;

use nasflat_encoders::zcp::PROXY_NAMES;
use nasflat_encoders::zcp::run::{ZcpRow, parse_rows};

use nasflat_shared::SearchSpace;
use nasflat_shared::data::{self, NumericTable};

use super::Encoding;
use super::cache::{self, EncodingsSource};
use crate::error::{PredictorError, Result};

/// Cache name of the NB201 proxies `nasflat-host encode --encoder zcp` writes
/// (raw values, one row per scored architecture, sparse index allowed).
pub const COMPUTED_PROXIES: &str = "zcp_computed";

/// Share of the architectures a computed proxy must be defined on to join
/// the NB201 encoding (see [`ComputedProxies`]'s `complete_columns`).
pub const MIN_DEFINED: f64 = 0.9;

/// Version of the normalisation code; part of every ZCP encoding's version.
pub const NORMALISATION_VERSION: &str = "zcp-norm-1";

/// The paper's 13 proxies, in the order of its `zcps` lists.
pub const PAPER_PROXIES: [&str; 13] = [
    "epe_nas",
    "fisher",
    "flops",
    "grad_norm",
    "grasp",
    "jacov",
    "l2_norm",
    "nwot",
    "params",
    "plain",
    "snip",
    "synflow",
    "zen",
];

/// How one proxy column is normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalisation {
    /// `log1p`, then min-max to [0, 1].
    LogMinMax,
    /// `(x - mean) / std` with the population std.
    ZScore,
    /// Min-max to [0, 1].
    MinMax,
}

/// The paper's rule for a proxy (a dataset prefix such as `cifar10_` is ignored).
pub fn rule(proxy: &str) -> Normalisation {
    let base = ["cifar10_", "cifar100_", "imagenet16_120_"]
        .iter()
        .find_map(|p| proxy.strip_prefix(p))
        .unwrap_or(proxy);
    match base {
        "fisher" | "flops" | "grad_norm" | "params" | "snip" | "synflow" => {
            Normalisation::LogMinMax
        }
        "grasp" => Normalisation::ZScore,
        _ => Normalisation::MinMax,
    }
}

/// Normalises one column. `log1p` is applied sign-symmetrically
/// (`sign(x) * log1p(|x|)`), identical to `log1p` on the non-negative values
/// these proxies take, but finite if a producer ever writes x <= -1. A
/// constant column maps to 0.
pub fn normalise(values: &[f64], how: Normalisation) -> Vec<f64> {
    let n = values.len().max(1) as f64;
    match how {
        Normalisation::LogMinMax => {
            let logged: Vec<f64> = values
                .iter()
                .map(|v| v.signum() * v.abs().ln_1p())
                .collect();
            normalise(&logged, Normalisation::MinMax)
        }
        Normalisation::MinMax => {
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let range = max - min;
            values
                .iter()
                .map(|v| if range > 0.0 { (v - min) / range } else { 0.0 })
                .collect()
        }
        Normalisation::ZScore => {
            let mean = values.iter().sum::<f64>() / n;
            let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
            values
                .iter()
                .map(|v| if std > 0.0 { (v - mean) / std } else { 0.0 })
                .collect()
        }
    }
}

/// One raw proxy column: its name in the encoding and its values.
struct RawColumn {
    name: String,
    values: Vec<f64>,
}

fn raw_columns(table: &NumericTable, pick: &[(&str, &str)], shown: &str) -> Result<Vec<RawColumn>> {
    pick.iter()
        .map(|&(source, name)| {
            let c = table.position(source).ok_or_else(|| {
                PredictorError::input("zcp", format!("{shown}: a column `{source}`"), "none")
            })?;
            let values = (0..table.rows())
                .map(|r| cell(table, c, r, shown))
                .collect::<Result<Vec<_>>>()?;
            Ok(RawColumn {
                name: name.to_string(),
                values,
            })
        })
        .collect()
}

/// One cell of a vendored proxy table that must be present.
fn cell(table: &NumericTable, c: usize, r: usize, shown: &str) -> Result<f64> {
    table.get(c, r).ok_or_else(|| {
        PredictorError::input(
            "zcp",
            format!("{shown}: a value in every cell"),
            format!("row {r} column `{}` empty", table.names()[c]),
        )
    })
}

/// Normalises named raw columns into an encoding, ordered as
/// [`PAPER_PROXIES`] (unknown proxies after them, by name).
pub fn from_raw(
    space: SearchSpace,
    version: String,
    columns: Vec<(String, Vec<f64>)>,
) -> Result<Encoding> {
    let mut columns = columns;
    let order = |n: &str| {
        PAPER_PROXIES
            .iter()
            .position(|p| *p == n)
            .unwrap_or(usize::MAX)
    };
    columns.sort_by(|a, b| order(&a.0).cmp(&order(&b.0)).then(a.0.cmp(&b.0)));
    let rows = columns.first().map_or(0, |c| c.1.len());
    if let Some((name, v)) = columns.iter().find(|c| c.1.len() != rows) {
        return Err(PredictorError::input(
            "zcp",
            format!("proxy `{name}` with {rows} rows"),
            format!("{} rows", v.len()),
        ));
    }
    if let Some((name, _)) = columns.iter().find(|c| c.1.iter().any(|v| !v.is_finite())) {
        return Err(PredictorError::input(
            "zcp",
            format!("finite raw values of proxy `{name}`"),
            "a non-finite value",
        ));
    }
    let normalised: Vec<Vec<f64>> = columns
        .iter()
        .map(|(name, v)| normalise(v, rule(name)))
        .collect();
    let mut values = Vec::with_capacity(rows * columns.len());
    for r in 0..rows {
        values.extend(normalised.iter().map(|c| c[r] as f32));
    }
    let names = columns.into_iter().map(|c| c.0).collect();
    Encoding::new("zcp", version, space, names, values)
}

/// The proxies the encoder computed for some (or all) NB201 architectures,
/// as read from `nb201_zcp_computed.csv.gz` (or `.csv`) of an encodings source.
#[derive(Debug, Clone)]
pub struct ComputedProxies {
    /// File read, for messages.
    pub origin: String,
    /// Version derived from the run's sidecar settings (seed, batch, ...).
    pub version: String,
    /// Raw scores by architecture index (NaN where a proxy is undefined).
    pub rows: BTreeMap<usize, ZcpRow>,
}

impl ComputedProxies {
    /// Reads the computed proxies of `source`; `None` when it has none.
    pub fn read_optional(source: &EncodingsSource) -> Result<Option<Self>> {
        let space = SearchSpace::Nb201;
        let Some(text) = source
            .table_text(space, COMPUTED_PROXIES)
            .map_err(cache::file_error)?
        else {
            return Ok(None);
        };
        let rows = parse_rows(&text.origin, &text.text).map_err(cache::file_error)?;
        if let Some(bad) = rows.keys().find(|&&i| i >= nasflat_shared::NB201_SIZE) {
            return Err(PredictorError::input(
                "computed zcp file",
                format!(
                    "{}: indices in 0..{}",
                    text.origin,
                    nasflat_shared::NB201_SIZE
                ),
                format!("index {bad}"),
            ));
        }
        // The sidecar records the run's settings; any change of them changes
        // the values, so the version is a digest of its text.
        let version = match source
            .sidecar_bytes(space, COMPUTED_PROXIES)
            .map_err(cache::file_error)?
        {
            Some(bytes) => format!("computed-{:016x}", fnv1a(&bytes)),
            None => "computed-unversioned".to_string(),
        };
        Ok(Some(ComputedProxies {
            origin: text.origin,
            version,
            rows,
        }))
    }

    /// Whether every architecture of NB201 has a row.
    pub fn covers_space(&self) -> bool {
        self.rows.len() == nasflat_shared::NB201_SIZE
    }

    /// One proxy's raw values for the architectures that have a finite one,
    /// `(index, value)` in index order (for analyses restricted to the
    /// scored archs, e.g. the Spearman check against the public subset).
    pub fn proxy(&self, name: &str) -> Option<Vec<(usize, f64)>> {
        let p = PROXY_NAMES.iter().position(|n| *n == name)?;
        Some(
            self.rows
                .iter()
                .map(|(i, r)| (*i, r.scores[p]))
                .filter(|(_, v)| v.is_finite())
                .collect(),
        )
    }

    /// Full columns of the proxies defined (finite) on at least
    /// [`MIN_DEFINED`] of the rows (valid as encoding columns only when
    /// [`Self::covers_space`]), with notes on the rest.
    ///
    /// A proxy can be undefined on a few archs: jacov, epe_nas and nwot on
    /// a network whose output is cut off from its input (constant logits,
    /// zero Jacobian, singular NASWOT kernel). NAS-Bench-Suite-Zero stores
    /// sentinels there (-1e8, -inf) that rank those archs last; here they
    /// get the column's finite minimum, the same rank without wrecking the
    /// min-max scale. A proxy missing on more rows (GraSP after a
    /// run without `--grasp`) is left out.
    fn complete_columns(&self) -> (Vec<(String, Vec<f64>)>, Vec<String>) {
        let mut kept = Vec::new();
        let mut notes = Vec::new();
        for (p, name) in PROXY_NAMES.iter().enumerate() {
            let mut values: Vec<f64> = self.rows.values().map(|r| r.scores[p]).collect();
            let defined = values.iter().filter(|v| v.is_finite()).count();
            let missing = values.len() - defined;
            if missing == 0 {
                kept.push((name.to_string(), values));
            } else if (defined as f64) < MIN_DEFINED * values.len() as f64 {
                notes.push(format!(
                    "{name} left out (defined for {defined} of {} archs)",
                    values.len()
                ));
            } else {
                let floor = values
                    .iter()
                    .copied()
                    .filter(|v| v.is_finite())
                    .fold(f64::INFINITY, f64::min);
                for v in values.iter_mut().filter(|v| !v.is_finite()) {
                    *v = floor;
                }
                notes.push(format!(
                    "{name} undefined for {missing} archs, ranked last (set to its minimum)"
                ));
                kept.push((name.to_string(), values));
            }
        }
        (kept, notes)
    }
}

/// 64-bit FNV-1a: a stable digest for versions (not for security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The ZCP encoding of a space from the vendored tables, extended (NB201) by
/// the computed proxies of `source` when they cover every architecture;
/// also returns notes on what was left out and why.
pub fn build(space: SearchSpace, source: &EncodingsSource) -> Result<(Encoding, Vec<String>)> {
    let table = data::zcp_table(space)?;
    let (pick, vendored): (Vec<(&str, &str)>, &str) = match space {
        SearchSpace::Fbnet => (
            PAPER_PROXIES.iter().map(|p| (*p, *p)).collect(),
            "fbnet/zcp.csv",
        ),
        SearchSpace::Nb201 => (
            vec![
                ("cifar10_flops", "flops"),
                ("cifar10_params", "params"),
                ("cifar10_zen", "zen"),
            ],
            "nb201/zcp.csv",
        ),
    };
    let mut columns: Vec<(String, Vec<f64>)> = raw_columns(&table, &pick, vendored)?
        .into_iter()
        .map(|c| (c.name, c.values))
        .collect();
    let mut version = format!("{NORMALISATION_VERSION}:{vendored}");
    let mut notes = Vec::new();
    let computed = match space {
        SearchSpace::Nb201 => ComputedProxies::read_optional(source)?,
        SearchSpace::Fbnet => None,
    };
    if computed.is_none() && space == SearchSpace::Nb201 {
        notes.push(format!(
            "zcp nb201: no {}, so the zcp encoding uses only the public flops/params/zen",
            source.location(space, COMPUTED_PROXIES)
        ));
    }
    if let Some(computed) = computed {
        let shown = &computed.origin;
        if computed.covers_space() {
            let (extra, column_notes) = computed.complete_columns();
            // Vendored columns win over recomputed ones of the same name.
            let new: Vec<(String, Vec<f64>)> = extra
                .into_iter()
                .filter(|(n, _)| columns.iter().all(|c| &c.0 != n))
                .collect();
            columns.extend(new);
            version.push_str(&format!("+{COMPUTED_PROXIES}@{}", computed.version));
            for note in column_notes {
                notes.push(format!("zcp nb201 ({shown}): {note}"));
            }
        } else {
            notes.push(format!(
                "zcp nb201: {shown} covers {} of {} archs, so the zcp encoding uses only the \
                 public flops/params/zen; the computed proxies join it after a full run \
                 (`nasflat-host encode --encoder zcp --space nb201 --archs all`, resumable)",
                computed.rows.len(),
                nasflat_shared::NB201_SIZE
            ));
        }
    }
    Ok((from_raw(space, version, columns)?, notes))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::Path;

    fn close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-12, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn rules_follow_the_paper() {
        for p in ["fisher", "flops", "grad_norm", "params", "snip", "synflow"] {
            assert_eq!(rule(p), Normalisation::LogMinMax, "{p}");
        }
        assert_eq!(rule("cifar10_flops"), Normalisation::LogMinMax);
        assert_eq!(rule("grasp"), Normalisation::ZScore);
        for p in ["epe_nas", "jacov", "l2_norm", "nwot", "plain", "zen", "new"] {
            assert_eq!(rule(p), Normalisation::MinMax, "{p}");
        }
    }

    #[test]
    fn exact_values_on_a_tiny_table() {
        let e = std::f64::consts::E;
        // log1p: 0, 1, 2 -> min-max 0, 0.5, 1.
        close(
            &normalise(&[0.0, e - 1.0, e * e - 1.0], Normalisation::LogMinMax),
            &[0.0, 0.5, 1.0],
        );
        close(
            &normalise(&[2.0, 4.0, 3.0], Normalisation::MinMax),
            &[0.0, 1.0, 0.5],
        );
        // mean 2, population std sqrt(2/3).
        let s = (2.0f64 / 3.0).sqrt();
        close(
            &normalise(&[1.0, 2.0, 3.0], Normalisation::ZScore),
            &[-1.0 / s, 0.0, 1.0 / s],
        );
        close(&normalise(&[5.0, 5.0], Normalisation::MinMax), &[0.0, 0.0]);
        close(&normalise(&[5.0, 5.0], Normalisation::ZScore), &[0.0, 0.0]);
    }

    #[test]
    fn from_raw_orders_columns_and_normalises_each() {
        let e = std::f64::consts::E;
        let enc = from_raw(
            SearchSpace::Fbnet,
            "t".into(),
            vec![
                ("zen".into(), vec![1.0, 3.0]),
                ("grasp".into(), vec![-1.0, 1.0]),
                ("synflow".into(), vec![0.0, e - 1.0]),
            ],
        )
        .unwrap();
        assert_eq!(enc.columns, vec!["grasp", "synflow", "zen"]);
        assert_eq!(enc.row(0), &[-1.0, 0.0, 0.0]);
        assert_eq!(enc.row(1), &[1.0, 1.0, 1.0]);
        let bad = from_raw(
            SearchSpace::Fbnet,
            "t".into(),
            vec![("x".into(), vec![f64::NAN])],
        );
        assert!(bad.is_err());
    }

    #[test]
    fn fbnet_has_the_13_paper_proxies_in_unit_range() {
        let (enc, notes) = build(SearchSpace::Fbnet, &EncodingsSource::Shipped).unwrap();
        assert!(notes.is_empty());
        assert_eq!(enc.rows(), 5000);
        assert_eq!(enc.columns, PAPER_PROXIES.to_vec());
        let grasp = enc.columns.iter().position(|c| c == "grasp").unwrap();
        for r in 0..enc.rows() {
            for (c, v) in enc.row(r).iter().enumerate() {
                if c != grasp {
                    assert!((0.0..=1.0).contains(v), "row {r} col {c}: {v}");
                }
            }
        }
    }

    fn folder(dir: &Path) -> EncodingsSource {
        EncodingsSource::Dir(dir.to_path_buf())
    }

    /// A computed-proxy file in the encoder's format with `rows` indices.
    fn write_computed(dir: &Path, rows: impl Iterator<Item = usize>) {
        let mut text = String::from("index,");
        text.push_str(&PROXY_NAMES.join(","));
        text.push_str(",seconds\n");
        for r in rows {
            // nwot = r % 7; epe_nas = 2 + r % 5 but undefined on row 5;
            // grasp never computed (a run without `--grasp`); the rest constant.
            let cells: Vec<String> = PROXY_NAMES
                .iter()
                .map(|n| match *n {
                    "nwot" => (r % 7).to_string(),
                    "epe_nas" if r == 5 => "NaN".to_string(),
                    "epe_nas" => (2 + r % 5).to_string(),
                    "grasp" => String::new(),
                    _ => "1".to_string(),
                })
                .collect();
            text.push_str(&format!("{r},{},0.5\n", cells.join(",")));
        }
        std::fs::write(dir.join("nb201_zcp_computed.csv"), text).unwrap();
    }

    #[test]
    fn a_partial_computed_file_leaves_nb201_zcp_public_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let (base, notes) = build(SearchSpace::Nb201, &folder(dir.path())).unwrap();
        assert_eq!(base.columns, vec!["flops", "params", "zen"]);
        // A folder without the file: said, not silent.
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("no ") && notes[0].contains("nb201_zcp_computed.csv.gz"));
        write_computed(dir.path(), [3, 117, 180].into_iter());
        let (enc, notes) = build(SearchSpace::Nb201, &folder(dir.path())).unwrap();
        assert_eq!(
            enc, base,
            "3 scored archs must not change the 15,625-row encoding"
        );
        assert_eq!(notes.len(), 1);
        assert!(
            notes[0].contains("covers 3 of 15625") && notes[0].contains("--archs all"),
            "{notes:?}"
        );
        let computed = ComputedProxies::read_optional(&folder(dir.path()))
            .unwrap()
            .unwrap();
        assert!(!computed.covers_space());
        assert_eq!(
            computed.proxy("nwot").unwrap(),
            vec![(3, 3.0), (117, 5.0), (180, 5.0)]
        );
        assert!(computed.proxy("zen").is_none());
    }

    #[test]
    fn a_full_computed_file_extends_nb201_zcp() {
        let dir = tempfile::tempdir().unwrap();
        let (base, _) = build(SearchSpace::Nb201, &folder(dir.path())).unwrap();
        write_computed(dir.path(), 0..nasflat_shared::NB201_SIZE);
        let (ext, notes) = build(SearchSpace::Nb201, &folder(dir.path())).unwrap();
        // epe_nas is undefined on one row: ranked last; grasp on every row:
        // left out. A note for each.
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].contains("epe_nas undefined for 1 archs, ranked last"),
            "{notes:?}"
        );
        assert!(
            notes[1].contains("grasp left out (defined for 0 of 15625"),
            "{notes:?}"
        );
        assert_eq!(
            ext.columns,
            vec![
                "epe_nas",
                "fisher",
                "flops",
                "grad_norm",
                "jacov",
                "l2_norm",
                "nwot",
                "params",
                "plain",
                "snip",
                "synflow",
                "zen"
            ]
        );
        // the undefined row gets the minimum (2 -> 0 after min-max), the
        // others 2 + r % 5 scaled to [0, 1]
        let epe = ext.columns.iter().position(|c| c == "epe_nas").unwrap();
        assert_eq!(ext.row(5)[epe], 0.0);
        assert!((ext.row(7)[epe] - 0.5).abs() < 1e-7);
        // flops stays the vendored column, nwot is min-maxed over 0..6.
        let flops = ext.columns.iter().position(|c| c == "flops").unwrap();
        let nwot = ext.columns.iter().position(|c| c == "nwot").unwrap();
        assert_eq!(ext.row(1)[flops], base.row(1)[0]);
        assert!((ext.row(3)[nwot] - 0.5).abs() < 1e-7);
        assert!(ext.version.contains("zcp_computed@computed-unversioned"));
    }

    #[test]
    fn computed_index_outside_the_space_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write_computed(dir.path(), [0, 20_000].into_iter());
        let err = build(SearchSpace::Nb201, &folder(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("indices in 0..15625, got index 20000"),
            "{err}"
        );
    }
}

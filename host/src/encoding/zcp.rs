//! The ZCP encoding: zero-cost proxies per architecture, normalised per
//! proxy exactly as the paper's code does (`nas_embedding_suite/*_ss.py`,
//! `normalize_and_process_zcp`): `log1p` then min-max for fisher, flops,
//! grad_norm, params, snip and synflow; z-score (population std) for grasp;
//! min-max for the rest.
//!
//! FBNet: the 13 proxies of `fbnet/zcp.csv`. NB201: the public data has only
//! FLOPs, params and Zen for all 15,625 archs (CIFAR-10 columns, the dataset
//! of the paper's encoding); more proxies join when a raw proxy table
//! `nb201_zcp_proxies.csv.gz` (same cache format, raw values) is present in
//! the encodings folder, so computed proxies light up without code changes.

use std::path::Path;

use nasflat_shared::SearchSpace;
use nasflat_shared::data::{self, NumericTable};

use super::{Encoding, cache};
use crate::error::{HostError, Result};

/// Cache name of the optional raw proxy table that extends the ZCP encoding.
pub const EXTRA_PROXIES: &str = "zcp_proxies";

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
                HostError::invalid("zcp", format!("{shown}: no column `{source}`"))
            })?;
            let values = (0..table.rows())
                .map(|r| cache::cell(table, c, r, shown))
                .collect::<Result<Vec<_>>>()?;
            Ok(RawColumn {
                name: name.to_string(),
                values,
            })
        })
        .collect()
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
        return Err(HostError::invalid(
            "zcp",
            format!("proxy `{name}` has {} rows, expected {rows}", v.len()),
        ));
    }
    if let Some((name, _)) = columns.iter().find(|c| c.1.iter().any(|v| !v.is_finite())) {
        return Err(HostError::invalid(
            "zcp",
            format!("proxy `{name}` has a non-finite raw value"),
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

/// The ZCP encoding of a space from the vendored tables, extended by the raw
/// proxy table of the encodings folder when one is given.
pub fn build(space: SearchSpace, dir: Option<&Path>) -> Result<Encoding> {
    let table = data::zcp_table(space)?;
    let (pick, source): (Vec<(&str, &str)>, &str) = match space {
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
    let mut columns: Vec<RawColumn> = raw_columns(&table, &pick, source)?;
    let mut version = format!("{NORMALISATION_VERSION}:{source}");
    let extra = match dir {
        Some(d) => cache::read_table_optional(d, space, EXTRA_PROXIES)?,
        None => None,
    };
    if let Some((extra, extra_version, shown)) = extra {
        if extra.rows() != table.rows() {
            return Err(HostError::invalid(
                "zcp",
                format!(
                    "{shown}: {} rows, the space has {}",
                    extra.rows(),
                    table.rows()
                ),
            ));
        }
        // Vendored columns win over recomputed ones of the same name.
        let new: Vec<(&str, &str)> = extra
            .names()
            .iter()
            .filter(|n| columns.iter().all(|c| &c.name != *n))
            .map(|n| (n.as_str(), n.as_str()))
            .collect();
        columns.extend(raw_columns(&extra, &new, &shown)?);
        version.push_str(&format!("+{EXTRA_PROXIES}@{extra_version}"));
    }
    from_raw(
        space,
        version,
        columns.into_iter().map(|c| (c.name, c.values)).collect(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
        let enc = build(SearchSpace::Fbnet, None).unwrap();
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

    #[test]
    fn nb201_extra_proxies_extend_the_public_columns() {
        let dir = tempfile::tempdir().unwrap();
        let base = build(SearchSpace::Nb201, Some(dir.path())).unwrap();
        assert_eq!(base.columns, vec!["flops", "params", "zen"]);
        let mut text = String::from("index,flops,nwot\n");
        for r in 0..base.rows() {
            text.push_str(&format!("{r},1,{}\n", r % 7));
        }
        std::fs::write(dir.path().join("nb201_zcp_proxies.csv"), text).unwrap();
        let ext = build(SearchSpace::Nb201, Some(dir.path())).unwrap();
        assert_eq!(ext.columns, vec!["flops", "nwot", "params", "zen"]);
        // flops stays the vendored column, nwot is min-maxed over 0..6.
        assert_eq!(ext.row(1)[0], base.row(1)[0]);
        assert!((ext.row(3)[1] - 0.5).abs() < 1e-7);
        assert!(ext.version.contains("zcp_proxies@unversioned"));
    }
}

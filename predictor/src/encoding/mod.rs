//! Architecture encodings (paper Sections 3.3 and 4.1): one f32 vector per
//! architecture of a space, used by the encoding samplers (cosine, KMeans)
//! and as supplementary input of the predictor head.
//!
//! `zcp` is built here from the vendored proxy tables ([`zcp`]); the learned
//! encodings (`arch2vec`, `cate`) are trained elsewhere and read from cached
//! files ([`cache`]); `caz` is CATE ++ Arch2Vec ++ ZCP, available when all
//! three are.

pub mod cache;
pub mod zcp;

use std::collections::BTreeMap;
use std::path::Path;

use nasflat_shared::SearchSpace;
use serde::{Deserialize, Serialize};

use crate::error::{PredictorError, Result};
use cache::EncodingsSource;

/// The encodings the samplers and `--supplementary` know by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodingKind {
    /// Zero-cost proxies, normalised as the paper's code does.
    Zcp,
    /// Arch2Vec: variational graph autoencoder latent (cached file).
    Arch2vec,
    /// CATE: transformer encoding of computationally similar pairs (cached file).
    Cate,
    /// CATE ++ Arch2Vec ++ ZCP.
    Caz,
}

impl EncodingKind {
    /// All kinds, in the paper's order.
    pub const ALL: [EncodingKind; 4] = [
        EncodingKind::Zcp,
        EncodingKind::Arch2vec,
        EncodingKind::Cate,
        EncodingKind::Caz,
    ];

    /// Lower-case name used on the CLI and in file names.
    pub fn name(self) -> &'static str {
        match self {
            EncodingKind::Zcp => "zcp",
            EncodingKind::Arch2vec => "arch2vec",
            EncodingKind::Cate => "cate",
            EncodingKind::Caz => "caz",
        }
    }

    /// Whether the encoding comes from a cached file (not computed here).
    pub fn is_cached(self) -> bool {
        matches!(self, EncodingKind::Arch2vec | EncodingKind::Cate)
    }
}

impl std::fmt::Display for EncodingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for EncodingKind {
    type Err = PredictorError;
    fn from_str(s: &str) -> Result<Self> {
        EncodingKind::ALL
            .into_iter()
            .find(|k| k.name() == s.to_ascii_lowercase())
            .ok_or_else(|| {
                PredictorError::input("encoding", "zcp, arch2vec, cate or caz", format!("`{s}`"))
            })
    }
}

/// A named arch-encoding matrix: row r is the encoding of architecture r of
/// the space (the latency tables' index), columns are f32 features.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoding {
    /// Encoding name (`zcp`, `arch2vec`, ...).
    pub name: String,
    /// Version string; changes whenever the values may change.
    pub version: String,
    /// Space the rows index.
    pub space: SearchSpace,
    /// Column names.
    pub columns: Vec<String>,
    values: Vec<f32>,
}

impl Encoding {
    /// Wraps a row-major `[rows, columns.len()]` matrix; every value must be finite.
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        space: SearchSpace,
        columns: Vec<String>,
        values: Vec<f32>,
    ) -> Result<Self> {
        let name = name.into();
        let dim = columns.len();
        if dim == 0 || !values.len().is_multiple_of(dim) {
            return Err(PredictorError::input(
                "encoding",
                format!("`{name}`: whole rows of {dim} columns"),
                format!("{} values", values.len()),
            ));
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(PredictorError::input(
                "encoding",
                format!("`{name}`: finite values"),
                format!(
                    "row {} column `{}` = {}",
                    i / dim,
                    columns[i % dim],
                    values[i]
                ),
            ));
        }
        Ok(Encoding {
            name,
            version: version.into(),
            space,
            columns,
            values,
        })
    }

    /// Number of architectures.
    pub fn rows(&self) -> usize {
        self.values.len() / self.dim()
    }

    /// Number of columns.
    pub fn dim(&self) -> usize {
        self.columns.len()
    }

    /// The encoding of one architecture.
    pub fn row(&self, r: usize) -> &[f32] {
        let d = self.dim();
        &self.values[r * d..(r + 1) * d]
    }

    /// All values, row-major.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// Columns of `parts` side by side, named `<part>.<column>`; the version
    /// lists the parts' versions so a change in any part changes it.
    pub fn concat(name: &str, parts: &[&Encoding]) -> Result<Encoding> {
        let first = parts
            .first()
            .ok_or_else(|| PredictorError::internal("encoding", format!("`{name}`: no parts")))?;
        let rows = first.rows();
        if let Some(bad) = parts
            .iter()
            .find(|p| p.rows() != rows || p.space != first.space)
        {
            return Err(PredictorError::input(
                "encoding",
                format!("`{name}`: parts with the same rows and space"),
                format!(
                    "part `{}` has {} rows of {}, `{}` has {} of {}",
                    bad.name,
                    bad.rows(),
                    bad.space,
                    first.name,
                    rows,
                    first.space
                ),
            ));
        }
        let columns = parts
            .iter()
            .flat_map(|p| p.columns.iter().map(move |c| format!("{}.{c}", p.name)))
            .collect();
        let mut values = Vec::with_capacity(rows * parts.iter().map(|p| p.dim()).sum::<usize>());
        for r in 0..rows {
            for p in parts {
                values.extend_from_slice(p.row(r));
            }
        }
        let version = parts
            .iter()
            .map(|p| format!("{}@{}", p.name, p.version))
            .collect::<Vec<_>>()
            .join("+");
        Encoding::new(name, version, first.space, columns, values)
    }

    /// Columns standardised to mean 0 / std 1 over all rows (constant columns
    /// become 0), the form the predictor head takes.
    pub fn standardised(&self) -> Vec<f32> {
        let (n, d) = (self.rows(), self.dim());
        let mut out = self.values.clone();
        for c in 0..d {
            let col = (0..n).map(|r| f64::from(self.values[r * d + c]));
            let mean = col.clone().sum::<f64>() / n.max(1) as f64;
            let var = col.map(|v| (v - mean).powi(2)).sum::<f64>() / n.max(1) as f64;
            let std = var.sqrt();
            for r in 0..n {
                let v = f64::from(self.values[r * d + c]);
                out[r * d + c] = if std > 1e-12 {
                    ((v - mean) / std) as f32
                } else {
                    0.0
                };
            }
        }
        out
    }
}

/// The encodings of one space that could be built or found, and where the
/// cached ones were looked for (for error messages).
#[derive(Debug, Clone)]
pub struct EncodingSet {
    map: BTreeMap<EncodingKind, Encoding>,
    source: EncodingsSource,
    space: Option<SearchSpace>,
    notes: Vec<String>,
}

impl EncodingSet {
    /// Builds `zcp` and reads every cached encoding of `space`: from `dir`
    /// when given (retrained files), else from [`EncodingsSource::resolve`]'s
    /// choice (`$NASFLAT_ENCODINGS_DIR`, else the shipped files); `caz` when
    /// its three parts exist.
    pub fn load(space: SearchSpace, dir: Option<&Path>) -> Result<Self> {
        let source = EncodingsSource::resolve(dir);
        let mut map = BTreeMap::new();
        let (zcp, notes) = zcp::build(space, &source)?;
        map.insert(EncodingKind::Zcp, zcp);
        for kind in EncodingKind::ALL.into_iter().filter(|k| k.is_cached()) {
            if let Some(enc) = cache::read_optional(&source, space, kind.name())? {
                map.insert(kind, enc);
            }
        }
        if let (Some(c), Some(a), Some(z)) = (
            map.get(&EncodingKind::Cate),
            map.get(&EncodingKind::Arch2vec),
            map.get(&EncodingKind::Zcp),
        ) {
            let caz = Encoding::concat("caz", &[c, a, z])?;
            map.insert(EncodingKind::Caz, caz);
        }
        Ok(EncodingSet {
            map,
            source,
            space: Some(space),
            notes,
        })
    }

    /// A set holding exactly `encodings` (tests, callers that build their own).
    pub fn from_encodings(encodings: impl IntoIterator<Item = (EncodingKind, Encoding)>) -> Self {
        let map: BTreeMap<_, _> = encodings.into_iter().collect();
        let space = map.values().next().map(|e| e.space);
        EncodingSet {
            map,
            source: EncodingsSource::Shipped,
            space,
            notes: Vec::new(),
        }
    }

    /// One encoding, or an error saying which file would provide it.
    pub fn get(&self, kind: EncodingKind) -> Result<&Encoding> {
        self.map.get(&kind).ok_or_else(|| {
            let missing = |name: &str| match self.space {
                Some(space) => self.source.location(space, name),
                None => format!("<space>_{name}.csv.gz"),
            };
            let wanted = match kind {
                EncodingKind::Caz => format!(
                    "caz needs cate and arch2vec: {} and {}",
                    missing("cate"),
                    missing("arch2vec")
                ),
                other => missing(other.name()),
            };
            let space = self.space.map_or("?", SearchSpace::name);
            PredictorError::input(
                "encoding",
                format!("an encoding available for {space}"),
                format!("`{kind}` (missing {wanted})"),
            )
        })
    }

    /// What loading left out and why (e.g. a partial computed-proxy file);
    /// the CLI prints these.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Kinds present.
    pub fn available(&self) -> Vec<EncodingKind> {
        self.map.keys().copied().collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn enc(name: &str, cols: usize, values: Vec<f32>) -> Encoding {
        let columns = (0..cols).map(|c| format!("e{c}")).collect();
        Encoding::new(name, "1", SearchSpace::Nb201, columns, values).unwrap()
    }

    #[test]
    fn concat_puts_parts_side_by_side() {
        let a = enc("a", 1, vec![1.0, 2.0]);
        let b = enc("b", 2, vec![3.0, 4.0, 5.0, 6.0]);
        let c = Encoding::concat("ab", &[&a, &b]).unwrap();
        assert_eq!(c.row(1), &[2.0, 5.0, 6.0]);
        assert_eq!(c.columns, vec!["a.e0", "b.e0", "b.e1"]);
        assert_eq!(c.version, "a@1+b@1");
        let short = enc("s", 1, vec![1.0]);
        assert!(Encoding::concat("x", &[&a, &short]).is_err());
    }

    #[test]
    fn rejects_non_finite_and_ragged() {
        let cols = vec!["x".to_string(), "y".to_string()];
        assert!(Encoding::new("n", "1", SearchSpace::Fbnet, cols.clone(), vec![1.0]).is_err());
        let err = Encoding::new("n", "1", SearchSpace::Fbnet, cols, vec![1.0, f32::NAN])
            .unwrap_err()
            .to_string();
        assert!(err.contains("column `y`"), "{err}");
    }

    #[test]
    fn standardised_columns_have_zero_mean_unit_std() {
        let e = enc("a", 2, vec![1.0, 5.0, 3.0, 5.0]);
        assert_eq!(e.standardised(), vec![-1.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn missing_cached_encoding_names_the_file() {
        let set = EncodingSet::from_encodings([(EncodingKind::Zcp, enc("zcp", 1, vec![0.0]))]);
        let err = set.get(EncodingKind::Cate).unwrap_err().to_string();
        assert!(err.contains("nb201_cate.csv.gz"), "{err}");
        assert!(set.get(EncodingKind::Zcp).is_ok());
    }

    #[test]
    fn kind_names_round_trip_and_unknown_is_an_error() {
        for k in EncodingKind::ALL {
            assert_eq!(k.name().parse::<EncodingKind>().unwrap(), k);
        }
        let err = "cat".parse::<EncodingKind>().unwrap_err().to_string();
        assert!(err.contains("expected zcp, arch2vec, cate or caz"), "{err}");
    }
}

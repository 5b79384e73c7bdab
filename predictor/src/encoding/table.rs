//! One encoding as a table: a named, versioned matrix of f32 values, one
//! row per architecture of a space. Its own file so the readers (`cache`,
//! `zcp`) and the set that combines encodings (`super`) all import it from
//! here instead of from each other.

use nasflat_shared::SearchSpace;

use crate::error::{PredictorError, Result};

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

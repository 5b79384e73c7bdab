//! A numeric CSV table keyed by architecture index, stored column-major.

use std::path::Path;

use crate::error::{Result, SpaceError};
use crate::vendored::decode;

/// A table with an `index` column (0..n, in order) and named numeric columns.
/// Empty cells are `None`. Column-major because every consumer reads whole
/// columns (one device's latencies, one proxy).
#[derive(Debug, Clone, PartialEq)]
pub struct NumericTable {
    names: Vec<String>,
    columns: Vec<Vec<Option<f64>>>,
}

impl NumericTable {
    /// Parses CSV text whose first column is `index`.
    pub fn parse(file: &str, text: &str) -> Result<Self> {
        let table_err = |line: u64, reason: String| SpaceError::Table {
            file: file.to_string(),
            line,
            reason,
        };
        let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
        let header = reader
            .headers()
            .map_err(|e| table_err(1, e.to_string()))?
            .clone();
        if header.get(0) != Some("index") {
            return Err(table_err(1, "first column must be `index`".into()));
        }
        let names: Vec<String> = header.iter().skip(1).map(str::to_string).collect();
        let mut columns: Vec<Vec<Option<f64>>> = vec![Vec::new(); names.len()];
        let mut record = csv::ByteRecord::new();
        let mut row = 0usize;
        loop {
            let line = row as u64 + 2;
            match reader.read_byte_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => return Err(table_err(line, e.to_string())),
            }
            let index = cell_str(&record, 0)
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or_else(|| table_err(line, "bad `index` cell".into()))?;
            if index != row {
                return Err(table_err(
                    line,
                    format!("index {index} out of order (expected {row})"),
                ));
            }
            for (c, column) in columns.iter_mut().enumerate() {
                let cell = cell_str(&record, c + 1).unwrap_or("");
                let value = if cell.is_empty() {
                    None
                } else {
                    let v: f64 = cell.parse().map_err(|_| {
                        table_err(
                            line,
                            format!("column `{}`: `{cell}` is not a number", names[c]),
                        )
                    })?;
                    Some(v)
                };
                column.push(value);
            }
            row += 1;
        }
        Ok(NumericTable { names, columns })
    }

    /// Reads a table from a CSV file (plain or `.gz`).
    pub fn from_path(path: &Path) -> Result<Self> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| SpaceError::Io {
            path: name.clone(),
            source,
        })?;
        NumericTable::parse(&name, &decode(&name, &bytes)?)
    }

    /// Column names (device names for latency tables).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Number of rows (architectures).
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, Vec::len)
    }

    /// Position of a column by name.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// A column by name, or an error naming the unknown column.
    pub fn column(&self, name: &str) -> Result<&[Option<f64>]> {
        self.position(name)
            .map(|i| self.columns[i].as_slice())
            .ok_or_else(|| SpaceError::UnknownDevice {
                space: "table".into(),
                device: name.to_string(),
            })
    }

    /// A column by position.
    pub fn column_at(&self, i: usize) -> &[Option<f64>] {
        &self.columns[i]
    }

    /// One cell.
    pub fn get(&self, column: usize, row: usize) -> Option<f64> {
        self.columns
            .get(column)
            .and_then(|c| c.get(row))
            .copied()
            .flatten()
    }
}

fn cell_str(record: &csv::ByteRecord, i: usize) -> Option<&str> {
    record.get(i).and_then(|b| std::str::from_utf8(b).ok())
}

/// `zcp_subset.csv`: raw NAS-Bench-Suite-Zero proxies for ~725 NB201 archs per dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct ZcpSubset {
    /// Proxy names (`epe_nas`, `fisher`, ..., `val_accuracy`).
    pub names: Vec<String>,
    /// `(dataset, arch index, values)`; `None` where the source has no value.
    pub rows: Vec<(String, usize, Vec<Option<f64>>)>,
}

impl ZcpSubset {
    /// Parses the CSV text.
    pub fn parse(file: &str, text: &str) -> Result<Self> {
        let table_err = |line: u64, reason: String| SpaceError::Table {
            file: file.to_string(),
            line,
            reason,
        };
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let header = reader
            .headers()
            .map_err(|e| table_err(1, e.to_string()))?
            .clone();
        let names: Vec<String> = header.iter().skip(2).map(str::to_string).collect();
        let mut rows = Vec::new();
        for (i, record) in reader.records().enumerate() {
            let line = i as u64 + 2;
            let record = record.map_err(|e| table_err(line, e.to_string()))?;
            let dataset = record.get(0).unwrap_or_default().to_string();
            let index = record
                .get(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| table_err(line, "bad index".into()))?;
            let values = (0..names.len())
                .map(|c| record.get(c + 2).and_then(|s| s.parse().ok()))
                .collect();
            rows.push((dataset, index, values));
        }
        Ok(ZcpSubset { names, rows })
    }
}

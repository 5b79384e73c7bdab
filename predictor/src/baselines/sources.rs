//! The source devices' latencies as regression features.

use crate::dataset::SpaceData;
use crate::error::Result;

/// Log latencies of the source devices on every row (missing cells filled).
#[derive(Debug, Clone)]
pub struct SourceMatrix {
    /// Source names, in task order.
    pub names: Vec<String>,
    /// `columns[s][row]` = ln(ms).
    pub columns: Vec<Vec<f64>>,
}

impl SourceMatrix {
    /// Builds the matrix of a task's sources.
    pub fn new(data: &SpaceData, sources: &[String]) -> Result<Self> {
        let columns = sources
            .iter()
            .map(|s| Ok(data.log_latency_filled(data.device_index(s)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(SourceMatrix {
            names: sources.to_vec(),
            columns,
        })
    }

    /// Feature row of one architecture.
    pub fn row(&self, r: usize) -> Vec<f64> {
        self.columns.iter().map(|c| c[r]).collect()
    }
}

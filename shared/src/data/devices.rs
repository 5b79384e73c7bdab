//! `devices.csv`: what is known about each device column.

use serde::{Deserialize, Serialize};

use crate::error::{Result, SpaceError};

/// One row of `devices.csv`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// `nb201` or `fbnet`.
    pub space: String,
    /// Column name in the latency table.
    pub device: String,
    /// Category of the paper's Table 23 (GPU, CPU, mCPU, eCPU, FPGA, ASIC, ...).
    pub category: String,
    /// Batch size, when the source states it.
    pub batch_size: Option<u32>,
    /// HELP or EAGLE.
    pub source: String,
    /// Number of architectures measured.
    pub n_measured: usize,
    /// Unit in the source file (`ms` or `s`); tables here are always ms.
    pub unit_in_source: String,
    /// `float` or `int` (1 ms resolution, many ties).
    pub resolution: String,
    /// Source repository and path.
    pub source_file: String,
}

impl DeviceInfo {
    /// Parses the CSV text.
    pub fn parse_all(file: &str, text: &str) -> Result<Vec<DeviceInfo>> {
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        reader
            .deserialize()
            .enumerate()
            .map(|(i, row)| {
                row.map_err(|e| SpaceError::Table {
                    file: file.to_string(),
                    line: i as u64 + 2,
                    reason: e.to_string(),
                })
            })
            .collect()
    }
}

//! Typed loaders for the latency tables, accuracies, ZCPs, devices and tasks.
//!
//! Every loader reads either the vendored copy (feature `embedded-data`) or a
//! user file in the same format (plain or `.gz`), so users can bring their
//! own devices and task splits.

mod devices;
mod metad2a;
mod numeric;
mod tasks;

pub use devices::DeviceInfo;
pub use metad2a::{MetaD2aCandidate, parse_metad2a};
pub use numeric::{NumericTable, ZcpSubset};
pub use tasks::{Task, TaskSet};

#[cfg(feature = "embedded-data")]
pub use embedded::*;

#[cfg(feature = "embedded-data")]
mod embedded {
    use super::{DeviceInfo, MetaD2aCandidate, NumericTable, TaskSet, ZcpSubset, parse_metad2a};
    use crate::error::{Result, SpaceError};
    use crate::space::SearchSpace;
    use crate::vendored::tables;

    /// Latency (ms) of every architecture on every device of a space.
    /// Columns are device names; missing measurements are `None`.
    pub fn latency_table(space: SearchSpace) -> Result<NumericTable> {
        let file = match space {
            SearchSpace::Nb201 => tables::NB201_LATENCY,
            SearchSpace::Fbnet => tables::FBNET_LATENCY,
        };
        NumericTable::parse(file.name, &file.text()?)
    }

    /// Zero-cost proxies available for all architectures of a space. NB201:
    /// `{cifar10,cifar100,imagenet16_120}_{flops,params,zen}`; FBNet: the 13
    /// raw proxies of nasflat's `zc_fbnet.json`.
    pub fn zcp_table(space: SearchSpace) -> Result<NumericTable> {
        let file = match space {
            SearchSpace::Nb201 => tables::NB201_ZCP,
            SearchSpace::Fbnet => tables::FBNET_ZCP,
        };
        NumericTable::parse(file.name, &file.text()?)
    }

    /// NB201 test accuracies (%): `cifar10_test, cifar100_test, imagenet16_120_test`.
    pub fn nb201_accuracy() -> Result<NumericTable> {
        let file = tables::NB201_ACCURACY;
        NumericTable::parse(file.name, &file.text()?)
    }

    /// MetaD2A's 500 NB201 candidates in list order (the paper's NAS list).
    pub fn metad2a_candidates() -> Result<Vec<MetaD2aCandidate>> {
        let file = tables::NB201_METAD2A;
        parse_metad2a(file.name, &file.text()?)
    }

    /// The 13 NAS-Bench-Suite-Zero proxies of the ~725-arch NB201 subset.
    pub fn nb201_zcp_subset() -> Result<ZcpSubset> {
        let file = tables::NB201_ZCP_SUBSET;
        ZcpSubset::parse(file.name, &file.text()?)
    }

    /// Rows of `devices.csv`.
    pub fn devices() -> Result<Vec<DeviceInfo>> {
        let file = tables::DEVICES;
        DeviceInfo::parse_all(file.name, &file.text()?)
    }

    /// The paper's 12 tasks.
    pub fn paper_tasks() -> Result<TaskSet> {
        let file = tables::TASKS;
        TaskSet::parse(file.name, &file.text()?)
    }

    /// The 10 architectures per space whose latencies HELP uses as a
    /// hardware embedding.
    pub fn help_reference_archs(space: SearchSpace) -> Result<Vec<usize>> {
        let file = tables::HELP_REFERENCE_ARCHS;
        let value: serde_json::Value =
            serde_json::from_str(&file.text()?).map_err(|source| SpaceError::Json {
                file: file.name.to_string(),
                source,
            })?;
        let list = value
            .get(space.name())
            .and_then(|v| v.as_array())
            .ok_or_else(|| SpaceError::Table {
                file: file.name.to_string(),
                line: 0,
                reason: format!("no list for {space}"),
            })?;
        list.iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|i| usize::try_from(i).ok())
                    .ok_or_else(|| SpaceError::Table {
                        file: file.name.to_string(),
                        line: 0,
                        reason: format!("not an index: {v}"),
                    })
            })
            .collect()
    }
}

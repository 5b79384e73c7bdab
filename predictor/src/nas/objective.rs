//! What a search maximises. NB201 has measured test accuracies; FBNet has no
//! accuracy table anywhere, so its objectives are stated proxies (bigger or
//! better-scored networks), never called accuracies.

use std::fmt;
use std::str::FromStr;

use nasflat_shared::data::{self, NumericTable};
use nasflat_shared::{FbnetArch, SearchSpace, fbnet_cost};

use crate::dataset::SpaceData;
use crate::error::{PredictorError, Result};

/// A search objective, higher is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    /// NB201 CIFAR-10 test accuracy (%).
    Cifar10,
    /// NB201 CIFAR-100 test accuracy (%), the paper's Table 8 objective.
    Cifar100,
    /// NB201 ImageNet16-120 test accuracy (%).
    Imagenet16,
    /// FLOPs as a proxy of accuracy (more compute, more capacity).
    Flops,
    /// Parameter count as a proxy of accuracy.
    Params,
    /// The synflow zero-cost proxy (FBNet's ZCP table).
    Synflow,
}

impl Objective {
    /// Every objective, accuracy objectives first.
    pub const ALL: [Objective; 6] = [
        Objective::Cifar10,
        Objective::Cifar100,
        Objective::Imagenet16,
        Objective::Flops,
        Objective::Params,
        Objective::Synflow,
    ];

    /// Command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Objective::Cifar10 => "cifar10",
            Objective::Cifar100 => "cifar100",
            Objective::Imagenet16 => "imagenet16_120",
            Objective::Flops => "flops",
            Objective::Params => "params",
            Objective::Synflow => "synflow",
        }
    }

    /// Whether the values are measured accuracies (%), not proxies.
    pub fn is_accuracy(self) -> bool {
        matches!(
            self,
            Objective::Cifar10 | Objective::Cifar100 | Objective::Imagenet16
        )
    }

    /// The objectives a space has data for.
    pub fn for_space(space: SearchSpace) -> &'static [Objective] {
        match space {
            SearchSpace::Nb201 => &Objective::ALL[..3],
            SearchSpace::Fbnet => &Objective::ALL[3..],
        }
    }

    /// The objective's value on every row of `data`'s space.
    pub fn scores(self, data: &SpaceData) -> Result<Vec<f64>> {
        if !Objective::for_space(data.space).contains(&self) {
            let expected: Vec<&str> = Objective::for_space(data.space)
                .iter()
                .map(|o| o.name())
                .collect();
            return Err(PredictorError::ObjectiveNotInSpace {
                space: data.space.to_string(),
                objective: self.name().to_string(),
                expected: expected.join(", "),
            });
        }
        match self {
            Objective::Flops => Ok(data.flops.clone()),
            Objective::Params => Ok(data.params.clone()),
            Objective::Synflow => column(&data::zcp_table(data.space)?, "synflow"),
            _ => column(&data::nb201_accuracy()?, &format!("{}_test", self.name())),
        }
    }
}

impl Objective {
    /// The objective of any FBNet architecture, in or off the table: FLOPs
    /// and params by [`nasflat_shared::fbnet_cost`] (equal to the table's
    /// columns on its rows); synflow and the accuracies exist for table rows
    /// only, so they cannot score an open-space search.
    pub fn of_fbnet(self, arch: &FbnetArch) -> Result<f64> {
        match self {
            Objective::Flops => Ok(fbnet_cost(arch).flops as f64),
            Objective::Params => Ok(fbnet_cost(arch).params as f64),
            other => Err(PredictorError::input(
                "objective",
                "flops or params (computable for any FBNet architecture)",
                format!("`{other}`, which exists for table rows only"),
            )),
        }
    }
}

/// A table column with empty cells as `-inf` (never chosen).
fn column(table: &NumericTable, name: &str) -> Result<Vec<f64>> {
    Ok(table
        .column(name)?
        .iter()
        .map(|v| v.unwrap_or(f64::NEG_INFINITY))
        .collect())
}

impl fmt::Display for Objective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Objective {
    type Err = PredictorError;
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.to_ascii_lowercase();
        Objective::ALL
            .iter()
            .copied()
            .find(|o| o.name() == lower)
            .ok_or_else(|| {
                PredictorError::input(
                    "objective",
                    "cifar10, cifar100, imagenet16_120, flops, params or synflow",
                    format!("`{s}`"),
                )
            })
    }
}

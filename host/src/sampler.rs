//! Which k architectures the target device measures (paper Section 4.2).
//!
//! `random` is the protocol of Table 7 and BASELINES.md; `params` spreads the
//! samples evenly over the parameter-count quantiles (the paper's "Params"
//! sampler), a cheap way to cover fast and slow networks alike.

use rand::Rng;

use crate::dataset::{SpaceData, sample_rows};
use crate::error::{HostError, Result};

/// A sample-selection strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sampler {
    /// Uniformly random (seeded).
    Random,
    /// Evenly spaced parameter-count quantiles, random tie-breaking offset.
    Params,
}

impl std::str::FromStr for Sampler {
    type Err = HostError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "random" => Ok(Sampler::Random),
            "params" => Ok(Sampler::Params),
            other => Err(HostError::invalid(
                "sampler",
                format!("`{other}` (expected random or params)"),
            )),
        }
    }
}

impl std::fmt::Display for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sampler::Random => "random",
            Sampler::Params => "params",
        })
    }
}

impl Sampler {
    /// Picks `k` of the device's measured rows.
    pub fn pick(
        self,
        data: &SpaceData,
        device: &str,
        valid: &[usize],
        k: usize,
        rng: &mut impl Rng,
    ) -> Result<Vec<usize>> {
        match self {
            Sampler::Random => sample_rows(device, valid, k, rng),
            Sampler::Params => {
                if k > valid.len() {
                    return Err(HostError::NotEnoughSamples {
                        device: device.to_string(),
                        requested: k,
                        available: valid.len(),
                    });
                }
                let mut order = valid.to_vec();
                order.sort_by(|&a, &b| data.params[a].total_cmp(&data.params[b]).then(a.cmp(&b)));
                let step = order.len() as f64 / k as f64;
                let offset: f64 = rng.random::<f64>();
                let mut picked: Vec<usize> = (0..k)
                    .map(|i| order[(((i as f64) + offset) * step) as usize % order.len()])
                    .collect();
                picked.dedup();
                Ok(picked)
            }
        }
    }
}

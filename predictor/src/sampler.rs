//! Which k architectures the target device measures (paper Section 4.2).
//!
//! `random` is the protocol of Table 7 and BASELINES.md; `params` spreads the
//! samples evenly over the parameter-count quantiles (the paper's "Params"
//! sampler), a cheap way to cover fast and slow networks alike.
//! `<encoding>-cosine` / `<encoding>-kmeans` / `<encoding>-cosine-spread`
//! select from an architecture encoding ([`selection`]); `oracle` spreads the samples over the target's
//! *true* latency quantiles (reference only: a real device has no latencies
//! before it measures); `uncertainty[:<static sampler>]` picks half by a
//! static sampler and the rest where an ensemble disagrees ([`uncertainty`]).

pub mod selection;
pub mod uncertainty;

use rand::Rng;

use crate::baselines::SourceMatrix;
use crate::dataset::{SpaceData, sample_rows};
use crate::encoding::EncodingKind;
use crate::error::{PredictorError, Result};
use nasflat_shared::SearchSpace;

/// How an encoding sampler chooses among encoded architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Selection {
    /// Greedy lowest mean cosine similarity to the chosen ones.
    Cosine,
    /// Nearest architecture to each KMeans centroid.
    Kmeans,
    /// The paper code's cosine variant: one draw per quantile of mean
    /// cosine similarity to all candidates.
    CosineSpread,
    /// The paper code's default (`kmeancosine`): half one random member
    /// per KMeans cluster, half [`Selection::CosineSpread`].
    KmeansCosine,
}

impl Selection {
    fn name(self) -> &'static str {
        match self {
            Selection::Cosine => "cosine",
            Selection::Kmeans => "kmeans",
            Selection::CosineSpread => "cosine-spread",
            Selection::KmeansCosine => "kmeans-cosine",
        }
    }
}

/// A sampler that needs no target latencies (the uncertainty sampler's
/// first batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StaticSampler {
    /// Uniformly random.
    Random,
    /// Parameter-count quantiles.
    Params,
    /// Encoding-based selection.
    Encoded(EncodingKind, Selection),
}

/// Default first batch of `uncertainty`: the best static sampler of our
/// k = 5 NB201 runs (docs/experiments/samplers.md, "Uncertainty sampler").
pub const DEFAULT_UNCERTAINTY_BASE: StaticSampler =
    StaticSampler::Encoded(EncodingKind::Zcp, Selection::Kmeans);

/// A sample-selection strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Sampler {
    /// Uniformly random (seeded).
    Random,
    /// Evenly spaced parameter-count quantiles, random tie-breaking offset.
    Params,
    /// An encoding with a selection method, e.g. `zcp-cosine`.
    Encoded(EncodingKind, Selection),
    /// True-latency quantiles of the target: reference only.
    Oracle,
    /// Half by the static sampler, the rest by ensemble disagreement.
    Uncertainty(StaticSampler),
}

const EXPECTED: &str = "random, params, oracle, \
                        <zcp|arch2vec|cate|caz>-<cosine|kmeans|cosine-spread|kmeans-cosine>, \
                        uncertainty or uncertainty:<static sampler>";

impl From<StaticSampler> for Sampler {
    fn from(s: StaticSampler) -> Self {
        match s {
            StaticSampler::Random => Sampler::Random,
            StaticSampler::Params => Sampler::Params,
            StaticSampler::Encoded(e, s) => Sampler::Encoded(e, s),
        }
    }
}

impl std::str::FromStr for Sampler {
    type Err = PredictorError;
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.to_ascii_lowercase();
        let unknown = || PredictorError::input("sampler", EXPECTED, format!("`{s}`"));
        match lower.as_str() {
            "random" => return Ok(Sampler::Random),
            "params" => return Ok(Sampler::Params),
            "oracle" => return Ok(Sampler::Oracle),
            "uncertainty" => return Ok(Sampler::Uncertainty(DEFAULT_UNCERTAINTY_BASE)),
            _ => {}
        }
        if let Some(base) = lower.strip_prefix("uncertainty:") {
            return match base.parse::<Sampler>()? {
                Sampler::Random => Ok(Sampler::Uncertainty(StaticSampler::Random)),
                Sampler::Params => Ok(Sampler::Uncertainty(StaticSampler::Params)),
                Sampler::Encoded(e, sel) => {
                    Ok(Sampler::Uncertainty(StaticSampler::Encoded(e, sel)))
                }
                _ => Err(PredictorError::input(
                    "sampler",
                    "one that uses no latencies for the first batch",
                    format!("`{s}`"),
                )),
            };
        }
        let (encoding, selection) = if let Some(e) = lower.strip_suffix("-cosine-spread") {
            (e, Selection::CosineSpread)
        } else if let Some(e) = lower.strip_suffix("-kmeans-cosine") {
            (e, Selection::KmeansCosine)
        } else if let Some(e) = lower.strip_suffix("-cosine") {
            (e, Selection::Cosine)
        } else if let Some(e) = lower.strip_suffix("-kmeans") {
            (e, Selection::Kmeans)
        } else {
            return Err(unknown());
        };
        let encoding: EncodingKind = encoding.parse().map_err(|_| unknown())?;
        Ok(Sampler::Encoded(encoding, selection))
    }
}

impl TryFrom<String> for Sampler {
    type Error = PredictorError;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<Sampler> for String {
    fn from(s: Sampler) -> String {
        s.to_string()
    }
}

impl std::fmt::Display for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sampler::Random => f.write_str("random"),
            Sampler::Params => f.write_str("params"),
            Sampler::Oracle => f.write_str("oracle"),
            Sampler::Encoded(e, s) => write!(f, "{e}-{}", s.name()),
            Sampler::Uncertainty(base) => write!(f, "uncertainty:{}", Sampler::from(*base)),
        }
    }
}

impl Sampler {
    /// The sampler of the paper's final configuration (its Table 7,
    /// appendix A.2: CAZ on NB201, CATE on FBNet) with its code's default
    /// selection, `kmeancosine`.
    pub fn paper_final(space: SearchSpace) -> Sampler {
        match space {
            SearchSpace::Nb201 => Sampler::Encoded(EncodingKind::Caz, Selection::KmeansCosine),
            SearchSpace::Fbnet => Sampler::Encoded(EncodingKind::Cate, Selection::KmeansCosine),
        }
    }

    /// Whether the sampler reads the target's true latencies before
    /// measuring (results are a reference, not an achievable protocol).
    pub fn is_oracle(self) -> bool {
        self == Sampler::Oracle
    }

    /// The encoding the sampler reads, if any.
    pub fn encoding(self) -> Option<EncodingKind> {
        match self {
            Sampler::Encoded(e, _) | Sampler::Uncertainty(StaticSampler::Encoded(e, _)) => Some(e),
            _ => None,
        }
    }

    /// Picks `k` of the device's measured rows (`valid`). The uncertainty
    /// sampler needs the task's sources and errors here; use
    /// [`Sampler::pick_for_task`].
    pub fn pick(
        self,
        data: &SpaceData,
        device: &str,
        valid: &[usize],
        k: usize,
        rng: &mut impl Rng,
    ) -> Result<Vec<usize>> {
        self.pick_for_task(data, None, device, valid, k, rng)
    }

    /// Picks `k` of the device's measured rows, with the task's source
    /// devices at hand (used by the uncertainty sampler's ensemble).
    pub fn pick_for_task(
        self,
        data: &SpaceData,
        sources: Option<&SourceMatrix>,
        device: &str,
        valid: &[usize],
        k: usize,
        rng: &mut impl Rng,
    ) -> Result<Vec<usize>> {
        if k > valid.len() {
            return Err(PredictorError::NotEnoughSamples {
                device: device.to_string(),
                requested: k,
                available: valid.len(),
            });
        }
        match self {
            Sampler::Random => sample_rows(device, valid, k, rng),
            Sampler::Params => {
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
            Sampler::Encoded(kind, selection) => {
                let enc = data.encodings.get(kind)?;
                if enc.rows() != data.rows() {
                    return Err(PredictorError::input(
                        "encoding",
                        format!("`{kind}` with {} rows (as {})", data.rows(), data.space),
                        format!("{} rows", enc.rows()),
                    ));
                }
                match selection {
                    Selection::Cosine => selection::cosine(enc, valid, k, rng),
                    Selection::Kmeans => selection::kmeans(enc, valid, k, rng),
                    Selection::CosineSpread => selection::cosine_spread(enc, valid, k, rng),
                    Selection::KmeansCosine => selection::kmeans_cosine(enc, valid, k, rng),
                }
            }
            Sampler::Oracle => {
                let column = data.device_index(device)?;
                let mut order = valid.to_vec();
                let ms = |r: usize| data.latency(column, r).unwrap_or(f64::INFINITY);
                order.sort_by(|&a, &b| ms(a).total_cmp(&ms(b)).then(a.cmp(&b)));
                selection::bucket_spread(&order, k, rng)
            }
            Sampler::Uncertainty(base) => {
                let sources = sources.ok_or_else(|| {
                    PredictorError::input(
                        "sampler",
                        "the task's source devices (uncertainty runs in an eval task)",
                        "none",
                    )
                })?;
                let first = Sampler::from(base).pick_for_task(
                    data,
                    None,
                    device,
                    valid,
                    k.div_ceil(2),
                    rng,
                )?;
                let column = data.device_index(device)?;
                uncertainty::extend(data, sources, column, first, valid, k, rng)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in [
            "random",
            "params",
            "oracle",
            "zcp-cosine",
            "zcp-kmeans",
            "caz-kmeans",
            "arch2vec-cosine",
            "cate-cosine-spread",
            "caz-kmeans-cosine",
            "uncertainty:params",
            "uncertainty:cate-cosine",
        ] {
            let s: Sampler = name.parse().unwrap();
            assert_eq!(s.to_string(), name);
        }
        assert_eq!(
            "uncertainty".parse::<Sampler>().unwrap(),
            Sampler::Uncertainty(DEFAULT_UNCERTAINTY_BASE)
        );
        let json =
            serde_json::to_string(&Sampler::Encoded(EncodingKind::Caz, Selection::Kmeans)).unwrap();
        assert_eq!(json, "\"caz-kmeans\"");
    }

    #[test]
    fn unknown_names_are_clear_errors() {
        for bad in [
            "zcp-median",
            "foo-cosine",
            "cosine",
            "uncertainty:oracle",
            "",
        ] {
            let err = bad.parse::<Sampler>().unwrap_err().to_string();
            assert!(err.contains("sampler"), "{bad}: {err}");
        }
        let err = "foo-cosine".parse::<Sampler>().unwrap_err().to_string();
        assert!(
            err.contains("<zcp|arch2vec|cate|caz>-<cosine|kmeans|cosine-spread|kmeans-cosine>"),
            "{err}"
        );
    }
}

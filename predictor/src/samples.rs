//! A target device's measured samples as one typed set of (architecture
//! row, latency) pairs: the few-shot pipeline, the service and the NAS take
//! this instead of two parallel vectors that every consumer had to re-check
//! for equal length.

use crate::dataset::SpaceData;
use crate::error::{PredictorError, Result};

/// One measured architecture of the target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Architecture row of the space.
    pub row: usize,
    /// Measured latency (ms).
    pub ms: f64,
}

impl Sample {
    /// Whether the log-ms fits can use it: a finite, positive latency.
    pub fn is_usable(&self) -> bool {
        self.ms.is_finite() && self.ms > 0.0
    }
}

/// The measured samples of one target device, in the order they were given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples {
    items: Vec<Sample>,
}

impl Samples {
    /// A checked set: every latency must be finite and positive, because the
    /// pipeline fits in log-ms and a zero or NaN would poison every fit.
    pub fn new(items: Vec<Sample>) -> Result<Self> {
        if let Some(bad) = items.iter().find(|s| !s.is_usable()) {
            return Err(PredictorError::InvalidSample {
                row: bad.row,
                ms: bad.ms,
            });
        }
        Ok(Samples { items })
    }

    /// The usable samples among `items`, dropping any whose latency is not
    /// finite and positive: for callers that hold measurements validated on
    /// arrival (the service) and must not fail on one that slipped through.
    pub fn usable(items: impl IntoIterator<Item = Sample>) -> Self {
        Samples {
            items: items.into_iter().filter(Sample::is_usable).collect(),
        }
    }

    /// The latencies of `rows` on `device` read from the space's table (the
    /// evaluation protocol, where the table plays the measuring board).
    pub fn from_table(data: &SpaceData, device: &str, rows: &[usize]) -> Result<Self> {
        let column = data.device_index(device)?;
        let items = rows
            .iter()
            .map(|&row| {
                data.latency(column, row)
                    .map(|ms| Sample { row, ms })
                    .ok_or_else(|| PredictorError::MissingLatency {
                        device: device.to_string(),
                        row,
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        Self::new(items)
    }

    /// Number of samples (k).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// No samples at all.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The samples in order.
    pub fn iter(&self) -> impl Iterator<Item = &Sample> {
        self.items.iter()
    }

    /// Architecture rows, in order.
    pub fn rows(&self) -> Vec<usize> {
        self.items.iter().map(|s| s.row).collect()
    }

    /// These samples less every one in `drop` (same row and latency), in
    /// order: what a caller fits on after an outlier test.
    pub fn without(&self, drop: &[Sample]) -> Samples {
        Samples {
            items: self
                .items
                .iter()
                .filter(|s| !drop.contains(s))
                .copied()
                .collect(),
        }
    }

    /// Latencies (ms), in the order of [`Samples::rows`].
    pub fn latencies(&self) -> Vec<f64> {
        self.items.iter().map(|s| s.ms).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_latencies_a_log_fit_cannot_use() {
        for ms in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = Samples::new(vec![Sample { row: 1, ms: 2.0 }, Sample { row: 7, ms }]);
            assert!(
                matches!(err, Err(PredictorError::InvalidSample { row: 7, .. })),
                "{ms} accepted"
            );
        }
        let ok = Samples::new(vec![Sample { row: 3, ms: 2.5 }, Sample { row: 1, ms: 4.0 }]);
        let ok = ok.unwrap();
        assert_eq!(ok.rows(), vec![3, 1]);
        assert_eq!(ok.latencies(), vec![2.5, 4.0]);
    }
}

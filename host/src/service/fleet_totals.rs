//! The home page's fleet-wide queue line. Queued, leased, expired and
//! failed jobs are small index ranges and are counted on every view; done
//! jobs are the fleet's whole measuring history (300,000 rows at 1,000
//! devices x 300), which takes time to count in proportion to it, so that
//! one count is kept for [`DONE_COUNT_TTL`] between views.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::store::jobs::QueueCounts;
use super::store::{Store, StoreResult};

/// How long the fleet's done-job count is reused.
pub const DONE_COUNT_TTL: Duration = Duration::from_secs(60);

/// The fleet's done-job count and when it was taken.
#[derive(Debug, Default)]
pub struct FleetTotals {
    done: Mutex<Option<(Instant, i64)>>,
}

impl FleetTotals {
    /// The fleet's queue counts; `done` may be up to [`DONE_COUNT_TTL`] old.
    pub async fn queue(&self, store: &Store) -> StoreResult<QueueCounts> {
        let mut counts = store.unfinished_queue_counts().await?;
        let kept = *self.done.lock().unwrap_or_else(|p| p.into_inner());
        counts.done = match kept {
            Some((at, n)) if at.elapsed() < DONE_COUNT_TTL => n,
            _ => {
                let n = store.done_jobs().await?;
                *self.done.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), n));
                n
            }
        };
        Ok(counts)
    }
}

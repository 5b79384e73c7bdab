//! One page of the fleet with each device's aggregates, for the dashboard's
//! home page: a handful of grouped queries per page, whatever the fleet's
//! size, instead of loading every device's measurements and jobs (at 253
//! devices and 67,600 measurements that cost 6.4 s of CPU per view).

use std::collections::HashMap;

use nasflat_shared::SearchSpace;
use sqlx::Row;

use super::columns::parse;
use super::devices::{DeviceRow, device};
use super::jobs::QueueCounts;
use super::{Store, StoreResult, int, now_ms};
use crate::service::domain::{JobState, TransferState};

/// The page's devices, oldest first: the subquery the aggregates filter on
/// (a macro, so each query stays one static string).
macro_rules! page_ids {
    () => {
        "SELECT id FROM devices ORDER BY created_ms, id LIMIT $1 OFFSET $2"
    };
}

/// The latest transfer of a device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatestTransfer {
    /// Where it stands.
    pub state: TransferState,
    /// 0..1.
    pub progress: f64,
}

/// A device with what the fleet page shows of it.
#[derive(Debug, Clone)]
pub struct DeviceOverview {
    /// The device.
    pub device: DeviceRow,
    /// Measurements stored (valid or not, any subject).
    pub measurements: i64,
    /// Of those, samples whose label did not settle (kept out of transfers).
    pub unsettled: i64,
    /// Its jobs by state.
    pub queue: QueueCounts,
    /// Its newest transfer, if any.
    pub transfer: Option<LatestTransfer>,
    /// Versions of its served predictors by space.
    pub predictors: Vec<(SearchSpace, String)>,
}

impl Store {
    /// Number of registered devices.
    pub async fn device_count(&self) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM devices")
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Devices `offset..offset + limit` (oldest first, as
    /// [`Store::devices`]) with their aggregates, in four queries.
    pub async fn device_overviews(
        &self,
        offset: usize,
        limit: usize,
    ) -> StoreResult<Vec<DeviceOverview>> {
        let (limit, offset) = (int(limit), int(offset));
        let rows = sqlx::query(
            "SELECT d.id AS id, d.name AS name, d.fingerprint_json AS fingerprint_json, \
             d.created_ms AS created_ms, d.last_seen_ms AS last_seen_ms, \
             (SELECT COUNT(*) FROM measurements m WHERE m.device_id = d.id) AS measurements, \
             (SELECT COUNT(*) FROM measurements m WHERE m.device_id = d.id AND m.settled = 0) AS unsettled \
             FROM devices d ORDER BY d.created_ms, d.id LIMIT $1 OFFSET $2",
        )
        .bind(limit)
        .bind(offset)
        .fetch_all(self.pool())
        .await?;
        let mut page = Vec::with_capacity(rows.len());
        for r in &rows {
            page.push(DeviceOverview {
                device: device(r)?,
                measurements: r.try_get("measurements")?,
                unsettled: r.try_get("unsettled")?,
                queue: QueueCounts::default(),
                transfer: None,
                predictors: Vec::new(),
            });
        }
        let at: HashMap<String, usize> = page
            .iter()
            .enumerate()
            .map(|(i, o)| (o.device.id.clone(), i))
            .collect();
        for (id, state, n, expired) in self.page_queue_counts(limit, offset).await? {
            if let Some(&i) = at.get(&id) {
                page[i].queue.add(state, n, expired);
            }
        }
        for (id, t) in self.page_latest_transfers(limit, offset).await? {
            if let Some(&i) = at.get(&id) {
                page[i].transfer = Some(t);
            }
        }
        let versions = sqlx::query(concat!(
            "SELECT device_id, space, version FROM predictions WHERE device_id IN (",
            page_ids!(),
            ") ORDER BY device_id, space"
        ))
        .bind(limit)
        .bind(offset)
        .fetch_all(self.pool())
        .await?;
        for r in &versions {
            let id: String = r.try_get("device_id")?;
            if let Some(&i) = at.get(&id) {
                let space = parse(&r.try_get::<String, _>("space")?)?;
                page[i].predictors.push((space, r.try_get("version")?));
            }
        }
        Ok(page)
    }

    /// (device, state, jobs, of which expired) of the page's devices.
    async fn page_queue_counts(
        &self,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<(String, JobState, i64, i64)>> {
        let rows = sqlx::query(concat!(
            "SELECT device_id, state, COUNT(*) AS n, \
             SUM(CASE WHEN state = 'leased' AND lease_expires_ms < $3 THEN 1 ELSE 0 END) AS expired \
             FROM jobs WHERE device_id IN (",
            page_ids!(),
            ") GROUP BY device_id, state"
        ))
        .bind(limit)
        .bind(offset)
        .bind(now_ms())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("device_id")?,
                    parse(&r.try_get::<String, _>("state")?)?,
                    r.try_get("n")?,
                    r.try_get("expired")?,
                ))
            })
            .collect()
    }

    /// The newest transfer of each of the page's devices that has one.
    async fn page_latest_transfers(
        &self,
        limit: i64,
        offset: i64,
    ) -> StoreResult<HashMap<String, LatestTransfer>> {
        let rows = sqlx::query(concat!(
            "SELECT device_id, state, progress FROM transfers WHERE device_id IN (",
            page_ids!(),
            ") ORDER BY created_ms DESC, id"
        ))
        .bind(limit)
        .bind(offset)
        .fetch_all(self.pool())
        .await?;
        let mut latest = HashMap::new();
        for r in &rows {
            let id: String = r.try_get("device_id")?;
            if latest.contains_key(&id) {
                continue;
            }
            let t = LatestTransfer {
                state: parse(&r.try_get::<String, _>("state")?)?,
                progress: r.try_get("progress")?,
            };
            latest.insert(id, t);
        }
        Ok(latest)
    }

    /// Stored results per user model.
    pub async fn model_result_counts(&self) -> StoreResult<HashMap<String, i64>> {
        let rows = sqlx::query(
            "SELECT model_id, COUNT(*) AS n FROM measurements WHERE model_id IS NOT NULL \
             GROUP BY model_id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("model_id")?, r.try_get("n")?)))
            .collect()
    }

    /// Queued, leased, expired and failed jobs of the whole fleet (index
    /// ranges of `jobs_state`, small); done jobs are left at 0, see
    /// [`Store::done_jobs`].
    pub async fn unfinished_queue_counts(&self) -> StoreResult<QueueCounts> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n, \
             SUM(CASE WHEN state = 'leased' AND lease_expires_ms < $1 THEN 1 ELSE 0 END) AS expired \
             FROM jobs WHERE state IN ('queued', 'leased', 'failed') GROUP BY state",
        )
        .bind(now_ms())
        .fetch_all(self.pool())
        .await?;
        let mut c = QueueCounts::default();
        for r in &rows {
            c.add(
                parse(&r.try_get::<String, _>("state")?)?,
                r.try_get("n")?,
                r.try_get("expired")?,
            );
        }
        Ok(c)
    }

    /// Done jobs of the whole fleet: its measuring history, so this count
    /// takes time in proportion to it.
    pub async fn done_jobs(&self) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM jobs WHERE state = 'done'")
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get("n")?)
    }
}

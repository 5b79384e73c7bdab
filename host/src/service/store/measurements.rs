//! Measurements uploaded by agents, idempotent on the agent's key (scoped
//! by device: keys of different devices never collide).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::columns::{parse, subject, subject_columns, text};
use super::{Store, StoreError, StoreResult, now_ms};
use crate::service::domain::{Purpose, Subject};

/// A validated measurement to store.
#[derive(Debug, Clone)]
pub struct NewMeasurement {
    /// The agent's idempotency key.
    pub key: String,
    /// Lease it answers, if any.
    pub lease_id: Option<String>,
    /// What was measured.
    pub subject: Subject,
    /// Median latency, ms.
    pub median_ms: f64,
    /// Agent's validity verdict.
    pub valid: bool,
    /// Why not valid.
    pub invalid_reasons: Vec<String>,
    /// The full sample (timing, provenance), JSON.
    pub sample_json: String,
    /// Whether the agent's label settled (`None`: an agent from before the
    /// settle rule, which did not say). A sample that did not settle sends
    /// its job back to the queue (until the job's attempts are used up).
    pub settled: Option<bool>,
}

/// What happened to one measurement of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Stored now, for a job of this purpose ([`Purpose::Adhoc`] without a
    /// known lease).
    New {
        /// Job purpose.
        purpose: Purpose,
        /// The sample did not settle and its job was queued again.
        requeued: bool,
    },
    /// The key was stored before.
    Duplicate,
    /// Refused, with the reason.
    Rejected(String),
}

/// One stored measurement (without the bulky sample JSON).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct MeasurementRow {
    /// Idempotency key.
    pub key: String,
    /// Device.
    pub device_id: String,
    /// Job, if it answered one.
    pub job_id: Option<String>,
    /// What the job it answered was for.
    pub purpose: Purpose,
    /// What was measured.
    #[serde(flatten)]
    pub subject: Subject,
    /// Median latency, ms.
    pub median_ms: f64,
    /// Agent's verdict.
    pub valid: bool,
    /// Why not valid, JSON list.
    pub invalid_reasons: Vec<String>,
    /// Whether the agent's label settled (`None`: not reported, an agent
    /// from before the settle rule). Never used for a transfer when `false`.
    pub settled: Option<bool>,
    /// Receipt time, epoch ms.
    pub received_ms: i64,
}

fn measurement(row: &AnyRow) -> StoreResult<MeasurementRow> {
    let reasons: String = row.try_get("invalid_reasons")?;
    let valid: i64 = row.try_get("valid")?;
    let settled: Option<i64> = row.try_get("settled")?;
    Ok(MeasurementRow {
        key: row.try_get("idempotency_key")?,
        device_id: row.try_get("device_id")?,
        job_id: row.try_get("job_id")?,
        purpose: parse(&row.try_get::<String, _>("purpose")?)?,
        subject: subject(
            row.try_get::<Option<String>, _>("space")?.as_deref(),
            row.try_get("arch_index")?,
            row.try_get("model_id")?,
        )?,
        median_ms: row.try_get("median_ms")?,
        valid: valid != 0,
        invalid_reasons: serde_json::from_str(&reasons).unwrap_or_default(),
        settled: settled.map(|s| s != 0),
        received_ms: row.try_get("received_ms")?,
    })
}

/// What one measurement counts against its device's storage quota: its
/// sample JSON and reasons plus a fixed 256 bytes for the rest of the row.
pub fn stored_size(m: &NewMeasurement) -> i64 {
    let reasons: usize = m.invalid_reasons.iter().map(String::len).sum();
    i64::try_from(m.sample_json.len() + reasons + 256).unwrap_or(i64::MAX)
}

/// Sends the job of a sample that did not settle back to the queue, or,
/// once it has had `max_attempts` leases, fails it saying why. Returns
/// whether it was queued again.
async fn requeue_unsettled(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    job_id: &str,
    max_attempts: i64,
) -> StoreResult<bool> {
    let again = sqlx::query(
        "UPDATE jobs SET state = 'queued', lease_expires_ms = NULL, \
         last_error = 'the sample did not settle; measuring again' \
         WHERE id = $1 AND attempts < $2",
    )
    .bind(job_id)
    .bind(max_attempts)
    .execute(&mut **tx)
    .await?;
    if again.rows_affected() > 0 {
        return Ok(true);
    }
    sqlx::query(
        "UPDATE jobs SET state = 'failed', lease_expires_ms = NULL, \
         last_error = 'no sample settled within the attempts allowed' WHERE id = $1",
    )
    .bind(job_id)
    .execute(&mut **tx)
    .await?;
    Ok(false)
}

impl Store {
    /// Stores a batch of one device's measurements in one transaction and
    /// marks the jobs they answer as done. Returns one outcome per input,
    /// valid only once this returns `Ok` (the transaction committed). If any
    /// outcome is [`StoreOutcome::Rejected`] the transaction is rolled back
    /// and nothing of the batch is stored (the other outcomes then say what
    /// would have happened). A batch that would take the device's stored
    /// bytes ([`stored_size`] of its measurements) past the store's
    /// per-device quota ([`Store::with_device_quota`]) is not stored:
    /// [`StoreError::QuotaExceeded`].
    pub async fn store_measurements(
        &self,
        device_id: &str,
        items: &[NewMeasurement],
    ) -> StoreResult<Vec<StoreOutcome>> {
        let quota_bytes = self.device_quota_bytes();
        let now = now_ms();
        let _w = self.write().await;
        let mut tx = self.pool().begin().await?;
        // Writing first takes SQLite's write lock up front; it also records
        // that the device was seen.
        sqlx::query("UPDATE devices SET last_seen_ms = $1 WHERE id = $2")
            .bind(now)
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        let mut outcomes = Vec::with_capacity(items.len());
        let mut new_bytes = 0i64;
        for m in items {
            let job = match &m.lease_id {
                Some(lease) => sqlx::query(
                    "SELECT j.id AS id, j.purpose AS purpose, j.space AS space, \
                     j.arch_index AS arch_index, j.model_id AS model_id \
                     FROM leases l JOIN jobs j ON j.id = l.job_id \
                     WHERE l.id = $1 AND l.device_id = $2",
                )
                .bind(lease)
                .bind(device_id)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| -> StoreResult<_> {
                    Ok((
                        r.try_get::<String, _>("id")?,
                        parse::<Purpose>(&r.try_get::<String, _>("purpose")?)?,
                        subject(
                            r.try_get::<Option<String>, _>("space")?.as_deref(),
                            r.try_get("arch_index")?,
                            r.try_get("model_id")?,
                        )?,
                    ))
                })
                .transpose()?,
                None => None,
            };
            if let Some((_, _, leased)) = &job
                && leased != &m.subject
            {
                outcomes.push(StoreOutcome::Rejected(
                    "the result does not match the job of its lease".into(),
                ));
                continue;
            }
            let (job_id, purpose) = match &job {
                Some((id, purpose, _)) => (Some(id.clone()), *purpose),
                None => (None, Purpose::Adhoc),
            };
            let (kind, space, index, model) = subject_columns(&m.subject);
            let inserted = sqlx::query(
                "INSERT INTO measurements (idempotency_key, device_id, job_id, lease_id, purpose, \
                 kind, space, arch_index, model_id, median_ms, valid, invalid_reasons, sample_json, \
                 received_ms, settled) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
                 ON CONFLICT (device_id, idempotency_key) DO NOTHING",
            )
            .bind(&m.key)
            .bind(device_id)
            .bind(job_id.clone())
            .bind(m.lease_id.clone())
            .bind(text(purpose))
            .bind(kind)
            .bind(space)
            .bind(index)
            .bind(model)
            .bind(m.median_ms)
            .bind(i64::from(m.valid))
            .bind(serde_json::to_string(&m.invalid_reasons).unwrap_or_else(|_| "[]".into()))
            .bind(&m.sample_json)
            .bind(now)
            .bind(m.settled.map(i64::from))
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 0 {
                outcomes.push(StoreOutcome::Duplicate);
                continue;
            }
            let requeued = match &job_id {
                Some(id) if m.settled == Some(false) => {
                    requeue_unsettled(&mut tx, id, self.max_attempts()).await?
                }
                Some(id) => {
                    sqlx::query(
                        "UPDATE jobs SET state = 'done', lease_expires_ms = NULL, \
                         last_error = NULL WHERE id = $1",
                    )
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    false
                }
                None => false,
            };
            new_bytes = new_bytes.saturating_add(stored_size(m));
            outcomes.push(StoreOutcome::New { purpose, requeued });
        }
        if outcomes
            .iter()
            .any(|o| matches!(o, StoreOutcome::Rejected(_)))
        {
            tx.rollback().await?;
            return Ok(outcomes);
        }
        let quota = i64::try_from(quota_bytes).unwrap_or(i64::MAX);
        let within = sqlx::query(
            "UPDATE devices SET stored_bytes = stored_bytes + $1 \
             WHERE id = $2 AND stored_bytes + $1 <= $3",
        )
        .bind(new_bytes)
        .bind(device_id)
        .bind(quota)
        .execute(&mut *tx)
        .await?;
        if new_bytes > 0 && within.rows_affected() == 0 {
            tx.rollback().await?;
            return Err(StoreError::QuotaExceeded {
                device: device_id.to_string(),
                quota_bytes,
            });
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    /// A device's measurements, oldest first.
    pub async fn measurements_of_device(
        &self,
        device_id: &str,
    ) -> StoreResult<Vec<MeasurementRow>> {
        let rows = sqlx::query(
            "SELECT idempotency_key, device_id, job_id, purpose, kind, space, arch_index, model_id, \
             median_ms, valid, invalid_reasons, settled, received_ms FROM measurements \
             WHERE device_id = $1 ORDER BY received_ms, idempotency_key",
        )
        .bind(device_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(measurement).collect()
    }

    /// Measurements of a user model, across devices.
    pub async fn measurements_of_model(&self, model_id: &str) -> StoreResult<Vec<MeasurementRow>> {
        let rows = sqlx::query(
            "SELECT idempotency_key, device_id, job_id, purpose, kind, space, arch_index, model_id, \
             median_ms, valid, invalid_reasons, settled, received_ms FROM measurements \
             WHERE model_id = $1 ORDER BY device_id, received_ms",
        )
        .bind(model_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(measurement).collect()
    }

    /// The full sample JSON of one measurement of a device.
    pub async fn sample_json(&self, device_id: &str, key: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query(
            "SELECT sample_json FROM measurements WHERE device_id = $1 AND idempotency_key = $2",
        )
        .bind(device_id)
        .bind(key)
        .fetch_optional(self.pool())
        .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("sample_json")?),
            None => None,
        })
    }

    /// Number of stored measurements (all devices).
    pub async fn count_measurements(&self) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM measurements")
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get("n")?)
    }
}

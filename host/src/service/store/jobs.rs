//! The measurement queue and its leases.
//!
//! A job belongs to one device. `plan` leases queued jobs (or jobs whose
//! lease expired: they return to the queue without a sweeper) with a
//! conditional `UPDATE ... WHERE state ...` per job, which is atomic on both
//! backends, so two replicas or two concurrent plans never lease one job
//! twice. Heartbeats push the expiry forward; a release or too many failed
//! attempts end the lease early.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

pub use super::new_job::NewJob;

use super::columns::{parse, subject, subject_columns, text};
use super::{Store, StoreResult, int, new_id, now_ms};
use crate::service::domain::{JobState, Purpose, Subject};

/// One job row.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JobRow {
    /// Job id.
    pub id: String,
    /// Device that should measure it.
    pub device_id: String,
    /// Why it was queued.
    pub purpose: Purpose,
    /// What to measure.
    #[serde(flatten)]
    pub subject: Subject,
    /// Input overrides, JSON list.
    pub inputs_json: String,
    /// Where it stands.
    pub state: JobState,
    /// Current (or last) lease.
    pub lease_id: Option<String>,
    /// Lease expiry, epoch ms.
    pub lease_expires_ms: Option<i64>,
    /// Leases granted so far.
    pub attempts: i64,
    /// Why the last attempt was given up.
    pub last_error: Option<String>,
    /// Creation time, epoch ms.
    pub created_ms: i64,
}

fn job(row: &AnyRow) -> StoreResult<JobRow> {
    Ok(JobRow {
        id: row.try_get("id")?,
        device_id: row.try_get("device_id")?,
        purpose: parse(&row.try_get::<String, _>("purpose")?)?,
        subject: subject(
            row.try_get::<Option<String>, _>("space")?.as_deref(),
            row.try_get("arch_index")?,
            row.try_get("model_id")?,
        )?,
        inputs_json: row.try_get("inputs_json")?,
        state: parse(&row.try_get::<String, _>("state")?)?,
        lease_id: row.try_get("lease_id")?,
        lease_expires_ms: row.try_get("lease_expires_ms")?,
        attempts: row.try_get("attempts")?,
        last_error: row.try_get("last_error")?,
        created_ms: row.try_get("created_ms")?,
    })
}

/// A lease granted by [`Store::claim_jobs`].
#[derive(Debug, Clone)]
pub struct Granted {
    /// The new lease id.
    pub lease_id: String,
    /// The job (as it was before leasing).
    pub job: JobRow,
    /// Whether the job came back from an expired lease.
    pub reclaimed: bool,
    /// Whether this lease was granted by an earlier call with the same plan
    /// key and is answered again.
    pub replayed: bool,
}

/// Counts of the queue by state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct QueueCounts {
    /// Waiting for a device.
    pub queued: i64,
    /// Leased and not expired.
    pub leased: i64,
    /// Leased but expired (back in the queue on the next plan).
    pub expired: i64,
    /// Measured.
    pub done: i64,
    /// Given up.
    pub failed: i64,
}

impl QueueCounts {
    /// Adds `n` jobs in `state`, `expired` of them with a lapsed lease.
    pub(super) fn add(&mut self, state: JobState, n: i64, expired: i64) {
        match state {
            JobState::Queued => self.queued += n,
            JobState::Leased => {
                self.expired += expired;
                self.leased += n - expired;
            }
            JobState::Done => self.done += n,
            JobState::Failed => self.failed += n,
        }
    }
}

/// The column counting a group's leased jobs whose lease ended before `$1`.
macro_rules! expired_sum {
    () => {
        "SUM(CASE WHEN state = 'leased' AND lease_expires_ms < $1 THEN 1 ELSE 0 END) AS expired"
    };
}

/// `SELECT` of every column [`job`] reads, then `$tail` (a literal: the
/// query stays a static string that sqlx accepts without an audit).
macro_rules! select_jobs {
    ($tail:literal) => {
        concat!(
            "SELECT id, device_id, purpose, space, arch_index, model_id, inputs_json, state, \
             lease_id, lease_expires_ms, attempts, last_error, created_ms FROM jobs ",
            $tail
        )
    };
}

const JOB_COLUMNS_SQL_BY_DEVICE: &str = select_jobs!("WHERE device_id = $1 ORDER BY seq, id");

/// Inserts queued jobs inside the caller's transaction (so a caller can
/// write them together with what they belong to); returns their ids.
pub(super) async fn insert_job_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    device_id: &str,
    purpose: Purpose,
    jobs: &[NewJob],
) -> StoreResult<Vec<String>> {
    let now = now_ms();
    let mut ids = Vec::with_capacity(jobs.len());
    // A registration queues k jobs: one multi-row INSERT per chunk, not one
    // statement per job, so 1,000 agents registering at once do not hold
    // the write lock for 300 statements each.
    for (c, chunk) in jobs.chunks(JOB_INSERT_CHUNK).enumerate() {
        let rows: Vec<String> = (0..chunk.len())
            .map(|r| {
                let k = 4 + 6 * r;
                format!(
                    "(${k}, $1, $2, ${}, ${}, ${}, ${}, 'queued', NULL, NULL, 0, NULL, ${}, $3)",
                    k + 1,
                    k + 2,
                    k + 3,
                    k + 4,
                    k + 5
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO jobs (id, device_id, purpose, space, arch_index, model_id, inputs_json, \
             state, lease_id, lease_expires_ms, attempts, last_error, seq, created_ms) VALUES {}",
            rows.join(", ")
        );
        // Audited: `sql` is a literal plus generated `$N` placeholders; every
        // value is bound.
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(device_id)
            .bind(text(purpose))
            .bind(now);
        for (r, j) in chunk.iter().enumerate() {
            let id = new_id("job");
            let (what, inputs) = match j {
                NewJob::Arch { space, index } => (
                    Subject::Arch {
                        space: *space,
                        arch_index: *index,
                    },
                    "[]".to_string(),
                ),
                NewJob::Model { model_id, inputs } => (
                    Subject::Model {
                        model_id: model_id.clone(),
                    },
                    serde_json::to_string(inputs).unwrap_or_else(|_| "[]".into()),
                ),
            };
            let (_, space, index, model) = subject_columns(&what);
            let i = c * JOB_INSERT_CHUNK + r;
            query = query
                .bind(id.clone())
                .bind(space)
                .bind(index)
                .bind(model)
                .bind(inputs)
                .bind(now.saturating_mul(1000).saturating_add(int(i)));
            ids.push(id);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(ids)
}

/// Jobs per INSERT statement (6 bound values each). Small on purpose: the
/// SQLite driver looks up every `$N` placeholder by a linear scan of the
/// statement's parameter list, so binding a statement costs the square of
/// its parameters; at 200 jobs (1,203 values) that lookup was most of a
/// registration's CPU (docs/experiments/host_hardening.md, "Registration
/// storm").
const JOB_INSERT_CHUNK: usize = 32;

impl Store {
    /// Queues jobs for a device in one transaction; returns their ids.
    pub async fn insert_jobs(
        &self,
        device_id: &str,
        purpose: Purpose,
        jobs: &[NewJob],
    ) -> StoreResult<Vec<String>> {
        let _w = self.write().await;
        let mut tx = self.pool().begin().await?;
        let ids = insert_job_rows(&mut tx, device_id, purpose, jobs).await?;
        tx.commit().await?;
        Ok(ids)
    }

    /// Leases up to `max` of a device's queued (or expired) jobs for
    /// `lease_ms`, and marks the device as seen, in one transaction (its
    /// first statement writes, so SQLite takes the write lock up front).
    ///
    /// With a plan `key` ([`nasflat_shared::protocol::PLAN_KEY_HEADER`]),
    /// the lease ids carry it, and a repeated call with the same key answers
    /// the leases still held under it (renewed) instead of leasing more: the
    /// agent retries a plan whose response it never received, and the jobs
    /// leased by the lost response are not stranded until their leases
    /// expire.
    pub async fn claim_jobs(
        &self,
        device_id: &str,
        max: usize,
        lease_ms: i64,
        key: Option<&str>,
    ) -> StoreResult<Vec<Granted>> {
        let now = now_ms();
        let prefix = format!("lease-{}", key.unwrap_or_default());
        let _w = self.write().await;
        let mut tx = self.pool().begin().await?;
        sqlx::query("UPDATE devices SET last_seen_ms = $1 WHERE id = $2")
            .bind(now)
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        if key.is_some() {
            let replayed = replay_leases(&mut tx, device_id, &prefix, now, lease_ms).await?;
            if !replayed.is_empty() {
                tx.commit().await?;
                return Ok(replayed);
            }
        }
        let mut granted = Vec::new();
        // A job another replica leased between our SELECT and UPDATE is
        // skipped (the UPDATE re-checks its state); then look again, so a
        // planner that lost races still gets the jobs that are left.
        for _round in 0..8 {
            let need = max.saturating_sub(granted.len());
            if need == 0 {
                break;
            }
            let candidates = sqlx::query(
                select_jobs!(
                 "WHERE device_id = $1 AND (state = 'queued' OR (state = 'leased' AND lease_expires_ms < $2)) \
                 ORDER BY seq, id LIMIT $3"
                ),
            )
            .bind(device_id)
            .bind(now)
            .bind(int(need))
            .fetch_all(&mut *tx)
            .await?;
            if candidates.is_empty() {
                break;
            }
            let mut lost_race = false;
            for row in &candidates {
                let job = job(row)?;
                let lease_id = new_id(&prefix);
                let updated = sqlx::query(
                    "UPDATE jobs SET state = 'leased', lease_id = $1, lease_expires_ms = $2, \
                     attempts = attempts + 1 \
                     WHERE id = $3 AND (state = 'queued' OR (state = 'leased' AND lease_expires_ms < $4))",
                )
                .bind(&lease_id)
                .bind(now.saturating_add(lease_ms))
                .bind(&job.id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if updated.rows_affected() != 1 {
                    lost_race = true;
                    continue;
                }
                sqlx::query(
                    "INSERT INTO leases (id, job_id, device_id, granted_ms) VALUES ($1, $2, $3, $4)",
                )
                .bind(&lease_id)
                .bind(&job.id)
                .bind(device_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                granted.push(Granted {
                    lease_id,
                    reclaimed: job.state == JobState::Leased,
                    replayed: false,
                    job,
                });
            }
            if !lost_race {
                break;
            }
        }
        tx.commit().await?;
        Ok(granted)
    }

    /// Renews leases held by `device_id`; returns (renewed, lost).
    pub async fn renew_leases(
        &self,
        device_id: &str,
        lease_ids: &[String],
        lease_ms: i64,
    ) -> StoreResult<(Vec<String>, Vec<String>)> {
        let expires = now_ms().saturating_add(lease_ms);
        let (mut renewed, mut lost) = (Vec::new(), Vec::new());
        let _w = self.write().await;
        let mut tx = self.pool().begin().await?;
        for id in lease_ids {
            let r = sqlx::query(
                "UPDATE jobs SET lease_expires_ms = $1 \
                 WHERE lease_id = $2 AND device_id = $3 AND state = 'leased'",
            )
            .bind(expires)
            .bind(id)
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
            if r.rows_affected() == 1 {
                renewed.push(id.clone());
            } else {
                lost.push(id.clone());
            }
        }
        tx.commit().await?;
        Ok((renewed, lost))
    }

    /// Returns leases to the queue (or fails the job after `max_attempts`).
    /// Returns how many leases were released. One UPDATE for the whole batch,
    /// so the write gate is held for one statement however many ids come
    /// (the API caps the batch, which also bounds the placeholders).
    pub async fn release_leases(
        &self,
        device_id: &str,
        lease_ids: &[String],
        reason: &str,
        max_attempts: i64,
    ) -> StoreResult<usize> {
        if lease_ids.is_empty() {
            return Ok(0);
        }
        let placeholders: Vec<String> = (0..lease_ids.len())
            .map(|i| format!("${}", i + 4))
            .collect();
        let sql = format!(
            "UPDATE jobs SET \
             state = CASE WHEN attempts >= $1 THEN 'failed' ELSE 'queued' END, \
             lease_expires_ms = NULL, last_error = $2 \
             WHERE device_id = $3 AND state = 'leased' AND lease_id IN ({})",
            placeholders.join(", ")
        );
        // Audited: `sql` is a literal plus generated `$N` placeholders; every
        // value is bound.
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(max_attempts)
            .bind(reason)
            .bind(device_id);
        for id in lease_ids {
            query = query.bind(id);
        }
        let _w = self.write().await;
        let r = query.execute(self.pool()).await?;
        Ok(usize::try_from(r.rows_affected()).unwrap_or(0))
    }

    /// Every job of a device, in queue order.
    pub async fn jobs_of_device(&self, device_id: &str) -> StoreResult<Vec<JobRow>> {
        let rows = sqlx::query(JOB_COLUMNS_SQL_BY_DEVICE)
            .bind(device_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(job).collect()
    }

    /// Jobs not yet measured (queued or leased), across devices, oldest first.
    pub async fn open_jobs(&self, limit: usize) -> StoreResult<Vec<JobRow>> {
        let rows = sqlx::query(select_jobs!(
            "WHERE state IN ('queued', 'leased') ORDER BY seq, id LIMIT $1"
        ))
        .bind(int(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(job).collect()
    }

    /// Queue counts, for one device or all, counted by the database.
    pub async fn queue_counts(&self, device_id: Option<&str>) -> StoreResult<QueueCounts> {
        // Two statements, not `($1 = '' OR device_id = $1)`: SQLite's plan
        // for that cannot use the device index and scans every job.
        let rows = match device_id {
            Some(id) => sqlx::query(concat!(
                "SELECT state, COUNT(*) AS n, ",
                expired_sum!(),
                " FROM jobs WHERE device_id = $2 GROUP BY state"
            ))
            .bind(now_ms())
            .bind(id),
            None => sqlx::query(concat!(
                "SELECT state, COUNT(*) AS n, ",
                expired_sum!(),
                " FROM jobs GROUP BY state"
            ))
            .bind(now_ms()),
        }
        .fetch_all(self.pool())
        .await?;
        let mut c = QueueCounts::default();
        for r in &rows {
            let state: JobState = parse(&r.try_get::<String, _>("state")?)?;
            c.add(state, r.try_get("n")?, r.try_get("expired")?);
        }
        Ok(c)
    }
}

/// The device's jobs still leased under `prefix` (an earlier plan with the
/// same key), their leases renewed for `lease_ms`.
async fn replay_leases(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    device_id: &str,
    prefix: &str,
    now: i64,
    lease_ms: i64,
) -> StoreResult<Vec<Granted>> {
    // `prefix` + '-' + random hex: compare the whole prefix with its dash so
    // one key is never a prefix match of another. The length is cast:
    // PostgreSQL has substr(text, integer, integer), not bigint.
    let head = format!("{prefix}-");
    let rows = sqlx::query(select_jobs!(
        "WHERE device_id = $1 AND state = 'leased' AND substr(lease_id, 1, CAST($2 AS INTEGER)) = $3 \
         ORDER BY seq, id"
    ))
    .bind(device_id)
    .bind(int(head.len()))
    .bind(&head)
    .fetch_all(&mut **tx)
    .await?;
    let mut replayed = Vec::with_capacity(rows.len());
    for row in &rows {
        let job = job(row)?;
        let Some(lease_id) = job.lease_id.clone() else {
            continue;
        };
        sqlx::query("UPDATE jobs SET lease_expires_ms = $1 WHERE id = $2 AND lease_id = $3")
            .bind(now.saturating_add(lease_ms))
            .bind(&job.id)
            .bind(&lease_id)
            .execute(&mut **tx)
            .await?;
        replayed.push(Granted {
            lease_id,
            reclaimed: false,
            replayed: true,
            job,
        });
    }
    Ok(replayed)
}

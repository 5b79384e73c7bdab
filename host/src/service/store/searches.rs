//! Latency-constrained searches, their verification jobs (queued in the
//! search's own transaction, read back by job id) and the residuals their
//! bound is made of.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use nasflat_predictor::nas::Objective;
use nasflat_shared::SearchSpace;

use crate::service::domain::{JobState, Purpose};

use super::columns::{parse, text};
use super::jobs::{NewJob, insert_job_rows};
use super::{Store, StoreError, StoreResult, decode_f64s, encode_f64s};

/// What answered a search's latencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SearchSource {
    /// An agent device's transferred predictor (predictions + residual bound).
    Transfer,
    /// A built-in device's measured table (exact: the bound is the latency).
    Table,
}

impl SearchSource {
    /// The stored (and served) name.
    pub fn name(self) -> &'static str {
        match self {
            SearchSource::Transfer => "transfer",
            SearchSource::Table => "table",
        }
    }
}

impl fmt::Display for SearchSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SearchSource {
    type Err = StoreError;
    fn from_str(s: &str) -> StoreResult<Self> {
        match s {
            "transfer" => Ok(SearchSource::Transfer),
            "table" => Ok(SearchSource::Table),
            _ => Err(StoreError::Corrupt(format!("search source `{s}`"))),
        }
    }
}

/// One ranked candidate of a stored search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredCandidate {
    /// Architecture row of the space.
    pub index: usize,
    /// Predicted latency (ms).
    pub predicted_ms: f64,
    /// Upper bound at the search's risk (ms).
    pub upper_ms: f64,
    /// Objective value.
    pub objective: f64,
    /// The verification job measuring it, if one was queued.
    pub job_id: Option<String>,
}

/// A stored search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRow {
    /// Search id.
    pub id: String,
    /// Agent id or built-in `SPACE:NAME`.
    pub device_id: String,
    /// Space.
    pub space: SearchSpace,
    /// What it maximised.
    pub objective: Objective,
    /// The budget (ms).
    pub max_latency_ms: f64,
    /// Accepted chance of exceeding it.
    pub risk: f64,
    /// Version of the predictor (or table) that answered.
    pub predictor_version: String,
    /// What answered.
    pub source: SearchSource,
    /// Log-ms factor of the bound.
    pub residual_quantile: f64,
    /// Ranked candidates, best first, then the probes beyond the bound.
    pub candidates: Vec<StoredCandidate>,
    /// Creation, epoch ms.
    pub created_ms: i64,
}

impl SearchRow {
    /// How many candidates are probes (their bound exceeds the budget; the
    /// ranked ones are all within it).
    pub fn probes(&self) -> usize {
        self.candidates
            .iter()
            .filter(|c| c.upper_ms > self.max_latency_ms)
            .count()
    }
}

const SEARCH_BY_ID_SQL: &str = "SELECT id, device_id, space, objective, max_latency_ms, risk, \
     predictor_version, source, residual_quantile, candidates_json, created_ms FROM searches \
     WHERE id = $1";

const LATEST_SEARCH_SQL: &str = "SELECT id, device_id, space, objective, max_latency_ms, risk, \
     predictor_version, source, residual_quantile, candidates_json, created_ms FROM searches \
     WHERE device_id = $1 AND space = $2 ORDER BY created_ms DESC, id DESC LIMIT 1";

/// `$1, $2, ..., $n`.
fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Job states and valid measured ms of a search's verification jobs, by job id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verification {
    /// State of each job found.
    pub states: HashMap<String, JobState>,
    /// Latest valid measurement of each measured job (ms).
    pub measured_ms: HashMap<String, f64>,
}

async fn insert_search_row(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    s: &SearchRow,
) -> StoreResult<()> {
    let json = serde_json::to_string(&s.candidates)
        .map_err(|e| StoreError::Corrupt(format!("search candidates: {e}")))?;
    sqlx::query(
        "INSERT INTO searches (id, device_id, space, objective, max_latency_ms, risk, \
         predictor_version, source, residual_quantile, candidates_json, created_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&s.id)
    .bind(&s.device_id)
    .bind(text(s.space))
    .bind(s.objective.name())
    .bind(s.max_latency_ms)
    .bind(s.risk)
    .bind(&s.predictor_version)
    .bind(s.source.name())
    .bind(s.residual_quantile)
    .bind(json)
    .bind(s.created_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn search_row(row: &AnyRow) -> StoreResult<SearchRow> {
    let json: String = row.try_get("candidates_json")?;
    let source: String = row.try_get("source")?;
    let space: String = row.try_get("space")?;
    let objective: String = row.try_get("objective")?;
    Ok(SearchRow {
        id: row.try_get("id")?,
        device_id: row.try_get("device_id")?,
        space: parse(&space)?,
        objective: objective
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("search objective: {e}")))?,
        max_latency_ms: row.try_get("max_latency_ms")?,
        risk: row.try_get("risk")?,
        predictor_version: row.try_get("predictor_version")?,
        source: source.parse()?,
        residual_quantile: row.try_get("residual_quantile")?,
        candidates: serde_json::from_str(&json)
            .map_err(|e| StoreError::Corrupt(format!("search candidates: {e}")))?,
        created_ms: row.try_get("created_ms")?,
    })
}

impl Store {
    /// Stores a search (no verification jobs).
    pub async fn insert_search(&self, s: &SearchRow) -> StoreResult<()> {
        let _w = self.write().await;
        let mut tx = self.pool().begin().await?;
        insert_search_row(&mut tx, s).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Queues the verification jobs of `s`'s candidates at the positions
    /// `verify` (out-of-range ones ignored) for its device, records their
    /// ids on those candidates and stores the
    /// search, in **one** transaction: a crash or a failed insert leaves
    /// neither jobs without their search nor a search without its jobs.
    pub async fn insert_search_with_verification(
        &self,
        s: &mut SearchRow,
        verify: &[usize],
    ) -> StoreResult<()> {
        let positions: Vec<usize> = verify
            .iter()
            .copied()
            .filter(|&p| p < s.candidates.len())
            .collect();
        let top: Vec<NewJob> = positions
            .iter()
            .map(|&p| NewJob::Arch {
                space: s.space,
                index: s.candidates[p].index,
            })
            .collect();
        let _w = self.write().await;
        let mut tx = self.pool().begin().await?;
        let ids = insert_job_rows(&mut tx, &s.device_id, Purpose::Verify, &top).await?;
        let mut stored = s.clone();
        for (&p, id) in positions.iter().zip(ids) {
            stored.candidates[p].job_id = Some(id);
        }
        insert_search_row(&mut tx, &stored).await?;
        tx.commit().await?;
        *s = stored;
        Ok(())
    }

    /// The states and valid measured latencies of exactly these verification
    /// jobs (a search's), by job id: primary-key lookups on `jobs` and the
    /// `measurements_job` index (migration 0003), never a device's history.
    pub async fn verification(&self, job_ids: &[String]) -> StoreResult<Verification> {
        let mut out = Verification::default();
        if job_ids.is_empty() {
            return Ok(out);
        }
        let list = placeholders(job_ids.len());
        let jobs_sql = format!("SELECT id, state FROM jobs WHERE id IN ({list})");
        // Audited: a literal plus generated `$N` placeholders; every value is bound.
        let mut q = sqlx::query(AssertSqlSafe(jobs_sql));
        for id in job_ids {
            q = q.bind(id);
        }
        for row in q.fetch_all(self.pool()).await? {
            let state: String = row.try_get("state")?;
            out.states
                .insert(row.try_get("id")?, parse::<JobState>(&state)?);
        }
        let measured_sql = format!(
            "SELECT job_id, median_ms FROM measurements WHERE job_id IN ({list}) \
             AND valid = 1 AND purpose = 'verify' ORDER BY received_ms, idempotency_key"
        );
        let mut q = sqlx::query(AssertSqlSafe(measured_sql));
        for id in job_ids {
            q = q.bind(id);
        }
        for row in q.fetch_all(self.pool()).await? {
            out.measured_ms
                .insert(row.try_get("job_id")?, row.try_get("median_ms")?);
        }
        Ok(out)
    }

    /// One search.
    pub async fn search(&self, id: &str) -> StoreResult<Option<SearchRow>> {
        let row = sqlx::query(SEARCH_BY_ID_SQL)
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(search_row).transpose()
    }

    /// The newest search of a device in a space, if any.
    pub async fn latest_search(
        &self,
        device_id: &str,
        space: SearchSpace,
    ) -> StoreResult<Option<SearchRow>> {
        let row = sqlx::query(LATEST_SEARCH_SQL)
            .bind(device_id)
            .bind(text(space))
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(search_row).transpose()
    }

    /// Stores (replaces) the residuals of a device's served predictor `version`.
    pub async fn put_residuals(
        &self,
        device_id: &str,
        space: SearchSpace,
        version: &str,
        residuals: &[f64],
    ) -> StoreResult<()> {
        let _w = self.write().await;
        sqlx::query(
            "INSERT INTO prediction_residuals (device_id, space, version, residuals) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (device_id, space) DO UPDATE SET \
             version = excluded.version, residuals = excluded.residuals",
        )
        .bind(device_id)
        .bind(text(space))
        .bind(version)
        .bind(encode_f64s(residuals))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The residuals of exactly `version` of a device's predictor (`None`
    /// when that version stored none: an older transfer).
    pub async fn residuals(
        &self,
        device_id: &str,
        space: SearchSpace,
        version: &str,
    ) -> StoreResult<Option<Vec<f64>>> {
        let row = sqlx::query(
            "SELECT residuals FROM prediction_residuals \
             WHERE device_id = $1 AND space = $2 AND version = $3",
        )
        .bind(device_id)
        .bind(text(space))
        .bind(version)
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(r) => Ok(Some(decode_f64s(&r.try_get::<Vec<u8>, _>("residuals")?)?)),
            None => Ok(None),
        }
    }
}

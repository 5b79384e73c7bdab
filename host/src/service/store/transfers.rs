//! Transfer jobs and the predictions they produce.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use nasflat_shared::SearchSpace;

use super::columns::{parse, text};
use super::{Store, StoreResult, decode_f64s, encode_f64s, int, now_ms};
use crate::service::domain::{TransferState, Trigger};
use crate::service::fit_choice::FitChoice;

/// One transfer job.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TransferRow {
    /// Transfer id.
    pub id: String,
    /// Target device.
    pub device_id: String,
    /// Space.
    pub space: SearchSpace,
    /// Where it stands.
    pub state: TransferState,
    /// 0..1.
    pub progress: f64,
    /// What it is doing, or why it failed.
    pub message: String,
    /// Target samples used.
    pub samples: i64,
    /// What started it.
    pub trigger: Trigger,
    /// Start, epoch ms.
    pub created_ms: i64,
    /// End, epoch ms.
    pub finished_ms: Option<i64>,
}

fn transfer(row: &AnyRow) -> StoreResult<TransferRow> {
    Ok(TransferRow {
        id: row.try_get("id")?,
        device_id: row.try_get("device_id")?,
        space: parse(&row.try_get::<String, _>("space")?)?,
        state: parse(&row.try_get::<String, _>("state")?)?,
        progress: row.try_get("progress")?,
        message: row.try_get("message")?,
        samples: row.try_get("samples")?,
        trigger: parse(&row.try_get::<String, _>("trigger_kind")?)?,
        created_ms: row.try_get("created_ms")?,
        finished_ms: row.try_get("finished_ms")?,
    })
}

/// A transfer's result, to serve: [`Store::put_predictions`] replaces the
/// device's predictions in the space with it.
#[derive(Debug, Clone, Copy)]
pub struct NewPredictions<'a> {
    /// Target device.
    pub device_id: &'a str,
    /// Space.
    pub space: SearchSpace,
    /// Version string served with every prediction.
    pub version: &'a str,
    /// Transfer that made it.
    pub transfer_id: &'a str,
    /// Pretrained checkpoint it started from.
    pub base_version: &'a str,
    /// Source device whose embedding initialised the target's.
    pub init_from: Option<&'a str>,
    /// Table rows of the samples it was fitted on.
    pub train_rows: &'a [usize],
    /// Predicted ms per table row.
    pub latencies: &'a [f64],
    /// The choices the fit made.
    pub choice: Option<&'a FitChoice>,
}

/// The served predictor of one device and space.
#[derive(Debug, Clone)]
pub struct PredictionRow {
    /// Version string served with every prediction.
    pub version: String,
    /// Transfer that made it.
    pub transfer_id: String,
    /// Pretrained checkpoint it started from.
    pub base_version: String,
    /// Source device whose embedding initialised the target's.
    pub init_from: Option<String>,
    /// Table rows of the samples it was fitted on.
    pub train_rows: Vec<usize>,
    /// Predicted ms per table row.
    pub latencies: Vec<f64>,
    /// The choices the fit made (`None` for predictions stored before
    /// they were recorded).
    pub choice: Option<FitChoice>,
    /// Creation, epoch ms.
    pub created_ms: i64,
}

impl Store {
    /// Records a new transfer job ([`TransferState::Queued`]).
    pub async fn insert_transfer(
        &self,
        id: &str,
        device_id: &str,
        space: SearchSpace,
        trigger: Trigger,
    ) -> StoreResult<()> {
        let _w = self.write().await;
        sqlx::query(
            "INSERT INTO transfers (id, device_id, space, state, progress, message, samples, \
             trigger_kind, created_ms, finished_ms) \
             VALUES ($1, $2, $3, $4, 0.0, 'queued', 0, $5, $6, NULL)",
        )
        .bind(id)
        .bind(device_id)
        .bind(text(space))
        .bind(text(TransferState::Queued))
        .bind(text(trigger))
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Updates a transfer's state, progress and message; a done or failed
    /// transfer gets its end time.
    pub async fn update_transfer(
        &self,
        id: &str,
        state: TransferState,
        progress: f64,
        message: &str,
        samples: usize,
    ) -> StoreResult<()> {
        let finished = matches!(state, TransferState::Done | TransferState::Failed);
        let _w = self.write().await;
        sqlx::query(
            "UPDATE transfers SET state = $1, progress = $2, message = $3, samples = $4, \
             finished_ms = $5 WHERE id = $6",
        )
        .bind(text(state))
        .bind(progress)
        .bind(message)
        .bind(int(samples))
        .bind(finished.then(now_ms))
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Marks transfers left `queued`/`running` by a previous process as failed.
    pub async fn fail_interrupted_transfers(&self) -> StoreResult<u64> {
        let _w = self.write().await;
        let r = sqlx::query(
            "UPDATE transfers SET state = 'failed', message = 'interrupted by a host restart', \
             finished_ms = $1 WHERE state IN ('queued', 'running')",
        )
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected())
    }

    /// One transfer.
    pub async fn transfer(&self, id: &str) -> StoreResult<Option<TransferRow>> {
        let row = sqlx::query(
            "SELECT id, device_id, space, state, progress, message, samples, \
             trigger_kind, created_ms, finished_ms FROM transfers WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(transfer).transpose()
    }

    /// Transfers of a device (all devices with `""`), newest first.
    pub async fn transfers(&self, device_id: &str) -> StoreResult<Vec<TransferRow>> {
        let rows = sqlx::query(
            "SELECT id, device_id, space, state, progress, message, samples, \
             trigger_kind, created_ms, finished_ms FROM transfers \
             WHERE ($1 = '' OR device_id = $1) ORDER BY created_ms DESC, id",
        )
        .bind(device_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(transfer).collect()
    }

    /// Stores (replaces) the served predictions of a device and space.
    pub async fn put_predictions(&self, p: &NewPredictions<'_>) -> StoreResult<()> {
        let _w = self.write().await;
        sqlx::query(
            "INSERT INTO predictions (device_id, space, version, transfer_id, base_version, \
             init_from, train_rows_json, latencies, created_ms, choice_json) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (device_id, space) DO UPDATE SET version = excluded.version, \
             transfer_id = excluded.transfer_id, base_version = excluded.base_version, \
             init_from = excluded.init_from, train_rows_json = excluded.train_rows_json, \
             latencies = excluded.latencies, created_ms = excluded.created_ms, \
             choice_json = excluded.choice_json",
        )
        .bind(p.device_id)
        .bind(text(p.space))
        .bind(p.version)
        .bind(p.transfer_id)
        .bind(p.base_version)
        .bind(p.init_from.map(str::to_string))
        .bind(serde_json::to_string(p.train_rows).unwrap_or_else(|_| "[]".into()))
        .bind(encode_f64s(p.latencies))
        .bind(now_ms())
        .bind(p.choice.and_then(|c| serde_json::to_string(c).ok()))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The version of a device's predictions, if any (cheap: for cache checks).
    pub async fn prediction_version(
        &self,
        device_id: &str,
        space: SearchSpace,
    ) -> StoreResult<Option<String>> {
        let row =
            sqlx::query("SELECT version FROM predictions WHERE device_id = $1 AND space = $2")
                .bind(device_id)
                .bind(text(space))
                .fetch_optional(self.pool())
                .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("version")?),
            None => None,
        })
    }

    /// A device's predictions.
    pub async fn predictions(
        &self,
        device_id: &str,
        space: SearchSpace,
    ) -> StoreResult<Option<PredictionRow>> {
        let row = sqlx::query(
            "SELECT version, transfer_id, base_version, init_from, train_rows_json, latencies, \
             created_ms, choice_json FROM predictions WHERE device_id = $1 AND space = $2",
        )
        .bind(device_id)
        .bind(text(space))
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        let rows: String = r.try_get("train_rows_json")?;
        let blob: Vec<u8> = r.try_get("latencies")?;
        let choice: Option<String> = r.try_get("choice_json")?;
        Ok(Some(PredictionRow {
            version: r.try_get("version")?,
            transfer_id: r.try_get("transfer_id")?,
            base_version: r.try_get("base_version")?,
            init_from: r.try_get("init_from")?,
            train_rows: serde_json::from_str(&rows).unwrap_or_default(),
            latencies: decode_f64s(&blob)?,
            choice: choice.and_then(|c| serde_json::from_str(&c).ok()),
            created_ms: r.try_get("created_ms")?,
        }))
    }
}

//! User models: ONNX files uploaded by an operator, measured by agents.
//! The bytes live in `model_chunks` so that uploads and downloads go a
//! chunk at a time; a `models` row appears only once every chunk of a
//! checked upload is stored.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreResult, now_ms};

/// Bytes per stored chunk of a model.
pub const MODEL_CHUNK_BYTES: usize = 1 << 20;

/// A stored model (without its bytes).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ModelRow {
    /// Model id.
    pub id: String,
    /// Name given at upload.
    pub name: String,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
    /// Size of the ONNX file.
    pub size_bytes: i64,
    /// Input overrides handed to agents.
    pub inputs: Vec<String>,
    /// Upload time, epoch ms.
    pub created_ms: i64,
}

/// A model about to be listed: its chunks are stored.
#[derive(Debug, Clone)]
pub struct NewModel<'a> {
    /// Model id (the chunks' `model_id`).
    pub id: &'a str,
    /// Name.
    pub name: &'a str,
    /// SHA-256 of the whole file, hex.
    pub sha256: &'a str,
    /// Size of the whole file.
    pub size_bytes: u64,
    /// Input overrides handed to agents.
    pub inputs: &'a [String],
}

fn model(row: &AnyRow) -> StoreResult<ModelRow> {
    let inputs: String = row.try_get("inputs_json")?;
    Ok(ModelRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        sha256: row.try_get("sha256")?,
        size_bytes: row.try_get("size_bytes")?,
        inputs: serde_json::from_str(&inputs).unwrap_or_default(),
        created_ms: row.try_get("created_ms")?,
    })
}

impl Store {
    /// Stores chunk `seq` of a model being uploaded (one short write, so an
    /// upload never holds SQLite's write lock while the client sends).
    pub async fn insert_model_chunk(&self, id: &str, seq: u64, bytes: &[u8]) -> StoreResult<()> {
        let _w = self.write().await;
        sqlx::query(
            "INSERT INTO model_chunks (model_id, seq, bytes, created_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(i64::try_from(seq).unwrap_or(i64::MAX))
        .bind(bytes.to_vec())
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Removes the chunks of an upload that failed.
    pub async fn delete_model_chunks(&self, id: &str) -> StoreResult<()> {
        let _w = self.write().await;
        sqlx::query("DELETE FROM model_chunks WHERE model_id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Removes chunks of uploads that never finished (no `models` row) and
    /// are older than `older_than_ms` (no upload still running can own
    /// them). Returns how many.
    pub async fn delete_abandoned_chunks(&self, older_than_ms: i64) -> StoreResult<u64> {
        let _w = self.write().await;
        let done = sqlx::query(
            "DELETE FROM model_chunks WHERE created_ms < $1 \
             AND model_id NOT IN (SELECT id FROM models)",
        )
        .bind(now_ms().saturating_sub(older_than_ms))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Lists a model whose chunks are stored.
    pub async fn insert_model(&self, m: &NewModel<'_>) -> StoreResult<()> {
        let _w = self.write().await;
        sqlx::query(
            "INSERT INTO models (id, name, sha256, size_bytes, inputs_json, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(m.id)
        .bind(m.name)
        .bind(m.sha256)
        .bind(i64::try_from(m.size_bytes).unwrap_or(i64::MAX))
        .bind(serde_json::to_string(m.inputs).unwrap_or_else(|_| "[]".into()))
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// All models, newest first.
    pub async fn models(&self) -> StoreResult<Vec<ModelRow>> {
        let rows = sqlx::query(
            "SELECT id, name, sha256, size_bytes, inputs_json, created_ms FROM models \
             ORDER BY created_ms DESC, id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(model).collect()
    }

    /// One model's metadata.
    pub async fn model(&self, id: &str) -> StoreResult<Option<ModelRow>> {
        let row = sqlx::query(
            "SELECT id, name, sha256, size_bytes, inputs_json, created_ms FROM models WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(model).transpose()
    }

    /// Chunk `seq` of a listed model's bytes; `None` past the last one.
    pub async fn model_chunk(&self, id: &str, seq: u64) -> StoreResult<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT bytes FROM model_chunks WHERE model_id = $1 AND seq = $2")
            .bind(id)
            .bind(i64::try_from(seq).unwrap_or(i64::MAX))
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("bytes")?),
            None => None,
        })
    }

    /// Whether the device was ever given a job to measure the model (only
    /// such devices may download it).
    pub async fn model_assigned(&self, device_id: &str, model_id: &str) -> StoreResult<bool> {
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM jobs WHERE device_id = $1 AND model_id = $2")
                .bind(device_id)
                .bind(model_id)
                .fetch_one(self.pool())
                .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }
}

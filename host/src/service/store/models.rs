//! User models: ONNX bytes uploaded by an operator, measured by agents.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreResult, int, now_ms};

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
    /// Stores a model.
    pub async fn insert_model(
        &self,
        id: &str,
        name: &str,
        sha256: &str,
        onnx: &[u8],
        inputs: &[String],
    ) -> StoreResult<()> {
        let _w = self.write().await;
        sqlx::query(
            "INSERT INTO models (id, name, sha256, size_bytes, onnx, inputs_json, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(name)
        .bind(sha256)
        .bind(int(onnx.len()))
        .bind(onnx.to_vec())
        .bind(serde_json::to_string(inputs).unwrap_or_else(|_| "[]".into()))
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

    /// One model's ONNX bytes.
    pub async fn model_bytes(&self, id: &str) -> StoreResult<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT onnx FROM models WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("onnx")?),
            None => None,
        })
    }
}

//! Registered devices (agents). Tokens are stored only as SHA-256 hashes.

use nasflat_shared::protocol::{Fingerprint, RuntimeIdentity};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::enrol_queue::Enrolment;
use super::jobs::NewJob;
use super::{Store, StoreResult, now_ms};

/// One registered device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceRow {
    /// Id given at registration.
    pub id: String,
    /// Human name.
    pub name: String,
    /// The agent's machine fingerprint, JSON.
    pub fingerprint_json: String,
    /// Registration time, epoch ms.
    pub created_ms: i64,
    /// Last request, epoch ms.
    pub last_seen_ms: i64,
}

impl DeviceRow {
    /// The runtime the device's latencies come from (kind, version,
    /// threads): part of its identity, so a board measured with tract and
    /// with onnxruntime is two devices and no transfer mixes the two.
    /// Fingerprints of agents from before the runtime field read as tract.
    pub fn runtime(&self) -> Option<RuntimeIdentity> {
        serde_json::from_str::<Fingerprint>(&self.fingerprint_json)
            .ok()
            .map(|f| f.runtime_identity())
    }
}

pub(super) fn device(row: &AnyRow) -> StoreResult<DeviceRow> {
    Ok(DeviceRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        fingerprint_json: row.try_get("fingerprint_json")?,
        created_ms: row.try_get("created_ms")?,
        last_seen_ms: row.try_get("last_seen_ms")?,
    })
}

impl Store {
    /// Inserts a new device (with no jobs).
    pub async fn insert_device(
        &self,
        id: &str,
        name: &str,
        token_hash: &str,
        fingerprint_json: &str,
    ) -> StoreResult<()> {
        self.enrol_device(id, name, token_hash, fingerprint_json, &[])
            .await
    }

    /// Inserts a new device and queues its sample jobs, committed together
    /// (see [`Store::enrol`]).
    pub async fn enrol_device(
        &self,
        id: &str,
        name: &str,
        token_hash: &str,
        fingerprint_json: &str,
        jobs: &[NewJob],
    ) -> StoreResult<()> {
        self.enrol(Enrolment {
            id: id.to_string(),
            name: name.to_string(),
            token_hash: token_hash.to_string(),
            fingerprint_json: fingerprint_json.to_string(),
            jobs: jobs.to_vec(),
        })
        .await
    }

    /// Updates name and fingerprint of a re-attaching device.
    pub async fn reattach_device(
        &self,
        id: &str,
        name: &str,
        fingerprint_json: &str,
    ) -> StoreResult<()> {
        let _w = self.write().await;
        sqlx::query(
            "UPDATE devices SET name = $1, fingerprint_json = $2, last_seen_ms = $3 WHERE id = $4",
        )
        .bind(name)
        .bind(fingerprint_json)
        .bind(now_ms())
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The device whose token hashes to `token_hash`.
    pub async fn device_by_token(&self, token_hash: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT id FROM devices WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("id")?),
            None => None,
        })
    }

    /// One device.
    pub async fn device(&self, id: &str) -> StoreResult<Option<DeviceRow>> {
        let row = sqlx::query(
            "SELECT id, name, fingerprint_json, created_ms, last_seen_ms FROM devices WHERE id = $1",
        )
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(device).transpose()
    }

    /// All devices, oldest first.
    pub async fn devices(&self) -> StoreResult<Vec<DeviceRow>> {
        let rows = sqlx::query(
            "SELECT id, name, fingerprint_json, created_ms, last_seen_ms FROM devices \
             ORDER BY created_ms, id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(device).collect()
    }
}

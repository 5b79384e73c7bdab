//! The durable store: devices, the job/lease queue, measurements, user
//! models, transfer jobs, served predictions and latency-constrained
//! searches.
//!
//! One code path for SQLite (embedded default, WAL) and PostgreSQL (several
//! host replicas): sqlx's `Any` driver with runtime-checked, portable SQL
//! (`$n` parameters, `ON CONFLICT`, BIGINT/TEXT/DOUBLE PRECISION columns),
//! migrations embedded in the binary. A write that the API acknowledges has
//! committed first.

pub mod columns;
pub mod devices;
pub mod enrol_queue;
pub mod enrolment;
pub mod fleet;
pub mod jobs;
pub mod measurements;
pub mod models;
pub mod new_job;
pub mod searches;
pub mod sqlite_file;
pub mod transfers;

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AssertSqlSafe, SqlSafeStr};
use thiserror::Error;

/// Store failures.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database refused or failed a statement.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A database URL this build cannot use.
    #[error("database URL `{url}`: {reason}")]
    Url { url: String, reason: String },
    /// A stored value that does not decode.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A device's measurements would exceed its storage quota.
    #[error(
        "device `{device}` reached its storage quota of {quota_bytes} bytes \
         (--device-quota-mb); nothing of the batch was stored"
    )]
    QuotaExceeded { device: String, quota_bytes: u64 },
    /// A queued write whose committer ended before answering (the host is
    /// shutting down); the client retries.
    #[error("the {what} was not committed: the host is shutting down")]
    NotCommitted { what: &'static str },
}

/// Result alias of the store.
pub type StoreResult<T> = std::result::Result<T, StoreError>;

/// Which server is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file (WAL).
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

impl Backend {
    /// From a URL scheme.
    pub fn of_url(url: &str) -> StoreResult<Backend> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::Url {
                url: redact(url),
                reason: "expected sqlite://PATH or postgres://USER@HOST/DB".into(),
            })
        }
    }
}

/// Hides a password in a URL for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &userinfo[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// The SQLite URL of a database file (created if missing, see
/// [`sqlite_file::prepare`]).
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// When a SQLite commit reaches the disk (`PRAGMA synchronous`; ignored on
/// PostgreSQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteSync {
    /// Every commit is synced to disk before it is acknowledged: nothing
    /// acknowledged is lost, even on power loss. One sync per request
    /// bounds the write rate (docs/experiments/host_hardening.md, Scale).
    #[default]
    Full,
    /// WAL commits are synced only at checkpoints: a killed host loses
    /// nothing, but a power loss or OS crash can roll back the last commits
    /// (their results and the job states with them, so those jobs are
    /// measured again, nothing is stored twice).
    Normal,
}

impl std::str::FromStr for SqliteSync {
    type Err = String;

    fn from_str(s: &str) -> Result<SqliteSync, String> {
        match s {
            "full" => Ok(SqliteSync::Full),
            "normal" => Ok(SqliteSync::Normal),
            _ => Err(format!("`{s}`: expected full or normal")),
        }
    }
}

impl std::fmt::Display for SqliteSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SqliteSync::Full => "full",
            SqliteSync::Normal => "normal",
        })
    }
}

/// A connection pool plus what differs between the backends.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite allows one writer at a time, and a deferred transaction that
    /// read before writing fails at once with SQLITE_BUSY instead of
    /// waiting; serialising this process's write transactions avoids both.
    /// PostgreSQL needs no gate.
    write_gate: Option<Arc<tokio::sync::Mutex<()>>>,
    /// Registrations waiting for their group commit.
    enrolments: Arc<enrol_queue::EnrolQueue<StoreError>>,
    /// Bytes of measurements one device may store (unbounded unless set).
    device_quota_bytes: u64,
    /// Leases a job may get before a sample of it that did not settle
    /// fails it instead of queueing it again.
    max_attempts: i64,
}

/// Guard of a write section (a no-op on PostgreSQL).
pub struct WriteGuard<'a> {
    _guard: Option<tokio::sync::MutexGuard<'a, ()>>,
}

/// Leases a job may get by default (`ServiceConfig::max_attempts`'s default).
pub const DEFAULT_MAX_ATTEMPTS: i64 = 5;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("migrations/0001_init.sql")),
    (2, "searches", include_str!("migrations/0002_searches.sql")),
    (
        3,
        "verification_lookup",
        include_str!("migrations/0003_verification_lookup.sql"),
    ),
    (
        4,
        "model_chunks_device_keys",
        include_str!("migrations/0004_model_chunks_device_keys.sql"),
    ),
    (
        5,
        "jobs_state",
        include_str!("migrations/0005_jobs_state.sql"),
    ),
    (6, "settled", include_str!("migrations/0006_settled.sql")),
    (
        7,
        "fit_choice",
        include_str!("migrations/0007_fit_choice.sql"),
    ),
];

impl Store {
    /// Connects, enables WAL on SQLite, and applies the embedded migrations.
    pub async fn connect(url: &str) -> StoreResult<Store> {
        Store::connect_with(url, SqliteSync::Full).await
    }

    /// [`Store::connect`] with SQLite commits synced as `sync` says.
    pub async fn connect_with(url: &str, sync: SqliteSync) -> StoreResult<Store> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url)?;
        let url = match backend {
            Backend::Sqlite => sqlite_file::prepare(url).map_err(|e| StoreError::Url {
                url: redact(url),
                reason: e.to_string(),
            })?,
            Backend::Postgres => url.to_string(),
        };
        let url = url.as_str();
        let max = match backend {
            Backend::Sqlite => 4,
            Backend::Postgres => 16,
        };
        let mut options = AnyPoolOptions::new().max_connections(max);
        if backend == Backend::Sqlite && sync == SqliteSync::Normal {
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("PRAGMA synchronous = NORMAL")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(url).await.map_err(|e| StoreError::Url {
            url: redact(url),
            reason: e.to_string(),
        })?;
        if backend == Backend::Sqlite {
            // Persistent per database file: readers no longer block the writer.
            sqlx::query("PRAGMA journal_mode=WAL")
                .fetch_all(&pool)
                .await?;
        }
        let store = Store {
            pool,
            backend,
            write_gate: (backend == Backend::Sqlite).then(|| Arc::new(tokio::sync::Mutex::new(()))),
            enrolments: Arc::default(),
            device_quota_bytes: u64::MAX,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> StoreResult<()> {
        let blob = match self.backend {
            Backend::Sqlite => "BLOB",
            Backend::Postgres => "BYTEA",
        };
        let migrations = MIGRATIONS
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*name),
                    MigrationType::Simple,
                    AssertSqlSafe(sql.replace("BLOB_TYPE", blob)).into_sql_str(),
                    false,
                )
            })
            .collect();
        let _gate = self.write().await;
        Migrator::with_migrations(migrations)
            .run(&self.pool)
            .await?;
        Ok(())
    }

    /// This store with a per-device quota of stored measurement bytes
    /// (`--device-quota-mb`).
    pub fn with_device_quota(mut self, bytes: u64) -> Store {
        self.device_quota_bytes = bytes;
        self
    }

    /// Sets how many leases a job may get before a sample of it that did not
    /// settle fails it (default [`DEFAULT_MAX_ATTEMPTS`]).
    pub fn with_max_attempts(mut self, attempts: i64) -> Store {
        self.max_attempts = attempts;
        self
    }

    /// Leases a job may get before an unsettled sample fails it.
    pub fn max_attempts(&self) -> i64 {
        self.max_attempts
    }

    /// The per-device quota of stored measurement bytes.
    pub fn device_quota_bytes(&self) -> u64 {
        self.device_quota_bytes
    }

    /// The pool, for reads.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Enters a write section (see [`Store::write_gate`]).
    pub async fn write(&self) -> WriteGuard<'_> {
        WriteGuard {
            _guard: match &self.write_gate {
                Some(g) => Some(g.lock().await),
                None => None,
            },
        }
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").fetch_one(&self.pool).await?;
        Ok(())
    }

    /// Whether a write could start now. On SQLite a database whose write
    /// lock another process holds still answers reads, so [`Store::ping`]
    /// cannot tell: this takes the write lock (`BEGIN IMMEDIATE`, waiting
    /// at most 250 ms) and gives it back. PostgreSQL: always.
    pub async fn writable(&self) -> StoreResult<()> {
        if self.backend != Backend::Sqlite {
            return Ok(());
        }
        let _gate = self.write().await;
        let mut conn = self.pool.acquire().await?;
        sqlx::query("PRAGMA busy_timeout = 250")
            .execute(&mut *conn)
            .await?;
        let began = sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await;
        if began.is_ok() {
            sqlx::query("ROLLBACK").execute(&mut *conn).await?;
        }
        // Back to sqlx's default wait for every other use of the connection.
        sqlx::query("PRAGMA busy_timeout = 5000")
            .execute(&mut *conn)
            .await?;
        began?;
        Ok(())
    }

    /// SQLite's journal mode (`wal` expected), `None` on PostgreSQL.
    pub async fn journal_mode(&self) -> StoreResult<Option<String>> {
        if self.backend != Backend::Sqlite {
            return Ok(None);
        }
        let row: (String,) = sqlx::query_as("PRAGMA journal_mode")
            .fetch_one(&self.pool)
            .await?;
        Ok(Some(row.0))
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A fresh random id with a readable prefix, e.g. `dev-3f9a...`.
pub fn new_id(prefix: &str) -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 9];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}-{}", hex(&bytes))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Encodes a latency vector as the `predictions.latencies` blob.
pub fn encode_f64s(values: &[f64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Decodes [`encode_f64s`].
pub fn decode_f64s(bytes: &[u8]) -> StoreResult<Vec<f64>> {
    if !bytes.len().is_multiple_of(8) {
        return Err(StoreError::Corrupt(format!(
            "latency blob of {} bytes is not a multiple of 8",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            f64::from_le_bytes(a)
        })
        .collect())
}

/// A BIGINT from a usize (saturating; counts never get near i64::MAX).
pub fn int(v: usize) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_blobs() {
        assert_eq!(Backend::of_url("sqlite://x.db").unwrap(), Backend::Sqlite);
        assert_eq!(
            Backend::of_url("postgres://u@h/db").unwrap(),
            Backend::Postgres
        );
        assert!(Backend::of_url("mysql://h/db").is_err());
        assert_eq!(
            redact("postgres://user:secret@host:5432/db"),
            "postgres://user:***@host:5432/db"
        );
        let v = [1.5, -2.0, f64::MAX];
        assert_eq!(decode_f64s(&encode_f64s(&v)).unwrap(), v);
        assert!(decode_f64s(&[0u8; 7]).is_err());
    }
}

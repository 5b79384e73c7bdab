-- Portable SQL for SQLite and PostgreSQL. `BLOB_TYPE` is replaced by BLOB
-- (SQLite) or BYTEA (PostgreSQL) when the migration is loaded; every other
-- type means the same on both. Integers are BIGINT (the Any driver decodes
-- them as i64 on both), booleans are BIGINT 0/1, times are epoch ms.

CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    fingerprint_json TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL
);
CREATE UNIQUE INDEX devices_token_hash ON devices (token_hash);

-- The measurement queue: one row per thing a device should measure.
-- purpose: sample (sampler-chosen k archs), extra (asked by an operator),
-- model (a user model). state: queued | leased | done | failed.
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL REFERENCES devices (id),
    purpose TEXT NOT NULL,
    space TEXT,
    arch_index BIGINT,
    model_id TEXT,
    inputs_json TEXT NOT NULL,
    state TEXT NOT NULL,
    lease_id TEXT,
    lease_expires_ms BIGINT,
    attempts BIGINT NOT NULL,
    last_error TEXT,
    seq BIGINT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX jobs_device_state ON jobs (device_id, state, seq);

-- Every lease ever granted, so a result names its job even after the job
-- was re-leased.
CREATE TABLE leases (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs (id),
    device_id TEXT NOT NULL,
    granted_ms BIGINT NOT NULL
);

CREATE TABLE measurements (
    idempotency_key TEXT PRIMARY KEY,
    device_id TEXT NOT NULL REFERENCES devices (id),
    job_id TEXT,
    lease_id TEXT,
    purpose TEXT NOT NULL,
    kind TEXT NOT NULL,
    space TEXT,
    arch_index BIGINT,
    model_id TEXT,
    median_ms DOUBLE PRECISION NOT NULL,
    valid BIGINT NOT NULL,
    invalid_reasons TEXT NOT NULL,
    sample_json TEXT NOT NULL,
    received_ms BIGINT NOT NULL
);
CREATE INDEX measurements_device ON measurements (device_id, space, arch_index);

CREATE TABLE models (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    onnx BLOB_TYPE NOT NULL,
    inputs_json TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);

-- Transfer jobs (background fine-tuning for one device and space).
-- state: queued | running | done | failed.
CREATE TABLE transfers (
    id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL REFERENCES devices (id),
    space TEXT NOT NULL,
    state TEXT NOT NULL,
    progress DOUBLE PRECISION NOT NULL,
    message TEXT NOT NULL,
    samples BIGINT NOT NULL,
    trigger_kind TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    finished_ms BIGINT
);
CREATE INDEX transfers_device ON transfers (device_id, space);

-- The served predictor of a device: its predictions for every architecture
-- of the space (f64 little-endian per table row), computed once per transfer.
CREATE TABLE predictions (
    device_id TEXT NOT NULL REFERENCES devices (id),
    space TEXT NOT NULL,
    version TEXT NOT NULL,
    transfer_id TEXT NOT NULL,
    base_version TEXT NOT NULL,
    init_from TEXT,
    train_rows_json TEXT NOT NULL,
    latencies BLOB_TYPE NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (device_id, space)
);

-- Issue 17 (host hardening). Same portable SQL rules as 0001.

-- User models in chunks, so an upload is written and a download read a
-- chunk at a time (a whole 250 MB model is never held in memory). Chunks of
-- an upload that never finished have no `models` row and are removed at
-- start-up once older than the request timeout.
CREATE TABLE model_chunks (
    model_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    bytes BLOB_TYPE NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (model_id, seq)
);
INSERT INTO model_chunks (model_id, seq, bytes, created_ms)
    SELECT id, 0, onnx, created_ms FROM models;
ALTER TABLE models DROP COLUMN onnx;

-- Idempotency keys are scoped by device: another device re-posting a key
-- stores its own measurement instead of being acknowledged for nothing.
CREATE TABLE measurements_scoped (
    idempotency_key TEXT NOT NULL,
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
    received_ms BIGINT NOT NULL,
    PRIMARY KEY (device_id, idempotency_key)
);
INSERT INTO measurements_scoped (idempotency_key, device_id, job_id, lease_id, purpose, kind,
    space, arch_index, model_id, median_ms, valid, invalid_reasons, sample_json, received_ms)
    SELECT idempotency_key, device_id, job_id, lease_id, purpose, kind, space, arch_index,
        model_id, median_ms, valid, invalid_reasons, sample_json, received_ms
    FROM measurements;
DROP TABLE measurements;
ALTER TABLE measurements_scoped RENAME TO measurements;
CREATE INDEX measurements_device ON measurements (device_id, space, arch_index);
CREATE INDEX measurements_model ON measurements (model_id);
-- 0003's index went with the old table.
CREATE INDEX measurements_job ON measurements (job_id);

-- Bytes of measurements stored per device (sample JSON, reasons and 256 per
-- row, see `stored_size`), checked against the per-device quota in the
-- transaction that stores a batch. Rows from before count their JSON's
-- characters.
ALTER TABLE devices ADD COLUMN stored_bytes BIGINT NOT NULL DEFAULT 0;
UPDATE devices SET stored_bytes = (
    SELECT COALESCE(SUM(LENGTH(sample_json) + LENGTH(invalid_reasons) + 256), 0)
    FROM measurements WHERE measurements.device_id = devices.id
);

-- Latency-constrained searches (`POST /v1/devices/{id}/search`) and what
-- their risk bound needs. Same portable SQL rules as 0001.

-- The out-of-sample log residuals of a served predictor on its k samples
-- (f64 little-endian), written by the transfer beside its predictions: the
-- search's upper bound is a conformal quantile of them.
CREATE TABLE prediction_residuals (
    device_id TEXT NOT NULL REFERENCES devices (id),
    space TEXT NOT NULL,
    version TEXT NOT NULL,
    residuals BLOB_TYPE NOT NULL,
    PRIMARY KEY (device_id, space)
);

-- One search: its request, the predictor that answered and the ranked
-- candidates (JSON list: row, predicted and upper ms, objective, the
-- verification job id if one was queued). Measured latencies are read from
-- `measurements` by job id, so a search never goes stale. `device_id` is an
-- agent id or a built-in `SPACE:NAME` (no foreign key for those).
CREATE TABLE searches (
    id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    space TEXT NOT NULL,
    objective TEXT NOT NULL,
    max_latency_ms DOUBLE PRECISION NOT NULL,
    risk DOUBLE PRECISION NOT NULL,
    predictor_version TEXT NOT NULL,
    source TEXT NOT NULL,
    residual_quantile DOUBLE PRECISION NOT NULL,
    candidates_json TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX searches_device ON searches (device_id, created_ms);

-- Fleet-wide queue counts and the oldest open jobs (dashboard home page,
-- /metrics, /v1/leases) read jobs by state: index it, with the lease
-- expiry (expired leases are counted apart) and the queue order, so the
-- counts are index-only and open jobs are found without scanning the
-- whole history. Same portable SQL rules as 0001.
CREATE INDEX jobs_state ON jobs (state, lease_expires_ms, seq);

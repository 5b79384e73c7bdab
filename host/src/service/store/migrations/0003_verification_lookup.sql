-- A search's view reads the measurements of its own verification jobs by
-- job id (`Store::verification`), not the device's whole history: index
-- them. Same portable SQL rules as 0001.
CREATE INDEX measurements_job ON measurements (job_id);

-- Issue 16 section 2 (a repeatable number). Same portable SQL rules as 0001.

-- Whether the agent's label settled (1), did not (0), or the agent predates
-- the settle rule and did not say (NULL). A sample that did not settle is
-- kept for the record but never used for a transfer; its job is queued
-- again.
ALTER TABLE measurements ADD COLUMN settled BIGINT;

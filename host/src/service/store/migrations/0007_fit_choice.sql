-- Issue 15 part B. Same portable SQL rules as 0001.

-- The choices the transfer's fit made (blend weight, the stack's rules and
-- weight) as JSON; NULL for predictions stored before they were recorded.
ALTER TABLE predictions ADD COLUMN choice_json TEXT;

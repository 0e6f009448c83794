-- What a search ended with, beyond its status (issue 5):
--  - missing_shards: the shards (0..shards_total-1) whose casings are missing
--    from a partial result (their shard worker was down, failed or missed the
--    deadline), so that GetSearch reports which, not only how many;
--  - failure_reason: why a search is 'failed' (the engine's error, or the
--    error that rolled back the write of its result), so that no search row
--    stays 'running' without an explanation. '' for the other statuses.
ALTER TABLE searches
  ADD COLUMN missing_shards integer[] NOT NULL DEFAULT '{}',
  ADD COLUMN failure_reason text NOT NULL DEFAULT '' CHECK (length(failure_reason) <= 2000);

-- Which ballisticsd process runs a search (issue 5): a process that crashes
-- mid-search leaves its row 'running'. Each process picks a random instance
-- id, holds the session advisory lock (kSearchInstanceLockClass, instance_id)
-- for its lifetime and writes the id on the searches it creates; at start a
-- process fails the 'running' rows whose instance holds no such lock any more
-- (its process is gone), so several coordinators may share one database.
-- NULL: created before this migration, by a process that is gone.
ALTER TABLE searches ADD COLUMN instance_id integer;

-- The event log's read order without a schema-wide lock.
--
-- Until now every append took an advisory lock on the schema's log before drawing its
-- positions, so positions rose in commit order; that serialized every state-changing
-- transaction of the schema against every other, and a lock held on one node cannot
-- order appends on a sharded database. Appends now take no lock: two concurrent
-- transactions draw positions in any order and commit in any order.
--
-- Instead each event records the top-level transaction that wrote it (`tx_id`), and
-- the log is read in (tx_id, position) order, only up to the oldest transaction still
-- running in the reader's snapshot (`pg_snapshot_xmin(pg_current_snapshot())`). Every
-- transaction below that horizon has ended, so the events it lists are final, and any
-- event committed later has a transaction id at or above the horizon: it sorts after
-- everything listed before, and a reader paging by its last event never skips or
-- re-reads one.
--
-- Applies on a live log: the rows already there get tx_id 0, below every real
-- transaction id, so they keep their position order and come before every new event.
-- Adding a column with a constant default rewrites no rows; new rows then default to
-- their writer's transaction id.
ALTER TABLE events ADD COLUMN tx_id xid8 NOT NULL DEFAULT '0';
ALTER TABLE events ALTER COLUMN tx_id SET DEFAULT pg_current_xact_id();

-- The reader's order, over the whole log and per workspace; the per-workspace index
-- replaces the one by position alone, which no query reads any more.
CREATE INDEX events_log_order_idx ON events (tx_id, position);
CREATE INDEX events_workspace_log_order_idx ON events (workspace_id, tx_id, position);
DROP INDEX events_workspace_position_idx;

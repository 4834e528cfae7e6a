-- Every state change now appends its event, unrouted; the engine's event router turns
-- each into its jobs and marks it routed. Routing uses a flag, not a position cursor:
-- positions come from an identity sequence, and a transaction that took a lower
-- position can commit after one that took a higher, so a cursor could step over an
-- event that was not yet visible.
--
-- Rows written before this migration were routed (or never meant to be) by whoever
-- appended them, so they are routed; the column's default then becomes false for new
-- rows. Adding a column with a constant default rewrites no rows.
ALTER TABLE events ADD COLUMN routed boolean NOT NULL DEFAULT true;
ALTER TABLE events ALTER COLUMN routed SET DEFAULT false;
-- The router's listing: unrouted events by position. Routed events leave the index,
-- so it stays as small as the router's backlog.
CREATE INDEX events_unrouted_idx ON events (position) WHERE NOT routed;

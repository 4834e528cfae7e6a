-- The computed total and tier that a score upsert replaced (NULL on a row the upsert
-- inserted). PostgreSQL 15's RETURNING sees only the new row, so the upsert copies the
-- old values here in the same row update and returns them: each write reports the
-- exact tier it replaced, under any race, without locking the contacts first. Not
-- indexed, so the update stays heap-only.
ALTER TABLE contact_scores ADD COLUMN replaced_total smallint, ADD COLUMN replaced_tier text;

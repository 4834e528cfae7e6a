-- The job claim as a function whose plan does not depend on the table's statistics.
--
-- The claim wants the first due queued jobs in (run_at, id) order, which the partial
-- index jobs_claim_idx (jobs_claim_ws_idx for one workspace) hands out in order: a
-- few index entries and heap rows per claim, whatever the queue's length. With no or
-- stale statistics (a fresh table, a burst of jobs after the last ANALYZE, a server
-- with autovacuum off) the planner expects a handful of queued rows and prefers a
-- bitmap scan of every queued job followed by a sort: each claim then reads and sorts
-- the whole queue, and draining a queue of n jobs costs O(n^2). Bitmap scans are
-- switched off for this function only, so the ordered index scan is always chosen.
--
-- Arguments: the lease owner, the lease expiry, the claimer's now, the most jobs to
-- claim, the kinds (all when empty) and the workspace (all when NULL). Same rows and
-- effects as the statement it replaces: each claimed job becomes running under the
-- lease, its fencing token and attempts one greater.

CREATE FUNCTION crm_claim_jobs(
    p_owner text, p_expires_at timestamptz, p_now timestamptz, p_limit bigint,
    p_kinds text[], p_workspace uuid
) RETURNS SETOF jobs
LANGUAGE plpgsql
SET enable_bitmapscan = off
AS $$
BEGIN
    IF p_workspace IS NULL THEN
        RETURN QUERY
        UPDATE jobs j
        SET status = 'running', lease_owner = p_owner, lease_token = j.lease_token + 1,
            lease_expires_at = p_expires_at, attempts = j.attempts + 1, updated_at = p_now
        FROM (SELECT q.workspace_id, q.id FROM jobs q
              WHERE q.status = 'queued' AND q.run_at <= p_now
                AND (cardinality(p_kinds) = 0 OR q.kind = ANY(p_kinds))
              ORDER BY q.run_at, q.id LIMIT p_limit
              FOR UPDATE SKIP LOCKED) c
        WHERE j.workspace_id = c.workspace_id AND j.id = c.id
        RETURNING j.*;
    ELSE
        RETURN QUERY
        UPDATE jobs j
        SET status = 'running', lease_owner = p_owner, lease_token = j.lease_token + 1,
            lease_expires_at = p_expires_at, attempts = j.attempts + 1, updated_at = p_now
        FROM (SELECT q.workspace_id, q.id FROM jobs q
              WHERE q.status = 'queued' AND q.run_at <= p_now AND q.workspace_id = p_workspace
                AND (cardinality(p_kinds) = 0 OR q.kind = ANY(p_kinds))
              ORDER BY q.run_at, q.id LIMIT p_limit
              FOR UPDATE SKIP LOCKED) c
        WHERE j.workspace_id = c.workspace_id AND j.id = c.id
        RETURNING j.*;
    END IF;
END
$$;

-- Wake-ups: a write that makes a job or an outbox message claimable notifies the
-- store's listeners in the same transaction, so workers and dispatchers claim at once
-- instead of at their next poll; a rolled-back write notifies nobody (PostgreSQL
-- delivers notifications at commit only).
--
-- Channels are per schema (stores in different schemas of one database do not wake
-- each other) and short whatever the schema's length:
-- 'crm_wake_' || md5(schema) || '_jobs' / '_outbox'. The payload is the earliest due
-- time among the rows written, in Unix milliseconds, so a listener can wake its loops
-- when work written for later falls due.
--
-- Statement-level triggers with transition tables: one check and at most one
-- notification per statement, however many rows it writes (bulk enqueues included);
-- claims and completions, which leave no row claimable, notify nobody. PostgreSQL
-- folds identical notifications of one transaction into one.

CREATE FUNCTION crm_wake_jobs() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    due timestamptz;
BEGIN
    SELECT min(run_at) INTO due FROM wake_rows WHERE status = 'queued';
    IF due IS NOT NULL THEN
        PERFORM pg_notify(
            'crm_wake_' || md5(TG_TABLE_SCHEMA) || '_jobs',
            ceil(extract(epoch FROM due) * 1000)::bigint::text
        );
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION crm_wake_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    due timestamptz;
BEGIN
    SELECT min(not_before) INTO due FROM wake_rows WHERE status = 'pending';
    IF due IS NOT NULL THEN
        PERFORM pg_notify(
            'crm_wake_' || md5(TG_TABLE_SCHEMA) || '_outbox',
            ceil(extract(epoch FROM due) * 1000)::bigint::text
        );
    END IF;
    RETURN NULL;
END
$$;

-- A trigger with transition tables fires on one event only: one per event.
CREATE TRIGGER jobs_wake_insert AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS wake_rows
    FOR EACH STATEMENT EXECUTE FUNCTION crm_wake_jobs();
CREATE TRIGGER jobs_wake_update AFTER UPDATE ON jobs
    REFERENCING NEW TABLE AS wake_rows
    FOR EACH STATEMENT EXECUTE FUNCTION crm_wake_jobs();
CREATE TRIGGER outbox_wake_insert AFTER INSERT ON outbox_messages
    REFERENCING NEW TABLE AS wake_rows
    FOR EACH STATEMENT EXECUTE FUNCTION crm_wake_outbox();
CREATE TRIGGER outbox_wake_update AFTER UPDATE ON outbox_messages
    REFERENCING NEW TABLE AS wake_rows
    FOR EACH STATEMENT EXECUTE FUNCTION crm_wake_outbox();

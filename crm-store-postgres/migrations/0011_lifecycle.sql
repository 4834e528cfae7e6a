-- Enrollment lifecycle: why and when an enrollment ended, the message of its pending
-- step, and per-sequence status and step-failure policy.
--
-- Applies on top of earlier migrations on a live database: existing sequences become
-- active with the skip policy (what they behaved like), existing enrollments have no
-- recorded end. 'stopped' is a new enrollment state; it is not running, so the
-- running-state partial indexes of 0001 already leave it out.

ALTER TABLE sequences
    ADD COLUMN status text NOT NULL DEFAULT 'active'
        CONSTRAINT sequences_status_check CHECK (status IN ('active', 'paused', 'archived')),
    ADD COLUMN step_failure_policy text NOT NULL DEFAULT 'skip'
        CONSTRAINT sequences_step_failure_policy_check
        CHECK (step_failure_policy IN ('skip', 'fail_enrollment'));

-- The history keeps what each version said, status and policy included, so a version
-- reads back exactly as it was saved.
ALTER TABLE sequence_versions
    ADD COLUMN status text NOT NULL DEFAULT 'active',
    ADD COLUMN step_failure_policy text NOT NULL DEFAULT 'skip';

ALTER TABLE enrollments
    ADD COLUMN end_reason text,
    ADD COLUMN ended_at timestamptz,
    ADD COLUMN step_message_id uuid;

-- The outreach engine: sequence version history, and the indexes its lookups need.
--
-- Applies on top of 0001 on a live database: the history is backfilled from the
-- current definitions (earlier versions were never stored, so they stay unreadable),
-- and the phone check is NOT VALID (it binds new writes; rows written before were
-- already E.164, as PhoneNumber only accepts that form).

-- Every definition a sequence ever had, the current one included: enrollments keep the
-- version they started on and finish on it (SequenceStore::get_sequence_version).
-- Written by insert_sequence (version 1) and update_sequence (each new version) in the
-- same statement as the sequence row.
CREATE TABLE sequence_versions (
    workspace_id     uuid        NOT NULL,
    sequence_id      uuid        NOT NULL,
    version          bigint      NOT NULL CHECK (version >= 1),
    name             text        NOT NULL,
    steps            jsonb       NOT NULL,
    in_flight_policy text        NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    CONSTRAINT sequence_versions_pkey PRIMARY KEY (workspace_id, sequence_id, version),
    CONSTRAINT sequence_versions_sequence_fk FOREIGN KEY (workspace_id, sequence_id)
        REFERENCES sequences (workspace_id, id)
);

INSERT INTO sequence_versions (workspace_id, sequence_id, version, name, steps,
    in_flight_policy, created_at, updated_at)
SELECT workspace_id, id, version, name, steps, in_flight_policy, created_at, updated_at
FROM sequences;

-- Contacts by address (ContactStore::find_contact_by_address). Email already has
-- contacts_email_key. Phones are compared as stored, so they must be E.164 (what
-- normalize_address leaves unchanged); ties go to the smallest id.
ALTER TABLE contacts ADD CONSTRAINT contacts_phone_e164_check
    CHECK (phone ~ '^\+[1-9][0-9]{7,14}$') NOT VALID;
CREATE INDEX contacts_phone_idx ON contacts (workspace_id, phone, id)
    WHERE phone IS NOT NULL;
CREATE INDEX contacts_instagram_idx ON contacts (workspace_id, instagram_id, id)
    WHERE instagram_id IS NOT NULL;
CREATE INDEX contacts_linkedin_idx ON contacts (workspace_id, linkedin_url, id)
    WHERE linkedin_url IS NOT NULL;

-- Delivery reports, bounces and replies name the provider's id
-- (OutboxStore::find_outbox_by_provider_id).
CREATE INDEX outbox_messages_provider_idx
    ON outbox_messages (workspace_id, provider_message_id)
    WHERE provider_message_id IS NOT NULL;

-- The queued messages of an enrollment, cancelled when it stops
-- (SequenceStore::advance_enrollment with cancel_queued).
CREATE INDEX outbox_messages_enrollment_idx
    ON outbox_messages (workspace_id, enrollment_id)
    WHERE status IN ('pending', 'awaiting_approval');

-- A template's decisions, newest first (ApprovalStore::clean_approval_streak). NULLS
-- LAST matches the query's order: an item without decided_at sorts as the oldest.
CREATE INDEX approval_items_streak_idx
    ON approval_items (workspace_id, template_key, decided_at DESC NULLS LAST, id DESC)
    WHERE status IN ('approved', 'rejected');

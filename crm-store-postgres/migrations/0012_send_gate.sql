-- The send gate: `begin_sends` marks a message sending (send_started_at) right before
-- its adapter call, and takes its quota unit as a grant keyed by the message, so a
-- re-claimed message reuses its unit and a message that never reached the provider
-- gives it back. Unsubscribes cancel the unsent messages of an address by its
-- normalised form (recipient_key, set by the store with crm_core's normalize_address).
--
-- Applies on top of earlier migrations on a live database. Existing rows get an
-- approximate key (lower-cased, trimmed: exact for plain ASCII e-mail addresses and
-- phone numbers without separators); sent rows count as touches from their sent_at.

ALTER TABLE outbox_messages
    ADD COLUMN send_started_at timestamptz,
    ADD COLUMN recipient_key   text;

UPDATE outbox_messages SET recipient_key = lower(btrim(recipient));
UPDATE outbox_messages SET send_started_at = sent_at WHERE status = 'sent';

ALTER TABLE outbox_messages ALTER COLUMN recipient_key SET NOT NULL;

-- Unsent messages of an address, or of a contact, that an unsubscribe cancels.
CREATE INDEX outbox_messages_unsent_recipient_idx
    ON outbox_messages (workspace_id, recipient_key)
    WHERE status IN ('pending', 'in_flight');
CREATE INDEX outbox_messages_unsent_contact_idx
    ON outbox_messages (workspace_id, contact_id)
    WHERE status IN ('pending', 'in_flight');
-- Touches of a contact within its local day.
CREATE INDEX outbox_messages_touch_idx
    ON outbox_messages (workspace_id, contact_id, send_started_at)
    WHERE send_started_at IS NOT NULL;

-- One row per quota unit a message holds, beside the counter it was counted in.
CREATE TABLE quota_grants (
    workspace_id uuid        NOT NULL,
    counter      text        NOT NULL,
    period       date        NOT NULL,
    outbox_id    uuid        NOT NULL,
    granted_at   timestamptz NOT NULL,
    CONSTRAINT quota_grants_pkey PRIMARY KEY (workspace_id, counter, period, outbox_id)
);
CREATE INDEX quota_grants_outbox_idx ON quota_grants (workspace_id, outbox_id);

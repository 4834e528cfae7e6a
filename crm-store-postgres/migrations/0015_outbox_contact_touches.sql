-- A contact's touches of a day (TouchStore::count_contact_touches): its queued and
-- sent messages, manual tasks aside. Failed, dead-lettered and cancelled rows never
-- count, so they are left out of the index.
CREATE INDEX outbox_messages_contact_touches_idx
    ON outbox_messages (workspace_id, contact_id, status)
    WHERE contact_id IS NOT NULL
      AND channel <> 'manual_task'
      AND status IN ('pending', 'awaiting_approval', 'in_flight', 'sent');

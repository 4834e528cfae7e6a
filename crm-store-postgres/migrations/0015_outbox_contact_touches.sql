-- A contact's queued touches (TouchStore::count_queued_touches): its messages still
-- queued, manual tasks aside. Sent, failed, dead-lettered and cancelled rows never
-- count, so the index stays as small as the queue.
CREATE INDEX outbox_messages_contact_queued_idx
    ON outbox_messages (workspace_id, contact_id, not_before)
    WHERE contact_id IS NOT NULL
      AND channel <> 'manual_task'
      AND status IN ('pending', 'awaiting_approval', 'in_flight');

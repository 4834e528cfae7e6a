-- Intake: per-field provenance of contacts (which intake row set a field, and when).
-- One row per (workspace, contact, field); a later write of the field replaces it.
CREATE TABLE contact_field_provenance (
    workspace_id uuid        NOT NULL,
    contact_id   uuid        NOT NULL,
    field        text        NOT NULL,
    source       text        NOT NULL,
    source_ref   text        NOT NULL,
    intake_id    uuid        NOT NULL,
    recorded_at  timestamptz NOT NULL,
    CONSTRAINT contact_field_provenance_pkey PRIMARY KEY (workspace_id, contact_id, field),
    CONSTRAINT contact_field_provenance_contact_fk FOREIGN KEY (workspace_id, contact_id)
        REFERENCES contacts (workspace_id, id) ON DELETE CASCADE,
    CONSTRAINT contact_field_provenance_intake_fk FOREIGN KEY (workspace_id, intake_id)
        REFERENCES intake_records (workspace_id, id)
);

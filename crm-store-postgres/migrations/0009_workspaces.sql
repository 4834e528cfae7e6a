-- The workspace registry: one row per tenant, with its settings as the serde JSON of
-- crm_core::model::WorkspaceSettings (time zone by IANA name, durations in seconds).
-- Other tables keep no foreign key to it: rows written before the registry existed
-- carry workspace ids that have no row here, and every repository keeps working for
-- an unregistered workspace.
CREATE TABLE workspaces (
    id          uuid        NOT NULL,
    name        text        NOT NULL,
    settings    jsonb       NOT NULL CHECK (jsonb_typeof(settings) = 'object'),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    version     bigint      NOT NULL CHECK (version >= 1),
    CONSTRAINT workspaces_pkey PRIMARY KEY (id)
);

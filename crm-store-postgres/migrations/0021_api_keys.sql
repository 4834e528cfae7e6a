-- API keys of a host's API (crm_core::access). Only the SHA-256 of a token is
-- stored, never the token.
--
-- Keyed by workspace first like every table: the primary key is (workspace_id, id)
-- and revoke and list filter on the workspace. The one exception is the lookup at
-- authentication, which knows only the token's visible prefix: the prefix is unique
-- across workspaces. On a sharded PostgreSQL (Citus) this small, rarely written table
-- is a reference table (replicated to every node), where a unique index on any column
-- is allowed; last_used_at writes are coalesced by the engine (about one a minute per
-- key and process) so replicating them stays cheap.

CREATE TABLE api_keys (
    workspace_id uuid        NOT NULL,
    id           uuid        NOT NULL,
    name         text        NOT NULL,
    prefix       text        NOT NULL,
    token_hash   bytea       NOT NULL,
    scopes       text[]      NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz,
    last_used_at timestamptz,
    revoked_at   timestamptz,
    PRIMARY KEY (workspace_id, id),
    CONSTRAINT api_keys_prefix_length CHECK (char_length(prefix) = 8),
    CONSTRAINT api_keys_token_hash_length CHECK (octet_length(token_hash) = 32),
    CONSTRAINT api_keys_scopes_not_empty CHECK (cardinality(scopes) > 0)
);

CREATE UNIQUE INDEX api_keys_prefix ON api_keys (prefix);

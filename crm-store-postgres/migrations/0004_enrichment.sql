-- Enrichment: the lookup cache, one usage row per provider lookup, and the monthly
-- spend counter that EnrichmentStore::record_enrichment_usage updates in the same
-- statement as the usage row (the upsert's row lock orders racing callers, so each
-- sees a distinct running total and budget alerts fire once).

-- One entry per (workspace, data type, subject); subject is the engine's SHA-256 of
-- the normalized subject, never a raw email. Freshness is judged by the engine.
CREATE TABLE enrichment_cache (
    workspace_id uuid        NOT NULL,
    data_type    text        NOT NULL CHECK (data_type IN
                     ('contact', 'company', 'email_verification', 'social_links')),
    subject      text        NOT NULL CHECK (btrim(subject) <> ''),
    provider     text        NOT NULL CHECK (btrim(provider) <> ''),
    payload      jsonb       NOT NULL,
    fetched_at   timestamptz NOT NULL,
    CONSTRAINT enrichment_cache_pkey PRIMARY KEY (workspace_id, data_type, subject)
);

CREATE TABLE enrichment_usage (
    workspace_id     uuid        NOT NULL,
    seq              bigint      GENERATED ALWAYS AS IDENTITY,
    month            date        NOT NULL CHECK (extract(day FROM month) = 1),
    provider         text        NOT NULL CHECK (btrim(provider) <> ''),
    data_type        text        NOT NULL CHECK (data_type IN
                         ('contact', 'company', 'email_verification', 'social_links')),
    hit              boolean     NOT NULL,
    credits          bigint      NOT NULL CHECK (credits >= 0),
    cost_minor_units bigint      NOT NULL CHECK (cost_minor_units >= 0),
    currency         text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    at               timestamptz NOT NULL,
    CONSTRAINT enrichment_usage_pkey PRIMARY KEY (workspace_id, seq)
);

CREATE INDEX enrichment_usage_month_idx ON enrichment_usage (workspace_id, month, at, seq);

CREATE TABLE enrichment_spend (
    workspace_id uuid   NOT NULL,
    month        date   NOT NULL CHECK (extract(day FROM month) = 1),
    currency     text   NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    spent        bigint NOT NULL CHECK (spent >= 0),
    CONSTRAINT enrichment_spend_pkey PRIMARY KEY (workspace_id, month, currency)
);

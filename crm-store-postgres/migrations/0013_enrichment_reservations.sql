-- Enrichment spend reservations: before a provider call the enricher holds the call's
-- price against the month's budget (EnrichmentStore::reserve_enrichment_spend), then
-- settles it with the actual cost or releases it. The reserve locks the month's
-- enrichment_spend row (an upsert) before summing the live reservations, so racing
-- reservations are checked one at a time and settled + reserved never exceed the cap.
--
-- A row is an open reservation; settling or releasing deletes it. A reservation that
-- outlives expires_at (its caller died mid-call) no longer counts against the budget;
-- its row stays until a late settle or release ends it.
CREATE TABLE enrichment_reservations (
    workspace_id uuid        NOT NULL,
    id           uuid        NOT NULL,
    month        date        NOT NULL CHECK (extract(day FROM month) = 1),
    currency     text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    amount       bigint      NOT NULL CHECK (amount >= 0),
    expires_at   timestamptz NOT NULL,
    CONSTRAINT enrichment_reservations_pkey PRIMARY KEY (workspace_id, id)
);

-- The live-reservation sum of one budget: (workspace, month, currency), not expired.
CREATE INDEX enrichment_reservations_budget_idx
    ON enrichment_reservations (workspace_id, month, currency, expires_at) INCLUDE (amount);

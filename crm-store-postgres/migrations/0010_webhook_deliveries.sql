-- Inbound webhook deliveries already seen, so that of several processes receiving a
-- provider's retries exactly one handles the delivery. The primary key is the
-- atomic insert-if-absent; the received_at index serves the retention purge.
CREATE TABLE webhook_deliveries (
    workspace_id uuid        NOT NULL,
    provider     text        NOT NULL,
    delivery_id  text        NOT NULL,
    received_at  timestamptz NOT NULL,
    CONSTRAINT webhook_deliveries_pkey PRIMARY KEY (workspace_id, provider, delivery_id)
);
CREATE INDEX webhook_deliveries_received_idx ON webhook_deliveries (received_at);

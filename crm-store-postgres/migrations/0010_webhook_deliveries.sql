-- Inbound webhook deliveries, so that of several processes receiving a provider's
-- retries exactly one handles the delivery at a time. A delivery is claimed in
-- progress until lease_expires_at (NULL once completed): a retry after the lease takes
-- a dead handler's claim over, a retry of a completed delivery is a duplicate. The
-- primary key makes the claim atomic; the received_at index serves the retention purge.
CREATE TABLE webhook_deliveries (
    workspace_id     uuid        NOT NULL,
    provider         text        NOT NULL,
    delivery_id      text        NOT NULL,
    received_at      timestamptz NOT NULL,
    lease_expires_at timestamptz NULL,
    CONSTRAINT webhook_deliveries_pkey PRIMARY KEY (workspace_id, provider, delivery_id)
);
CREATE INDEX webhook_deliveries_received_idx ON webhook_deliveries (received_at);

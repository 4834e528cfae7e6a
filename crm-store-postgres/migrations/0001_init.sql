-- The CRM store schema. Names are unqualified: every connection's search_path is the
-- store's own schema, so these tables (and _sqlx_migrations) live there.
--
-- Every table is keyed by workspace first; references are composite
-- (workspace_id, x_id) -> x(workspace_id, id), so a row can never point into another
-- tenant. State enums are text holding the entity's stable `as_str` name.

CREATE TABLE accounts (
    workspace_id            uuid        NOT NULL,
    id                      uuid        NOT NULL,
    name                    text        NOT NULL,
    domain                  text,
    industry                text,
    employee_count          bigint      CHECK (employee_count >= 0),
    annual_revenue_minor    bigint      CHECK (annual_revenue_minor >= 0),
    annual_revenue_currency text,
    owner_id                uuid,
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL,
    version                 bigint      NOT NULL CHECK (version >= 1),
    CONSTRAINT accounts_pkey PRIMARY KEY (workspace_id, id),
    CONSTRAINT accounts_revenue_check
        CHECK ((annual_revenue_minor IS NULL) = (annual_revenue_currency IS NULL))
);
CREATE UNIQUE INDEX accounts_domain_key ON accounts (workspace_id, domain);

CREATE TABLE contacts (
    workspace_id  uuid        NOT NULL,
    id            uuid        NOT NULL,
    first_name    text        NOT NULL,
    last_name     text        NOT NULL,
    email         text,
    phone         text,
    title         text,
    account_id    uuid,
    time_zone     text,
    linkedin_url  text,
    instagram_id  text,
    custom_fields jsonb       NOT NULL,
    owner_id      uuid,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    version       bigint      NOT NULL CHECK (version >= 1),
    CONSTRAINT contacts_pkey PRIMARY KEY (workspace_id, id),
    CONSTRAINT contacts_account_fk FOREIGN KEY (workspace_id, account_id)
        REFERENCES accounts (workspace_id, id)
);
CREATE UNIQUE INDEX contacts_email_key ON contacts (workspace_id, lower(email));
CREATE INDEX contacts_account_idx ON contacts (workspace_id, account_id)
    WHERE account_id IS NOT NULL;

CREATE TABLE pipelines (
    workspace_id uuid        NOT NULL,
    id           uuid        NOT NULL,
    name         text        NOT NULL,
    stages       jsonb       NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    version      bigint      NOT NULL CHECK (version >= 1),
    CONSTRAINT pipelines_pkey PRIMARY KEY (workspace_id, id)
);

CREATE TABLE deals (
    workspace_id    uuid        NOT NULL,
    id              uuid        NOT NULL,
    pipeline_id     uuid        NOT NULL,
    stage_id        uuid        NOT NULL,
    name            text        NOT NULL,
    amount_minor    bigint      NOT NULL CHECK (amount_minor >= 0),
    amount_currency text        NOT NULL,
    account_id      uuid,
    contact_id      uuid,
    owner_id        uuid,
    expected_close  date,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    version         bigint      NOT NULL CHECK (version >= 1),
    CONSTRAINT deals_pkey PRIMARY KEY (workspace_id, id),
    CONSTRAINT deals_pipeline_fk FOREIGN KEY (workspace_id, pipeline_id)
        REFERENCES pipelines (workspace_id, id),
    CONSTRAINT deals_account_fk FOREIGN KEY (workspace_id, account_id)
        REFERENCES accounts (workspace_id, id),
    CONSTRAINT deals_contact_fk FOREIGN KEY (workspace_id, contact_id)
        REFERENCES contacts (workspace_id, id)
);
CREATE INDEX deals_pipeline_idx ON deals (workspace_id, pipeline_id, id);

CREATE TABLE activities (
    workspace_id      uuid        NOT NULL,
    id                uuid        NOT NULL,
    contact_id        uuid,
    deal_id           uuid,
    kind              text        NOT NULL,
    channel           text,
    outbox_message_id uuid,
    summary           text        NOT NULL,
    details           jsonb       NOT NULL,
    occurred_at       timestamptz NOT NULL,
    CONSTRAINT activities_pkey PRIMARY KEY (workspace_id, id),
    CONSTRAINT activities_contact_fk FOREIGN KEY (workspace_id, contact_id)
        REFERENCES contacts (workspace_id, id),
    CONSTRAINT activities_deal_fk FOREIGN KEY (workspace_id, deal_id)
        REFERENCES deals (workspace_id, id),
    CONSTRAINT activities_subject_check CHECK (contact_id IS NOT NULL OR deal_id IS NOT NULL)
);
CREATE INDEX activities_timeline_idx ON activities (workspace_id, occurred_at DESC, id DESC);
CREATE INDEX activities_contact_idx
    ON activities (workspace_id, contact_id, occurred_at DESC, id DESC)
    WHERE contact_id IS NOT NULL;
CREATE INDEX activities_deal_idx
    ON activities (workspace_id, deal_id, occurred_at DESC, id DESC)
    WHERE deal_id IS NOT NULL;

CREATE TABLE consents (
    workspace_id uuid        NOT NULL,
    id           uuid        NOT NULL,
    contact_id   uuid        NOT NULL,
    channel      text        NOT NULL,
    status       text        NOT NULL,
    source       text        NOT NULL,
    recorded_at  timestamptz NOT NULL,
    CONSTRAINT consents_pkey PRIMARY KEY (workspace_id, id),
    CONSTRAINT consents_contact_fk FOREIGN KEY (workspace_id, contact_id)
        REFERENCES contacts (workspace_id, id)
);
CREATE INDEX consents_current_idx
    ON consents (workspace_id, contact_id, channel, recorded_at DESC, id DESC);

CREATE TABLE suppressions (
    workspace_id uuid        NOT NULL,
    id           uuid        NOT NULL,
    channel      text,
    address      text        NOT NULL,
    reason       text        NOT NULL,
    created_at   timestamptz NOT NULL,
    CONSTRAINT suppressions_pkey PRIMARY KEY (workspace_id, id)
);
-- One entry per (workspace, channel or all channels, address).
CREATE UNIQUE INDEX suppressions_address_key
    ON suppressions (workspace_id, (coalesce(channel, '*')), address);

CREATE TABLE audit_entries (
    workspace_id uuid        NOT NULL,
    id           uuid        NOT NULL,
    actor_type   text        NOT NULL,
    actor_id     uuid,
    action       text        NOT NULL,
    subject      text        NOT NULL,
    details      jsonb       NOT NULL,
    at           timestamptz NOT NULL,
    CONSTRAINT audit_entries_pkey PRIMARY KEY (workspace_id, id)
);
CREATE INDEX audit_entries_subject_idx ON audit_entries (workspace_id, subject, id);

CREATE TABLE intake_records (
    workspace_id uuid        NOT NULL,
    id           uuid        NOT NULL,
    source       text        NOT NULL,
    source_ref   text        NOT NULL,
    line         bigint      CHECK (line >= 0),
    raw          jsonb       NOT NULL,
    fingerprint  text,
    status       text        NOT NULL,
    duplicate_of uuid,
    errors       jsonb       NOT NULL,
    contact_id   uuid,
    received_at  timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    version      bigint      NOT NULL CHECK (version >= 1),
    CONSTRAINT intake_records_pkey PRIMARY KEY (workspace_id, id),
    CONSTRAINT intake_records_duplicate_fk FOREIGN KEY (workspace_id, duplicate_of)
        REFERENCES intake_records (workspace_id, id),
    CONSTRAINT intake_records_contact_fk FOREIGN KEY (workspace_id, contact_id)
        REFERENCES contacts (workspace_id, id)
);
-- At most one live (not duplicate, not invalid) row per fingerprint.
CREATE UNIQUE INDEX intake_records_fingerprint_key
    ON intake_records (workspace_id, fingerprint)
    WHERE status IN ('pending', 'processed');
CREATE INDEX intake_records_status_idx ON intake_records (workspace_id, status, id);

CREATE TABLE sequences (
    workspace_id     uuid        NOT NULL,
    id               uuid        NOT NULL,
    name             text        NOT NULL,
    steps            jsonb       NOT NULL,
    in_flight_policy text        NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    version          bigint      NOT NULL CHECK (version >= 1),
    CONSTRAINT sequences_pkey PRIMARY KEY (workspace_id, id)
);

CREATE TABLE enrollments (
    workspace_id     uuid        NOT NULL,
    id               uuid        NOT NULL,
    sequence_id      uuid        NOT NULL,
    sequence_version bigint      NOT NULL,
    contact_id       uuid        NOT NULL,
    state            text        NOT NULL,
    current_step     integer     NOT NULL,
    next_run_at      timestamptz,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    version          bigint      NOT NULL CHECK (version >= 1),
    CONSTRAINT enrollments_pkey PRIMARY KEY (workspace_id, id),
    CONSTRAINT enrollments_sequence_fk FOREIGN KEY (workspace_id, sequence_id)
        REFERENCES sequences (workspace_id, id),
    CONSTRAINT enrollments_contact_fk FOREIGN KEY (workspace_id, contact_id)
        REFERENCES contacts (workspace_id, id)
);
-- A contact runs through a sequence at most once at a time (EnrollmentState::is_running).
CREATE UNIQUE INDEX enrollments_running_key
    ON enrollments (workspace_id, sequence_id, contact_id)
    WHERE state IN ('pending', 'active', 'step_pending', 'step_sent', 'paused');
CREATE INDEX enrollments_due_idx
    ON enrollments (workspace_id, next_run_at, id)
    WHERE state IN ('pending', 'active', 'step_pending', 'step_sent', 'paused')
      AND next_run_at IS NOT NULL;
CREATE INDEX enrollments_contact_idx ON enrollments (workspace_id, contact_id, id);

CREATE TABLE outbox_messages (
    workspace_id        uuid        NOT NULL,
    id                  uuid        NOT NULL,
    channel             text        NOT NULL,
    recipient           text        NOT NULL,
    contact_id          uuid,
    enrollment_id       uuid,
    step_index          integer,
    subject             text,
    body                text        NOT NULL,
    idempotency_key     text        NOT NULL,
    status              text        NOT NULL,
    not_before          timestamptz NOT NULL,
    attempts            integer     NOT NULL,
    -- The lease is present while lease_owner is set; the token outlives it so the next
    -- claim's token is one greater.
    lease_owner         text,
    lease_token         bigint      NOT NULL,
    lease_expires_at    timestamptz,
    provider_message_id text,
    last_error          text,
    metadata            jsonb       NOT NULL,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    sent_at             timestamptz,
    version             bigint      NOT NULL CHECK (version >= 1),
    CONSTRAINT outbox_messages_pkey PRIMARY KEY (workspace_id, id),
    CONSTRAINT outbox_messages_contact_fk FOREIGN KEY (workspace_id, contact_id)
        REFERENCES contacts (workspace_id, id),
    CONSTRAINT outbox_messages_lease_check
        CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL))
);
CREATE UNIQUE INDEX outbox_messages_idempotency_key
    ON outbox_messages (workspace_id, idempotency_key);
-- Claimable rows: across tenants and within one.
CREATE INDEX outbox_messages_claim_idx
    ON outbox_messages (not_before, id) WHERE status = 'pending';
CREATE INDEX outbox_messages_claim_ws_idx
    ON outbox_messages (workspace_id, not_before, id) WHERE status = 'pending';
-- Lease reaping.
CREATE INDEX outbox_messages_lease_idx
    ON outbox_messages (lease_expires_at) WHERE status = 'in_flight';
CREATE INDEX outbox_messages_status_idx ON outbox_messages (workspace_id, status, id);

CREATE TABLE approval_rules (
    workspace_id uuid        NOT NULL,
    id           uuid        NOT NULL,
    channel      text        NOT NULL,
    name         text        NOT NULL,
    conditions   jsonb       NOT NULL,
    daily_cap    bigint      CHECK (daily_cap >= 0),
    enabled      boolean     NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    version      bigint      NOT NULL CHECK (version >= 1),
    CONSTRAINT approval_rules_pkey PRIMARY KEY (workspace_id, id)
);

CREATE TABLE approval_items (
    workspace_id      uuid             NOT NULL,
    id                uuid             NOT NULL,
    outbox_message_id uuid             NOT NULL,
    channel           text             NOT NULL,
    status            text             NOT NULL,
    confidence        double precision CHECK (confidence >= 0 AND confidence <= 1),
    template_key      text,
    step_index        integer,
    original_body     text             NOT NULL,
    edited_body       text,
    context           jsonb            NOT NULL,
    reason            text,
    decided_by        uuid,
    decided_by_rule   uuid,
    decided_at        timestamptz,
    expires_at        timestamptz      NOT NULL,
    created_at        timestamptz      NOT NULL,
    updated_at        timestamptz      NOT NULL,
    version           bigint           NOT NULL CHECK (version >= 1),
    CONSTRAINT approval_items_pkey PRIMARY KEY (workspace_id, id),
    CONSTRAINT approval_items_outbox_fk FOREIGN KEY (workspace_id, outbox_message_id)
        REFERENCES outbox_messages (workspace_id, id)
);
-- One inbox item per outbox message.
CREATE UNIQUE INDEX approval_items_outbox_key
    ON approval_items (workspace_id, outbox_message_id);
-- Pending items by expiry, for expire_approvals.
CREATE INDEX approval_items_expiry_idx
    ON approval_items (expires_at) WHERE status = 'pending';
CREATE INDEX approval_items_status_idx ON approval_items (workspace_id, status, id);

CREATE TABLE events (
    position        bigint      GENERATED ALWAYS AS IDENTITY,
    workspace_id    uuid        NOT NULL,
    id              uuid        NOT NULL,
    kind            text        NOT NULL,
    subject         text        NOT NULL,
    payload         jsonb       NOT NULL,
    idempotency_key text        NOT NULL,
    occurred_at     timestamptz NOT NULL,
    CONSTRAINT events_pkey PRIMARY KEY (workspace_id, id),
    CONSTRAINT events_position_key UNIQUE (position)
);
CREATE UNIQUE INDEX events_idempotency_key ON events (workspace_id, idempotency_key);
CREATE INDEX events_workspace_position_idx ON events (workspace_id, position);

CREATE TABLE jobs (
    workspace_id     uuid        NOT NULL,
    id               uuid        NOT NULL,
    kind             text        NOT NULL,
    payload          jsonb       NOT NULL,
    idempotency_key  text,
    status           text        NOT NULL,
    attempts         integer     NOT NULL,
    max_attempts     integer     NOT NULL CHECK (max_attempts >= 1),
    run_at           timestamptz NOT NULL,
    lease_owner      text,
    lease_token      bigint      NOT NULL,
    lease_expires_at timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    CONSTRAINT jobs_pkey PRIMARY KEY (workspace_id, id),
    CONSTRAINT jobs_lease_check CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL))
);
CREATE UNIQUE INDEX jobs_idempotency_key
    ON jobs (workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_claim_idx ON jobs (run_at, id) WHERE status = 'queued';
CREATE INDEX jobs_claim_ws_idx ON jobs (workspace_id, run_at, id) WHERE status = 'queued';
CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_status_idx ON jobs (workspace_id, status, id);

CREATE TABLE quota_counters (
    workspace_id uuid   NOT NULL,
    counter      text   NOT NULL,
    period       date   NOT NULL,
    used         bigint NOT NULL CHECK (used >= 0),
    CONSTRAINT quota_counters_pkey PRIMARY KEY (workspace_id, counter, period)
);

CREATE TABLE leases (
    workspace_id uuid   NOT NULL,
    name         text   NOT NULL,
    -- NULL once released: free for anyone. The row outlives its holders so the token
    -- keeps growing each time the lease changes hands.
    holder       text,
    token        bigint      NOT NULL,
    expires_at   timestamptz NOT NULL,
    CONSTRAINT leases_pkey PRIMARY KEY (workspace_id, name)
);

CREATE TABLE anomalies (
    workspace_id    uuid        NOT NULL,
    id              uuid        NOT NULL,
    rule            text        NOT NULL,
    channel         text,
    severity        text        NOT NULL,
    status          text        NOT NULL,
    dedup_key       text        NOT NULL,
    summary         text        NOT NULL,
    details         jsonb       NOT NULL,
    detected_at     timestamptz NOT NULL,
    acknowledged_by uuid,
    resolved_at     timestamptz,
    updated_at      timestamptz NOT NULL,
    version         bigint      NOT NULL CHECK (version >= 1),
    CONSTRAINT anomalies_pkey PRIMARY KEY (workspace_id, id)
);
-- While open, one anomaly per (workspace, dedup_key).
CREATE UNIQUE INDEX anomalies_open_key
    ON anomalies (workspace_id, dedup_key) WHERE status IN ('active', 'acknowledged');
CREATE INDEX anomalies_status_idx ON anomalies (workspace_id, status, id);

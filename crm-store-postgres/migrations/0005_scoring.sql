-- Lead scoring: versioned scoring models and each contact's current score.

-- Every version of a workspace's model (ScoringStore::save_scoring_model). The
-- definition is the whole crm_core ScoringModel as JSON; old versions stay so an old
-- score can be explained with the model it was computed with.
CREATE TABLE scoring_models (
    workspace_id uuid        NOT NULL,
    version      bigint      NOT NULL CHECK (version >= 1),
    definition   jsonb       NOT NULL,
    created_at   timestamptz NOT NULL,
    CONSTRAINT scoring_models_pkey PRIMARY KEY (workspace_id, version)
);

-- One current score per contact. manual_override is the ScoreOverride as JSON (NULL
-- when none); effective_tier is what tier listings and tier-change detection use.
CREATE TABLE contact_scores (
    workspace_id    uuid        NOT NULL,
    contact_id      uuid        NOT NULL,
    total           smallint    NOT NULL CHECK (total BETWEEN 0 AND 100),
    tier            text        NOT NULL,
    breakdown       jsonb       NOT NULL,
    model_version   bigint      NOT NULL CHECK (model_version >= 1),
    computed_at     timestamptz NOT NULL,
    manual_override jsonb,
    effective_tier  text GENERATED ALWAYS AS (coalesce(manual_override ->> 'tier', tier)) STORED,
    CONSTRAINT contact_scores_pkey PRIMARY KEY (workspace_id, contact_id),
    CONSTRAINT contact_scores_contact_fk FOREIGN KEY (workspace_id, contact_id)
        REFERENCES contacts (workspace_id, id)
);
CREATE INDEX contact_scores_tier_idx ON contact_scores (workspace_id, effective_tier, contact_id);

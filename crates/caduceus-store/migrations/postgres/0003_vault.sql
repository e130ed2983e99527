-- Vault: FHIR resources sealed per patient, blind search terms, data keys
-- (wrapped by a key-encryption key that is never stored here), break-glass
-- grants with their review, explicit care assignments, and which audit
-- events concern which patient. No column holds a name, identifier, birth
-- date or address in plaintext: resources are AES-256-GCM ciphertext and
-- search terms are keyed HMACs.

-- One data key per compartment (`Patient/<id>`, `shared`) and the blind
-- index key (`index`). `wrapped` is NULL once the key is destroyed
-- (crypto-shredding); the row stays as the tombstone.
CREATE TABLE vault_keys (
    compartment  TEXT    PRIMARY KEY NOT NULL,
    wrapped      BYTEA,
    kek_id       TEXT    NOT NULL,
    created_ms   BIGINT NOT NULL,
    shredded_ms  BIGINT,
    legal_hold   TEXT
);

-- Every version of every resource. `sealed` is NULL for a deletion.
CREATE TABLE vault_versions (
    resource_type TEXT    NOT NULL,
    id            TEXT    NOT NULL,
    version       BIGINT  NOT NULL CHECK (version > 0),
    compartment   TEXT    NOT NULL,
    updated_ms    BIGINT NOT NULL,
    deleted       BOOLEAN NOT NULL,
    sealed        BYTEA,
    PRIMARY KEY (resource_type, id, version)
);

-- The current version of each resource.
CREATE TABLE vault_current (
    resource_type TEXT    NOT NULL,
    id            TEXT    NOT NULL,
    version       BIGINT NOT NULL,
    compartment   TEXT    NOT NULL,
    updated_ms    BIGINT NOT NULL,
    deleted       BOOLEAN NOT NULL,
    PRIMARY KEY (resource_type, id)
);

CREATE INDEX vault_current_compartment ON vault_current (compartment, resource_type);
CREATE INDEX vault_current_updated ON vault_current (resource_type, updated_ms);

-- Search terms of current versions: a blind term, or a date range (ms).
CREATE TABLE vault_index (
    resource_type TEXT    NOT NULL,
    id            TEXT    NOT NULL,
    param         TEXT    NOT NULL,
    term          TEXT,
    lo            BIGINT,
    hi            BIGINT
);

CREATE INDEX vault_index_term ON vault_index (resource_type, param, term);
CREATE INDEX vault_index_range ON vault_index (resource_type, param, lo);
CREATE INDEX vault_index_resource ON vault_index (resource_type, id);

-- Break-glass grants. `reason` is sealed with the patient's data key (free
-- text may name the patient). A grant waits for review until `reviewed_ms`.
CREATE TABLE vault_break_glass (
    grant_id      TEXT    PRIMARY KEY NOT NULL,
    user_id       TEXT    NOT NULL,
    patient_id    TEXT    NOT NULL,
    reason        BYTEA    NOT NULL,
    created_ms    BIGINT NOT NULL,
    expires_ms    BIGINT NOT NULL,
    reviewed_ms   BIGINT,
    reviewer      TEXT,
    review_outcome TEXT,
    review_note   BYTEA
);

CREATE INDEX vault_break_glass_user ON vault_break_glass (user_id, patient_id, expires_ms);
CREATE INDEX vault_break_glass_pending ON vault_break_glass (reviewed_ms, created_ms);

-- Explicit care assignments (a user looks after a patient).
CREATE TABLE vault_assignments (
    user_id     TEXT    NOT NULL,
    patient_id  TEXT    NOT NULL,
    detail      TEXT    NOT NULL,
    created_ms  BIGINT NOT NULL,
    PRIMARY KEY (user_id, patient_id)
);

-- Which spine events record an access to which patient's record.
CREATE TABLE vault_access (
    patient_id  TEXT    NOT NULL,
    seq         BIGINT NOT NULL,
    PRIMARY KEY (patient_id, seq)
);

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
    wrapped      BLOB,
    kek_id       TEXT    NOT NULL,
    created_ms   INTEGER NOT NULL,
    shredded_ms  INTEGER,
    legal_hold   TEXT
) STRICT;

-- Every version of every resource. `sealed` is NULL for a deletion.
CREATE TABLE vault_versions (
    resource_type TEXT    NOT NULL,
    id            TEXT    NOT NULL,
    version       INTEGER NOT NULL CHECK (version > 0),
    compartment   TEXT    NOT NULL,
    updated_ms    INTEGER NOT NULL,
    deleted       INTEGER NOT NULL,
    sealed        BLOB,
    PRIMARY KEY (resource_type, id, version)
) STRICT;

-- The current version of each resource.
CREATE TABLE vault_current (
    resource_type TEXT    NOT NULL,
    id            TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    compartment   TEXT    NOT NULL,
    updated_ms    INTEGER NOT NULL,
    deleted       INTEGER NOT NULL,
    PRIMARY KEY (resource_type, id)
) STRICT;

CREATE INDEX vault_current_compartment ON vault_current (compartment, resource_type);
CREATE INDEX vault_current_updated ON vault_current (resource_type, updated_ms);

-- Search terms of current versions: a blind term, or a date range (ms).
CREATE TABLE vault_index (
    resource_type TEXT    NOT NULL,
    id            TEXT    NOT NULL,
    param         TEXT    NOT NULL,
    term          TEXT,
    lo            INTEGER,
    hi            INTEGER
) STRICT;

CREATE INDEX vault_index_term ON vault_index (resource_type, param, term);
CREATE INDEX vault_index_range ON vault_index (resource_type, param, lo);
CREATE INDEX vault_index_resource ON vault_index (resource_type, id);

-- Break-glass grants. `reason` is sealed with the patient's data key (free
-- text may name the patient). A grant waits for review until `reviewed_ms`.
CREATE TABLE vault_break_glass (
    grant_id      TEXT    PRIMARY KEY NOT NULL,
    user_id       TEXT    NOT NULL,
    patient_id    TEXT    NOT NULL,
    reason        BLOB    NOT NULL,
    created_ms    INTEGER NOT NULL,
    expires_ms    INTEGER NOT NULL,
    reviewed_ms   INTEGER,
    reviewer      TEXT,
    review_outcome TEXT,
    review_note   BLOB
) STRICT;

CREATE INDEX vault_break_glass_user ON vault_break_glass (user_id, patient_id, expires_ms);
CREATE INDEX vault_break_glass_pending ON vault_break_glass (reviewed_ms, created_ms);

-- Explicit care assignments (a user looks after a patient).
CREATE TABLE vault_assignments (
    user_id     TEXT    NOT NULL,
    patient_id  TEXT    NOT NULL,
    detail      TEXT    NOT NULL,
    created_ms  INTEGER NOT NULL,
    PRIMARY KEY (user_id, patient_id)
) STRICT;

-- Which spine events record an access to which patient's record.
CREATE TABLE vault_access (
    patient_id  TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    PRIMARY KEY (patient_id, seq)
) STRICT;

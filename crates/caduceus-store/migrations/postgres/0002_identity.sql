-- Identity: accounts, second factors, sessions; scoped, owned API keys.

-- Accounts. `user_id` is a UUID (also the WebAuthn user handle); `username`
-- is stored normalised (trimmed, lower case). `roles` is a comma-separated
-- list of role names. `password_hash` is an argon2id PHC string, or NULL for
-- an account that signs in only by passkey or single sign-on.
CREATE TABLE users (
    user_id          TEXT    PRIMARY KEY,
    username         TEXT    NOT NULL UNIQUE CHECK (length(username) BETWEEN 1 AND 128),
    display_name     TEXT    NOT NULL,
    roles            TEXT    NOT NULL,
    password_hash    TEXT,
    patient_ref      TEXT,
    external_issuer  TEXT,
    external_subject TEXT,
    disabled_ms      BIGINT ,
    created_ms       BIGINT  NOT NULL,
    updated_ms       BIGINT  NOT NULL,
    UNIQUE (external_issuer, external_subject)
);

-- One TOTP secret per account. `confirmed_ms` is NULL while enrolment waits
-- for a first code; `last_step` is the last time step accepted, so each code
-- is usable once (compare-and-set, no race).
CREATE TABLE totp_secrets (
    user_id       TEXT    PRIMARY KEY REFERENCES users (user_id) ON DELETE CASCADE,
    secret        BYTEA    NOT NULL,
    algorithm     TEXT    NOT NULL,
    digits        BIGINT  NOT NULL,
    period        BIGINT  NOT NULL,
    confirmed_ms  BIGINT ,
    last_step     BIGINT  NOT NULL DEFAULT -1
);

-- Single-use recovery codes, stored as SHA-256 of the (high-entropy) code.
CREATE TABLE recovery_codes (
    user_id    TEXT    NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    code_hash  BYTEA    NOT NULL CHECK (octet_length(code_hash) = 32),
    used_ms    BIGINT ,
    PRIMARY KEY (user_id, code_hash)
);

-- WebAuthn credentials: the public key and counter, as JSON.
CREATE TABLE passkeys (
    credential_id  BYTEA    PRIMARY KEY,
    user_id        TEXT    NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    name           TEXT    NOT NULL,
    passkey        TEXT    NOT NULL,
    created_ms     BIGINT  NOT NULL,
    last_used_ms   BIGINT 
);

CREATE INDEX passkeys_user ON passkeys (user_id);

-- Sessions, stored as SHA-256 of the session secret.
CREATE TABLE sessions (
    session_hash       BYTEA    PRIMARY KEY CHECK (octet_length(session_hash) = 32),
    session_id         TEXT    NOT NULL UNIQUE,
    user_id            TEXT    NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    kind               TEXT    NOT NULL,
    methods            TEXT    NOT NULL,
    source             TEXT    NOT NULL,
    created_ms         BIGINT  NOT NULL,
    last_seen_ms       BIGINT  NOT NULL,
    expires_ms         BIGINT  NOT NULL,
    elevated_until_ms  BIGINT ,
    revoked_ms         BIGINT 
);

CREATE INDEX sessions_user ON sessions (user_id);

-- API keys: who issued them and what they may do (empty: all the role may).
ALTER TABLE api_tokens ADD COLUMN owner TEXT;
ALTER TABLE api_tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT '';
